"""`/ami versions <family> [--region R]`: a family's versions, newest first, with state and use."""

from bot.commands import REGION_NAME, Arg, Subcommand
from bot.errors import UsageError
from bot.render.lifecycle import versions
from bot.services.versions import family_versions

SPEC = Subcommand(
    name="versions", summary="a family's versions, newest first: current, previous, deprecated, disabled, use",
    usage="/ami versions <family> [--region R]", example="/ami versions web",
    args=(Arg("family", rest=True),), flags={"--region": "R"})


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    if region and not REGION_NAME.match(region):
        raise UsageError(f"`{region[:40]}` is not an AWS region name (e.g. eu-west-1).")
    return versions(family_versions(ctx, call.args["family"], region), ctx.clock())
