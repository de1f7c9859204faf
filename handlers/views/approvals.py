"""The reject-with-reason modal."""

from bot.slack import delivery_keys
from handlers.actions.approvals import CLICK_JOB


def register(app, ctx) -> None:
    @app.view("approval.reject_reason")
    def reject_submitted(ack, body, view, context):
        request_id, _, channel = (view.get("private_metadata") or "").partition("|")
        reason = (delivery_keys.text_at(view, "state", "values", "reason", "value", "value") or "").strip()
        # Recorded before the ack under the submission's delivery key: a replay rejects (and answers) once.
        ctx.jobs.submit(CLICK_JOB, {"action": "reject", "request_id": request_id, "user": body["user"]["id"],
                                    "channel": channel or None, "reason": reason[:500] or None},
                        dedupe_key=delivery_keys.key_of(context, body))
        ack()
