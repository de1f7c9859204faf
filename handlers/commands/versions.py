"""`/ami versions <family> [--region R]`: a family's versions, newest first, with state and use."""

from bot.commands import Arg, Subcommand
from bot.render.lifecycle import versions
from bot.services.findings import findings_of_many
from bot.services.versions import family_versions

SHOWN = 25  # versions listed (and looked up in Amazon Inspector); older ones are counted

SPEC = Subcommand(
    name="versions", summary="a family's versions, newest first: current, previous, deprecated, disabled, use",
    usage="/ami versions <family> [--region R]", example="/ami versions web",
    args=(Arg("family", rest=True),), flags={"--region": "R"})


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    family = family_versions(ctx, call.args["family"], region)
    findings = findings_of_many(ctx.aws, [version.image for version in family.versions[:SHOWN]])
    return versions(family, ctx.clock(), shown=SHOWN, findings=findings)
