"""`/ami drift [family] [--region R]`: instances behind their family's current version, or on a deprecated,
disabled or deregistered image, grouped by family and image."""

from bot.commands import Arg, Subcommand
from bot.render.drift import drift_report
from bot.services.drift import drift, retired_names

SPEC = Subcommand(
    name="drift", summary="instances behind their family's current version (or on retired images)",
    usage="/ami drift [family] [--region R]", example="/ami drift web",
    args=(Arg("family", required=False, rest=True),), flags={"--region": "R"})


def run(call):
    ctx, region, family = call.ctx, call.flags["region"], call.args["family"]
    regions = [region] if region else ctx.aws.regions
    found = drift(ctx.aws, regions, ctx.policy.digest.family_tag, ctx.clock(), family, retired_names(ctx.store))
    call.audit_detail = {"drifted": found.drifted, "unknown_family": found.unknown_family}
    return drift_report(found, family)
