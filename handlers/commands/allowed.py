"""`/ami allowed [--region R]`: the account's Allowed AMIs state (enabled, audit mode, disabled) and criteria."""

from bot.commands import Subcommand
from bot.render.allowed import allowed
from bot.services.allowed import settings

SPEC = Subcommand(
    name="allowed", summary="the account's Allowed AMIs state and criteria per region",
    usage="/ami allowed [--region R]", example="/ami allowed --region eu-west-1", flags={"--region": "R"})


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    regions = [region] if region else ctx.aws.regions
    call.audit_detail = {"regions": regions}
    return allowed(settings(ctx.aws, regions))
