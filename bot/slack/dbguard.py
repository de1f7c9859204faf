"""No new work on a lost database: a global Bolt middleware in front of every listener (HTTP and Socket Mode).

When the database file is gone, replaced, truncated, damaged, read-only or older than what this process already
saw in it (bot/durable/store.py ``Store.file_problem``: one cached look a second at most, well under a millisecond, so
the ack path stays fast), a slash command is answered in its ack, a click through its response_url, and nothing
is recorded or run. The store logs the reason once, not per request.
"""

from __future__ import annotations

import json
import logging
import threading

from slack_bolt import BoltResponse

from bot.durable.store import Store

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "amibot's database is unavailable; the operator has been told."


def database_guard(store: Store):
    def middleware(req, resp, next):
        if store.file_problem() is None:
            return next()
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("command"):  # a slash command: the answer is the ack itself
            return BoltResponse(status=200, body=json.dumps({"response_type": "ephemeral",
                                                             "text": DATABASE_UNAVAILABLE}),
                                headers={"content-type": "application/json"})
        if body.get("response_url"):  # a click: answer in the background, the ack must not wait on Slack
            threading.Thread(target=_say_unavailable, args=(body["response_url"],), daemon=True).start()
        return BoltResponse(status=200, body="")

    return middleware


def _say_unavailable(response_url: str) -> None:
    from slack_sdk.webhook import WebhookClient

    try:
        WebhookClient(response_url, timeout=5).send(text=DATABASE_UNAVAILABLE, response_type="ephemeral",
                                                   replace_original=False)
    except Exception:
        log.warning("could not tell a user that the database is unavailable", exc_info=True)
