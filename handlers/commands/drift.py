"""`/ami drift [family] [--region R] [--account NAME]`: instances behind their family's current version, or on a
deprecated, disabled or deregistered image, grouped by family and image. With many accounts, the instances of
every account (or the one named) against every managed account's families, with where they run."""

from bot.render.drift import drift_report
from bot.services.drift import WORST_FIRST, fleet_drift, retired_names
from bot.slack.subcommands import Arg, Subcommand

SPEC = Subcommand(
    name="drift", stage="watch",
    summary=f"instances behind their family's current version or on retired images, {WORST_FIRST}",
    usage="/ami drift [family] [--region R] [--account NAME]", example="/ami drift web",
    args=(Arg("family", required=False, rest=True),), flags={"--region": "R", "--account": "NAME"})


def run(call):
    ctx, region, family = call.ctx, call.flags["region"], call.args["family"]
    handles = ctx.aws.select(call.flags["account"])
    accounts = [handle.account for handle in handles] if ctx.aws.accounts else None
    found = fleet_drift(ctx.aws, ctx.policy.digest.family_tag, ctx.clock(), family, retired_names(ctx.store),
                        [region] if region else None, accounts)
    call.audit_detail = {"drifted": found.drifted, "unknown_family": found.unknown_family}
    return drift_report(found, family)
