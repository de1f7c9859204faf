"""`/ami versions <family> [--region R]`: a family's versions, newest first, with state and use."""

from bot.commands import Arg, Subcommand
from bot.render.lifecycle import versions
from bot.services.versions import family_versions

SPEC = Subcommand(
    name="versions", summary="a family's versions, newest first: current, previous, deprecated, disabled, use",
    usage="/ami versions <family> [--region R]", example="/ami versions web",
    args=(Arg("family", rest=True),), flags={"--region": "R"})


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    return versions(family_versions(ctx, call.args["family"], region), ctx.clock())
