"""`/ami allowed [--region R] [--account NAME]`: each account's Allowed AMIs state (enabled, audit mode,
disabled) and criteria per region."""

from bot.render.allowed import allowed
from bot.render.blocks import per_account
from bot.services.allowed import settings
from bot.slack.subcommands import Subcommand

SPEC = Subcommand(
    name="allowed", stage="watch", summary="the account's Allowed AMIs state and criteria per region",
    usage="/ami allowed [--region R] [--account NAME]", example="/ami allowed --region eu-west-1",
    flags={"--region": "R", "--account": "NAME"})


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    handles = ctx.aws.select(call.flags["account"])
    call.audit_detail = {"regions": [region] if region else ctx.aws.regions,
                         "accounts": [handle.account.id for handle in handles if handle.account.id]}
    return per_account([(handle.account.label, allowed(settings(handle, [region] if region else handle.regions)))
                        for handle in handles])
