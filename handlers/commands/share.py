"""`/ami share <ami-id|name> <account|org:ARN|ou:ARN|public>` and `/ami unshare …`.

Allowed accounts are shared at once; anything else goes through the approval engine. Unsharing
never needs approval: taking access away is always allowed. With many accounts the target may be a managed
account's name, and both act in the account that owns the image, by its operators.
"""

from __future__ import annotations

from bot.render import share as render
from bot.services import approvals
from bot.services import share as service
from bot.services.images import shares_of
from bot.slack.subcommands import Arg, Subcommand, image_arg

TARGET = Arg("target", hint="a 12-digit account id, a managed account's name, org:<ARN>, ou:<ARN> or public")

SHARE = Subcommand(
    name="share", stage="share", summary="let another account, organisation or OU launch (and copy) an AMI",
    usage="/ami share <ami-id|name> <account-id|account name|org:ARN|ou:ARN|public> [--region R]",
    example="/ami share ami-0abc1234def567890 123456789012",
    args=(image_arg("ami-id"), TARGET),
    flags={"--region": "R"}, changing=True)

UNSHARE = Subcommand(
    name="unshare", stage="share", summary="take back a share: launch and snapshot permissions at once",
    usage="/ami unshare <ami-id|name> <account-id|account name|org:ARN|ou:ARN|public> [--region R]",
    example="/ami unshare ami-0abc1234def567890 123456789012",
    args=(image_arg("ami-id"), TARGET),
    flags={"--region": "R"}, changing=True)


def _post(call, msg: dict) -> dict | None:
    """Shares are visible to the channel; answer privately only when the bot cannot post there."""
    return None if call.reply.post(msg) else msg


def _found(call):
    """The target (names resolved from the managed accounts), the image, and the owner's handle once the
    user may act in that account; the audit row records both."""
    ctx = call.ctx
    target = service.parse_target(call.args["target"], ctx.aws.accounts)
    image = service.find_image(ctx, call.args["ami-id"], call.flags["region"])
    call.audit_detail = {"image": image.id, "region": image.region, "target": target.value,
                         "target_kind": target.kind}
    if image.account:
        call.audit_detail["account"] = image.account
    if target.name:
        call.audit_detail["target_name"] = target.name
    handle = call.acting_in(image.account)
    return target, image, handle


def run_share(call):
    ctx = call.ctx
    target, image, handle = _found(call)
    verdict = service.check(ctx, image, target)
    if verdict.already:
        call.audit_detail["already_shared"] = True
        return render.already_shared(image, target)
    if verdict.reason:
        snapshots = service.own_snapshots(handle, image)
        request = approvals.create_request(
            ctx, kind=service.KIND, params=service.request_params(image, target), requester=call.user,
            channel=call.channel, title=f"Share {image.name or image.id} with {target.label}",
            details=service.approval_details(image, target, snapshots, verdict.public_block),
            reason=verdict.reason, danger=target.kind == service.PUBLIC)
        call.audit_detail["approval_request"] = request.id
        return render.needs_approval(request.id, request.channel, verdict.reason)
    result = service.share(handle, image, target)
    call.audit_detail["snapshots"] = result.snapshots
    return _post(call, render.shared(result, call.user))


def run_unshare(call):
    target, image, handle = _found(call)
    was_shared = target.granted_in(shares_of(handle, image))
    result = service.unshare(handle, image, target)
    call.audit_detail.update({"was_shared": was_shared, "snapshots": result.snapshots})
    return _post(call, render.unshared(result, call.user, was_shared))


RUNNERS = [(SHARE, run_share), (UNSHARE, run_unshare)]
