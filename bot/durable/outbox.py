"""The outbox table: the messages the bot owes Slack, as data, each written in the transaction of the state change
that causes it (this module owns the table; bot/slack/outbox.py renders and delivers what it holds).

A row moves pending → sending → delivered, back to pending with a later ``next_at`` when a try failed, or to dead.
"""

from __future__ import annotations

import json
import time
from typing import Any

UNDELIVERED = "state IN ('pending', 'sending')"


def owe(store, subject: str | None, intent: dict[str, Any], created_at: str) -> None:
    """Record a message owed (in the caller's transaction, when it has one): due at once."""
    store.db["outbox"].insert({"intent": json.dumps(intent), "subject": subject, "state": "pending",
                               "next_at": time.time(), "created_at": created_at})


def undelivered(store) -> list[dict]:
    """Every message not delivered yet (pending or being sent), oldest first."""
    return list(store.db["outbox"].rows_where(UNDELIVERED, order_by="id"))


def count_undelivered(store) -> int:
    return store.db["outbox"].count_where(UNDELIVERED)


def owes(store, subject: str) -> bool:
    """Whether a message about ``subject`` is still to be delivered."""
    return store.db["outbox"].count_where(f"subject = ? AND {UNDELIVERED}", [subject]) > 0


def claim(store, outbox_id: int) -> bool:
    """Take a pending message for sending; True for exactly one caller, whichever thread or process asks (one
    conditional UPDATE decides)."""
    return store.execute("UPDATE outbox SET state = 'sending', attempts = attempts + 1 WHERE id = ?"
                         " AND state = 'pending'", (outbox_id,)).rowcount == 1


def delivered(store, outbox_id: int, ts: str | None, at: str) -> None:
    """Slack has it: the ts it gave is kept with the row, so a retry never posts again."""
    store.db["outbox"].update(outbox_id, {"state": "delivered", "ts": ts, "delivered_at": at, "last_error": None})


def dead(store, outbox_id: int, error: str) -> None:
    store.db["outbox"].update(outbox_id, {"state": "dead", "last_error": error})


def retry_at(store, outbox_id: int, error: str, next_at: float) -> None:
    store.db["outbox"].update(outbox_id, {"state": "pending", "last_error": error, "next_at": next_at})


def resend_interrupted(store) -> int:
    """At start: messages a crashed process was sending are pending again; returns how many (one UPDATE: its
    count is what the start reports)."""
    return store.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'").rowcount


def prune(store, before: str) -> int:
    """Forget delivered and dead messages created before ``before``; returns how many (one DELETE, for its
    count)."""
    return store.execute("DELETE FROM outbox WHERE state IN ('delivered', 'dead') AND created_at < ?",
                         (before,)).rowcount
