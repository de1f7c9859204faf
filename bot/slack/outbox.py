"""The outbox: every message the approval engine owes Slack, delivered at least once, posted at most once.

The engine (bot/services/approvals.py) writes an *intent* — data, never a rendered message — into the ``outbox``
table (bot/durable/outbox.py) in the same SQLite transaction as the state change that causes it, so no committed
change can lose its message and no rolled-back one can send one. This module renders intents with
bot/render/approvals.py at delivery time (from the request's current state) and sends them:

- right after the commit, on the committing thread (``kick``), so people see it at once;
- by a worker thread that retries what failed, with exponential backoff, and at start delivers what a
  crashed process left (rows caught "sending" go back to "pending").

Intents: ``{"kind": "request_message", "request_id": …}`` posts the request's message, or updates it when
it has a ts (an update is idempotent); ``{"kind": "thread", "request_id": …, "text": …}`` posts in its
thread, and so do ``"outcome"`` (state, outcome) and ``"unchecked"`` (said), whose data is escaped here.
A post stores the ts Slack gave it in the same statement that marks it delivered, so a retry never posts twice;
the one window left is between Slack answering and that statement (a crash there posts once more on restart):
delivery is at least once, with that guard. One request's messages go out in order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot.durable import audit, steps
from bot.durable import outbox as owed
from bot.durable.audit import now_iso
from bot.render import approvals as render
from bot.render import blocks
from bot.services import approvals

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
BACKOFF_SECONDS = 1.0  # first retry after 1 s, then 2, 4, … capped at MAX_BACKOFF_SECONDS
MAX_BACKOFF_SECONDS = 300.0
POLL_SECONDS = 0.5
# Errors a retry cannot fix: give up at once (the request message then falls back to the requester).
PERMANENT = {"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long", "no_text",
             "message_not_found", "cant_update_message", "invalid_auth", "not_authed", "account_inactive",
             "token_revoked", "restricted_action", "invalid_arguments"}


# A thread intent's line, rendered at delivery: the engine's data (outcome, said) is escaped here, not by the engine.
THREAD_LINES = {
    "thread": lambda request_id, intent: intent["text"],  # mrkdwn the engine wrote without data in it
    "outcome": lambda request_id, intent: render.outcome_line(intent["state"], intent["outcome"]),
    "unchecked": lambda request_id, intent: render.unchecked_line(request_id, intent["said"]),
}


class Outbox:
    def __init__(self, ctx):
        self.ctx = ctx
        self._lock = threading.Lock()  # one delivery pass at a time in this process: in order, no double sends
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backoff = ctx.waits.outbox_backoff_seconds

    # --- delivering ------------------------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Deliver every due intent, oldest first; returns how many were delivered."""
        delivered = 0
        with self._lock:
            blocked: set[str] = set()  # subjects with an earlier undelivered message: keep their order
            for row in owed.undelivered(self.ctx.store):
                subject = row["subject"] or ""
                if subject in blocked:
                    continue
                due = row["state"] == "pending" and row["next_at"] <= time.time()
                if not due or not owed.claim(self.ctx.store, row["id"]):
                    blocked.add(subject)
                    continue
                if self._deliver(row):
                    delivered += 1
                else:
                    blocked.add(subject)
        return delivered

    def _deliver(self, row: dict) -> bool:
        intent = json.loads(row["intent"])
        try:
            ts = self._send(intent)
        except SlackApiError as error:
            code = str(error.response.get("error") or "unknown_error")
            return self._failed(row, intent, code, permanent=code in PERMANENT)
        except Exception as error:  # network trouble, Slack down: worth retrying
            return self._failed(row, intent, f"{type(error).__name__}: {error}"[:300], permanent=False)
        owed.delivered(self.ctx.store, row["id"], ts, now_iso())
        return True

    def _failed(self, row: dict, intent: dict, error: str, permanent: bool) -> bool:
        attempts = row["attempts"] + 1
        if permanent or attempts >= MAX_ATTEMPTS:
            log.error("giving up on a Slack message after %s attempt(s): %s (%s)", attempts, error, intent["kind"])
            owed.dead(self.ctx.store, row["id"], error)
            if intent["kind"] == "request_message":
                self._undeliverable(intent, error)
            return True  # dead rows no longer hold back the messages after them
        delay = min(MAX_BACKOFF_SECONDS, self.backoff * 2 ** (attempts - 1))
        log.warning("a Slack message failed (%s); retrying in %.1f s", error, delay)
        owed.retry_at(self.ctx.store, row["id"], error, time.time() + delay)
        return False

    def _send(self, intent: dict) -> str | None:
        request = approvals.get(self.ctx, intent["request_id"])
        slack = self.ctx.slack
        if intent["kind"] == "request_message":
            msg = render.request_message(request, approvals.approvers_of(self.ctx, request.id),
                                         approvals.approver_label(self.ctx), self.ctx.clock(),
                                         confirm_text=request.confirm_text())
            if request.message_ts:  # posted already (maybe by a delivery a crash interrupted): update it
                slack.chat_update(channel=request.channel, ts=request.message_ts, **msg)
                return request.message_ts
            response = slack.chat_postMessage(channel=request.channel, **msg)
            self._posted(request, response)
            return response["ts"]
        if intent["kind"] in THREAD_LINES:
            if not request.message_ts:
                raise RuntimeError(f"the message of {request.id} is not posted yet")
            response = slack.chat_postMessage(channel=request.channel, thread_ts=request.message_ts,
                                              **blocks.info(THREAD_LINES[intent["kind"]](request.id, intent)))
            return response["ts"]
        raise ValueError(f"unknown outbox intent {intent['kind']}")

    def _posted(self, request, response) -> None:
        """Store the ts at once: from now on this request's message is updated, never posted again."""
        approvals.set_message_ts(self.ctx.store, request.id, response["ts"])

    def _undeliverable(self, intent: dict, error: str) -> None:
        """The request's message cannot go to its channel: send it to the requester; failing that, cancel the
        request with a note, so no request waits where nobody can see it."""
        request = approvals.get(self.ctx, intent["request_id"])
        if request.message_ts:
            return  # an update failed for good; the posted message stays as it was
        note = f"its approval message could not be posted in <#{request.channel}> ({error})"
        try:
            msg = render.request_message(request, approvals.approvers_of(self.ctx, request.id),
                                         approvals.approver_label(self.ctx), self.ctx.clock(),
                                         confirm_text=request.confirm_text())
            response = self.ctx.slack.chat_postMessage(channel=request.requester, **msg)
        except Exception as second:
            log.error("could not send %s to its requester either: %s", request.id, second)
            approvals.cancel_undeliverable(self.ctx, request.id, note)
            return
        approvals.set_message_ts(self.ctx.store, request.id, response["ts"],
                                 channel=response.get("channel") or request.requester)
        audit.record(self.ctx.store, actor="amibot", action="request.message-redirected", target=request.id,
                     channel=request.channel, outcome=f"sent to the requester: {note}")

    # --- the worker and waiting ------------------------------------------------------------------------

    def recover(self) -> int:
        """At start: what a crashed process was sending goes out again (the ts guard prevents a second post
        of a request message already stored; see the module docstring for the window that remains)."""
        return owed.resend_interrupted(self.ctx.store)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="amibot-outbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(POLL_SECONDS):
            if self.ctx.store.file_problem():  # said once by the store and by /healthz; nothing to deliver from
                continue
            try:
                self.deliver_due()
                failing = False
            except Exception:
                if self.ctx.store.file_problem():  # the file broke under this pass: the store says so, once
                    continue
                if not failing:  # once per streak, not every half second
                    log.exception("outbox delivery pass failed; retrying quietly until it works again")
                failing = True

    def undelivered(self) -> int:
        return owed.count_undelivered(self.ctx.store)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until nothing is left to deliver (a message waiting out a backoff counts as left)."""
        deadline = time.monotonic() + timeout
        while True:
            self.deliver_due()
            if not self.undelivered():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


KEPT = timedelta(days=7)  # delivered and dead messages (and finished steps) are kept a week, for post-mortems


def prune(ctx) -> dict[str, int]:
    before = (ctx.clock() - KEPT).strftime("%Y-%m-%dT%H:%M:%S")
    return {"outbox": owed.prune(ctx.store, before), "steps": steps.prune(ctx.store, before)}


def at_start(ctx) -> None:
    """Send what a crashed process left (rows caught "sending" go back to "pending"), then keep retrying."""
    outbox = ctx.outbox
    if outbox.recover():
        log.info("resending Slack messages a previous process had not finished sending")
    outbox.deliver_due()
    outbox.start()


def at_stop(ctx) -> None:
    ctx.outbox.stop()
