"""Approve / Reject / Cancel buttons on approval messages.

Ack first; the decision itself runs as a durable job (it may resolve user groups through Slack and
starts AWS work). The engine's single-statement guards make repeated clicks harmless.
"""

import logging

from slack_sdk.errors import SlackApiError

from bot.core import metrics
from bot.core.errors import AccessDenied, AmibotError
from bot.render import blocks
from bot.render.approvals import APPROVE, CANCEL, REJECT, reject_modal
from bot.services import approvals
from bot.slack import delivery_keys
from bot.slack.reply import Reply

log = logging.getLogger(__name__)

CLICK_JOB = "approval.click"


def decide(ctx, payload: dict) -> None:
    reply = Reply(ctx.slack, payload.get("channel"), payload["user"], payload.get("response_url"))
    action, request_id, user = payload["action"], payload["request_id"], payload["user"]
    try:
        if action == "approve":
            decision = approvals.approve(ctx, request_id, user)
        elif action == "reject":
            decision = approvals.reject(ctx, request_id, user, payload.get("reason"))
        else:
            decision = approvals.cancel(ctx, request_id, user)
    except AmibotError as error:
        metrics.click_finished(ctx, action, "refused" if isinstance(error, AccessDenied) else "error")
        reply.ephemeral(blocks.error(error.message))
        _on_home(ctx, payload, f":warning: {error.message}")
        return
    metrics.click_finished(ctx, action, "ok")
    reply.ephemeral(blocks.info(decision.text))
    _on_home(ctx, payload, decision.text)


def _on_home(ctx, payload: dict, text: str) -> None:
    """A click on the Home tab has no channel to answer in: the tab is published again, saying what happened."""
    if payload.get("home"):
        from handlers.events import ask_for_refresh

        ask_for_refresh(ctx, [payload["user"]], fleet=False, notice=text)


def _click_payload(body: dict, action: str) -> dict:
    return {"action": action, "request_id": body["actions"][0].get("value", ""), "user": body["user"]["id"],
            "channel": delivery_keys.channel_of(body),
            "response_url": body.get("response_url"),
            "home": (body.get("view") or {}).get("type") == "home"}


def register(app, ctx) -> None:
    @app.action(APPROVE)
    def approve_clicked(ack, body, context):
        ctx.jobs.submit(CLICK_JOB, _click_payload(body, "approve"), dedupe_key=delivery_keys.key_of(context, body))
        ack()

    @app.action(CANCEL)
    def cancel_clicked(ack, body, context):
        ctx.jobs.submit(CLICK_JOB, _click_payload(body, "cancel"), dedupe_key=delivery_keys.key_of(context, body))
        ack()

    @app.action(REJECT)
    def reject_clicked(ack, body, client, context):
        # it opens a modal: no job to dedupe
        first = delivery_keys.claim(ctx.store, delivery_keys.key_of(context, body))
        ack()
        if not first:
            return
        click = _click_payload(body, "reject")
        try:
            request = approvals.get(ctx, click["request_id"])
        except AmibotError as error:
            Reply(client, click["channel"], click["user"], click["response_url"]).ephemeral(
                blocks.error(error.message))
            return
        view = reject_modal(request.id, request.title)
        view["private_metadata"] = f"{request.id}|{click['channel'] or ''}"
        try:
            client.views_open(trigger_id=body.get("trigger_id"), view=view)
        except SlackApiError as error:  # an expired or missing trigger: say so instead of a traceback
            log.warning("could not open the reject form: %s", error.response.get("error"))
            Reply(client, click["channel"], click["user"], click["response_url"]).ephemeral(blocks.error(
                "Slack did not let amibot open the reject form in time; click Reject again."))
