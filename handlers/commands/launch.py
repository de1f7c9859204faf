"""`/ami launch <ami-id|name|family> [instance-type] [count]`: instances from an image, within policy.

Without arguments it opens the launch form (handlers/views/launch.py), which ends in the same
``start_launch`` as the command.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import approvals
from bot.commands import Arg, Subcommand
from bot.render import launch as render
from bot.services import launch as service
from bot.services.launch import LaunchOrder
from bot.slack import Reply

log = logging.getLogger(__name__)

SPEC = Subcommand(
    name="launch", summary="launch instances from an AMI, an image name or a family (no arguments: a form)",
    usage="/ami launch [<ami-id|name|family> [instance-type] [count]] [--name N] [--subnet S] [--region R] [--force]",
    example="/ami launch web t3.small 2 --name web-canary",
    args=(Arg("image", required=False), Arg("instance-type", required=False), Arg("count", required=False)),
    flags={"--name": "N", "--subnet": "S", "--region": "R", "--force": None}, changing=True)


def run(call):
    ctx = call.ctx
    if not call.args["image"]:
        from handlers.views.launch import open_launch_modal

        open_launch_modal(ctx.slack, call.trigger_id, ctx, channel=call.channel)
        call.audit_detail = {"opened": "launch form"}
        return None
    call.audit_detail = {}
    return start_launch(ctx, order_from(call), call.user, call.channel, call.reply, call.audit_detail)


def order_from(call) -> LaunchOrder:
    ctx, args, flags = call.ctx, call.args, call.flags
    instance_type, count = args["instance-type"], args["count"]
    if instance_type and instance_type.isdigit() and count is None:  # `/ami launch web 3`
        instance_type, count = None, instance_type
    default_type = ctx.policy.launch.default_instance_type
    return LaunchOrder(image_ref=args["image"], instance_type=service.parse_instance_type(instance_type, default_type),
                       count=service.parse_count(count), name=service.parse_name(flags["name"]),
                       subnet_id=service.parse_subnet(flags["subnet"]), region=flags["region"],
                       force=bool(flags["force"]))


def start_launch(ctx, order: LaunchOrder, user: str, channel: str | None, reply: Reply,
                 detail: dict[str, Any]) -> dict | None:
    """Resolve and check the image; launch now and report in the channel, or ask for approval."""
    image = service.resolve_image(ctx, order.image_ref, order.region)
    service.check_launchable(image, order.force, ctx.clock())
    detail.update(image=image.id, region=image.region, instance_type=order.instance_type, count=order.count)
    reasons = service.approval_reasons(ctx.policy, order)
    if reasons:
        request = approvals.create_request(
            ctx, kind=service.KIND, params=service.request_params(image, order), requester=user, channel=channel,
            title=f"Launch {order.count} × {order.instance_type} from {image.name or image.id}",
            details=render.approval_details(image, order, order.subnet_id or ctx.policy.launch.subnet_id),
            reason="; ".join(reasons))
        detail["approval_request"] = request.id
        return render.needs_approval(request.id, request.channel, reasons)
    request_ref = f"launch-{uuid.uuid4().hex[:12]}"
    detail["request"] = request_ref
    posted: dict[str, str | None] = {}

    def started(ids: list[str]) -> None:
        detail["instances"] = ids
        msg = render.launch_started(image, order, ids, user, request_ref)
        try:
            posted.update(ts=reply.post(msg), channel=None)
        except SlackApiError as error:  # not in the channel and no response_url (the form): tell the user directly
            log.warning("cannot post the launch in %s (%s); sending it to %s", channel, error.response.get("error"),
                        user)
            posted.update(ts=reply.post(msg, channel=user), channel=user)

    result = service.launch(ctx, image, order, user, request_ref, started=started)
    detail["states"] = {status.id: status.state for status in result.statuses}
    final = render.launch_finished(result, order, user, request_ref)
    if posted.get("ts"):
        reply.update(posted["ts"], final, channel=posted["channel"])
        return None
    return final
