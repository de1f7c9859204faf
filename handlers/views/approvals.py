"""The reject-with-reason modal."""

from handlers.actions.approvals import CLICK_JOB


def register(app, ctx) -> None:
    @app.view("approval.reject_reason")
    def reject_submitted(ack, body, view):
        ack()
        request_id, _, channel = view.get("private_metadata", "").partition("|")
        reason = ((view.get("state", {}).get("values", {}).get("reason", {}).get("value", {}) or {})
                  .get("value") or "").strip()
        ctx.jobs.submit(CLICK_JOB, {"action": "reject", "request_id": request_id, "user": body["user"]["id"],
                                    "channel": channel or None, "reason": reason[:500] or None})
