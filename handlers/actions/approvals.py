"""Approve / Reject / Cancel buttons on approval messages.

Ack first; the decision itself runs as a durable job (it may resolve user groups through Slack and
starts AWS work). The engine's single-statement guards make repeated clicks harmless.
"""

from bot import approvals, blocks
from bot.errors import AmibotError
from bot.render.approvals import APPROVE, CANCEL, REJECT, reject_modal
from bot.slack import Reply

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
        reply.ephemeral(blocks.error(error.message))
        return
    reply.ephemeral(blocks.info(decision.text))


def _click_payload(body: dict, action: str) -> dict:
    return {"action": action, "request_id": body["actions"][0].get("value", ""), "user": body["user"]["id"],
            "channel": (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id"),
            "response_url": body.get("response_url")}


def click_key(body: dict) -> str:
    """Unique per click (a double click is two clicks: the engine's guards handle those)."""
    action = body["actions"][0]
    return f"click:{body.get('trigger_id')}:{action.get('action_id')}:{action.get('action_ts')}"


def register(app, ctx) -> None:
    ctx.jobs.register(CLICK_JOB, lambda payload: decide(ctx, payload),
                      lambda payload: ctx.jobs.submit(CLICK_JOB, payload))  # decisions are idempotent: redo

    @app.action(APPROVE)
    def approve_clicked(ack, body):
        ctx.jobs.submit(CLICK_JOB, _click_payload(body, "approve"), dedupe_key=click_key(body))
        ack()

    @app.action(CANCEL)
    def cancel_clicked(ack, body):
        ctx.jobs.submit(CLICK_JOB, _click_payload(body, "cancel"), dedupe_key=click_key(body))
        ack()

    @app.action(REJECT)
    def reject_clicked(ack, body, client):
        ack()
        click = _click_payload(body, "reject")
        try:
            request = approvals.get(ctx, click["request_id"])
        except AmibotError as error:
            Reply(client, click["channel"], click["user"], click["response_url"]).ephemeral(
                blocks.error(error.message))
            return
        view = reject_modal(request.id, request.title)
        view["private_metadata"] = f"{request.id}|{click['channel'] or ''}"
        client.views_open(trigger_id=body["trigger_id"], view=view)
