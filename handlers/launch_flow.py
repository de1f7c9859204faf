"""The launch flow both `/ami launch` (handlers/commands/launch.py) and the launch form (handlers/views/launch.py)
end in: resolve and check the image, then launch at once or ask for an approval. In a module of its own so the
two listeners need it, not each other."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core import authority
from bot.durable.steps import Steps
from bot.render import blocks
from bot.render import launch as render
from bot.services import allowed as allowed_amis
from bot.services import approvals
from bot.services import launch as service
from bot.services.launch import LaunchOrder
from bot.slack.reply import Reply

log = logging.getLogger(__name__)


def start_launch(ctx, order: LaunchOrder, user: str, channel: str | None, reply: Reply,
                 detail: dict[str, Any], reference: str | None = None) -> dict | None:
    """Resolve and check the image; launch now and report in the channel, or ask for approval.
    ``reference`` (service.launch_reference of the request) tags the instances and is EC2's ClientToken."""
    image = service.resolve_image(ctx, order.image_ref, order.region)
    service.check_launchable(image, order.force, ctx.clock())
    # the account the instances run in: its operators decide ([[accounts]] operators replace the global ones)
    into = authority.authorize(ctx, service.launching_account(ctx, image, order).account, "/ami launch")
    service.check_shared_with(ctx, image, into)
    where = into.account.label if ctx.aws.many else ""  # messages name the account the instances run in
    detail.update(image=image.id, region=image.region, instance_type=order.instance_type, count=order.count)
    if ctx.aws.many:
        detail.update(account=into.account.id, image_account=image.account)
    blocked = allowed_amis.warning_for(into, image, ctx.clock())  # the criteria of the account that launches
    if blocked:  # EC2 decides; amibot says so first, so a refusal (or an audit-mode flag) is no surprise
        detail["allowed_amis"] = blocked
        reply.ephemeral(blocks.info(f"{blocked} `/ami allowed` shows the criteria."))
    reasons = service.approval_reasons(ctx.policy, order)
    if reasons:
        request = approvals.create_request(
            ctx, kind=service.KIND, params=service.request_params(image, order, into.account.id), requester=user,
            channel=channel, title=f"Launch {order.count} × {order.instance_type} from {image.name or image.id}"
                                   + (f" in {where}" if where else ""),
            details=render.approval_details(image, order, order.subnet_id or ctx.policy.launch.subnet_id, where),
            reason="; ".join(reasons))
        detail["approval_request"] = request.id
        return render.needs_approval(request.id, request.channel, reasons)
    request_ref = reference or service.launch_reference(None)
    detail["request"] = request_ref
    posted: dict[str, str | None] = {}
    steps = Steps(ctx.store, f"launch:{request_ref}")  # a crash while waiting is resumed by resume_wait

    def started(ids: list[str]) -> None:
        detail["instances"] = ids
        msg = render.launch_started(image, order, ids, user, request_ref, where)
        try:
            posted.update(ts=reply.post(msg), channel=None)
        except SlackApiError as error:  # not in the channel and no response_url (the form): tell the user directly
            log.warning("cannot post the launch in %s (%s); sending it to %s", channel, error.response.get("error"),
                        user)
            posted.update(ts=reply.post(msg, channel=user), channel=user)
        steps.annotate("wait_running", ts=posted.get("ts"), channel=posted.get("channel") or channel)

    result = service.launch(ctx, image, order, user, request_ref, started=started, steps=steps, wait_data={
        "user": user, "channel": channel, "order": dataclasses.asdict(order), "image_name": image.name,
        "reference": request_ref})
    detail["states"] = {status.id: status.state for status in result.statuses}
    final = render.launch_finished(result, order, user, request_ref, where)
    if posted.get("ts"):
        reply.update(posted["ts"], final, channel=posted["channel"])
        return None
    return final
