"""`/ami revoke <ami-id|name> [--reason TEXT] [--descendants]`: the incident path — one four-eyes request that rolls
the channel back, deprecates and disables the image (and its descendants), then offers a rollout. The requester
must be an operator of every account owning an image it changes."""

from bot.render import blocks
from bot.services.revoke import request_revocation
from bot.slack.subcommands import Subcommand, image_arg

SPEC = Subcommand(
    name="revoke", stage="retire",
    summary="pull a bad version: roll its channel back, deprecate and disable it (and its descendants), "
            "after a second person approves",
    usage="/ami revoke <ami-id|name> [--reason TEXT] [--descendants]",
    example='/ami revoke ami-0abc1234def567890 --reason "CVE-2024-6387" --descendants',
    args=(image_arg(),), flags={"--reason": "TEXT", "--descendants": None}, changing=True)


def run(call):
    request = request_revocation(call.ctx, call.args["image"], call.user, call.channel, call.flags["reason"],
                                 bool(call.flags["descendants"]), authorize=call.acting_in)
    call.audit_detail = {"request": request.id, "image": request.params["image_id"],
                         "reason": request.params["reason"], "descendants": request.params["descendants"]}
    return blocks.info(f"Asked for approval: `{request.id}` — the request is in <#{request.channel}>.")
