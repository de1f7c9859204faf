"""`/ami deregister <ami-id|name> [--keep-snapshots] [--force] [--region R] [--account NAME]`: ask for a second person's
approval. The image is looked for in every managed account (or the one named); the operators of the account that
owns it may ask."""

from bot.core.errors import PolicyViolation
from bot.render import blocks
from bot.render import deregister as render
from bot.services.deregister import InUse, request_deregistration
from bot.slack.subcommands import Subcommand, image_arg

SPEC = Subcommand(
    name="deregister", stage="retire",
    summary="retire an image for good, after a second person approves (snapshots cleaned up)",
    usage="/ami deregister <ami-id|name> [--keep-snapshots] [--force] [--region R] [--account NAME]",
    example="/ami deregister ami-0abc1234def567890",
    args=(image_arg("ami-id"),),
    flags={"--keep-snapshots": None, "--force": None, "--region": "R", "--account": "NAME"}, changing=True)


def open_request(ctx, image_id: str, region: str | None, user: str, channel: str, force: bool = False,
                 keep_snapshots: bool = False, account: str | None = None, authorize=None):
    """Open the request, rendering its blast radius; a refusal because of use is rendered too (services do not).
    `account` (an id or name, e.g. from a digest button) says which account owns the image; `authorize(image)`
    may refuse once the image (and so its account) is known, before any preflight."""
    try:
        return request_deregistration(ctx, image_id, region, user, channel, force=force, keep_snapshots=keep_snapshots,
                                      account=account, authorize=authorize)
    except InUse as refused:
        raise PolicyViolation(render.refusal(refused.check)) from None


def run(call):
    request = open_request(call.ctx, call.args["ami-id"], call.flags["region"], call.user, call.channel,
                           force=call.flags["force"], keep_snapshots=call.flags["keep_snapshots"],
                           account=call.flags["account"] or None, authorize=lambda image: call.acting_in(image.account))
    call.audit_detail = {"request": request.id, "image": request.params["image_id"]}  # a name resolved: its id
    return blocks.info(f"Asked for approval: `{request.id}` — the request is in <#{request.channel}>.")
