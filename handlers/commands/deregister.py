"""`/ami deregister <ami-id> [--keep-snapshots] [--force] [--region R]`: ask for a second person's approval."""

from bot import blocks
from bot.commands import AMI_ID, Arg, Subcommand
from bot.services.deregister import request_deregistration

SPEC = Subcommand(
    name="deregister", summary="retire an image for good, after a second person approves (snapshots cleaned up)",
    usage="/ami deregister <ami-id> [--keep-snapshots] [--force] [--region R]",
    example="/ami deregister ami-0abc1234def567890",
    args=(Arg("ami-id", pattern=AMI_ID, hint="e.g. ami-0abc1234def567890"),),
    flags={"--keep-snapshots": None, "--force": None, "--region": "R"}, changing=True)


def run(call):
    request = request_deregistration(call.ctx, call.args["ami-id"], call.flags["region"], call.user, call.channel,
                                     force=call.flags["force"], keep_snapshots=call.flags["keep_snapshots"])
    call.audit_detail = {"request": request.id}
    return blocks.info(f"Asked for approval: `{request.id}` — the request is in <#{request.channel}>.")
