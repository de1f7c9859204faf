"""Exactly once per Slack delivery, in HTTP and in Socket Mode: one key per delivery, claimed by one INSERT.

Slack sends a request again when it thinks the first did not arrive: HTTP retries (``X-Slack-Retry-Num``),
Socket Mode redelivery of an envelope whose ack it missed (same ``envelope_id``, same payload, with
``retry_attempt``/``retry_reason`` that bolt ≥ 1.29 turns into the same retry headers), and anyone holding a
signed copy can replay it while its signature is fresh. The raw body is empty in Socket Mode and Bolt never
shows the envelope id to the app, so the key is derived from what Slack puts in the payload itself — the same
in both modes:

=====================  ==========================================================
slash command          ``command:<trigger_id>``  (response_url when there is none)
button / menu click    ``click:<trigger_id>:<action_id>:<action_ts>``
view submission        ``view:<view_id>:<trigger_id>``  (view id + hash when there is no trigger)
event                  ``event:<event_id>``
anything else          ``payload:<sha256 of the payload as canonical JSON>``
=====================  ==========================================================

The key is *claimed* by exactly one INSERT on the ack path, whose UNIQUE constraint makes a second delivery a
no-op even when two arrive at once: the job row when the listener hands its work to a job
(``ctx.jobs.submit(…, dedupe_key=key)``, the durable record and the duplicate check in one statement), otherwise
a ``slack_requests`` row (``claim``). A view submission's trigger is new for every submission, so a form answered
with errors and then corrected is a new delivery; only accepted submissions claim their key.

``problem`` is the shape check the app's middleware runs before Bolt or any listener touches a payload: Slack
never sends an empty ``actions`` list or a string where an object belongs, so such a payload — signed or not —
is answered (HTTP 400, or a plain ack in Socket Mode so it is not redelivered) and nothing runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from bot.durable.audit import now_iso
from bot.durable.store import Store

log = logging.getLogger(__name__)

CONTEXT_KEY = "delivery_key"  # where the middleware leaves the key for listeners (Bolt's `context`)

INTERACTIVE = {"block_actions", "view_submission", "view_closed", "shortcut", "message_action", "block_suggestion",
               "interactive_message", "dialog_submission", "dialog_cancellation"}
OBJECTS = ("user", "team", "channel", "container", "message", "view", "event", "enterprise")  # dicts when present
STRINGS = ("type", "trigger_id", "response_url", "command", "text", "user_id", "channel_id", "event_id",
           "callback_id")


def delivery_key(body: Any) -> str | None:
    """What identifies one delivery of ``body`` (see the module docstring); None for a non-object body."""
    if not isinstance(body, dict):
        return None
    kind = body.get("type")
    if kind == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("command") and (body.get("trigger_id") or body.get("response_url")):
        return f"command:{body.get('trigger_id') or body.get('response_url')}"
    actions = body.get("actions")
    if kind == "block_actions" and isinstance(actions, list) and actions and isinstance(actions[0], dict):
        action = actions[0]
        return f"click:{body.get('trigger_id')}:{action.get('action_id')}:{action.get('action_ts')}"
    view = body.get("view") if isinstance(body.get("view"), dict) else {}
    if kind == "view_submission" and body.get("trigger_id"):
        return f"view:{view.get('id')}:{body['trigger_id']}"
    if kind == "view_submission" and view.get("id") and view.get("hash"):
        return f"view:{view['id']}:{view['hash']}"
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "payload:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def problem(body: Any) -> str | None:
    """Why ``body`` is not a payload Slack would send (a short reason for the log), or None when it is sound."""
    if not isinstance(body, dict):
        return f"the payload is a {type(body).__name__}, not an object"
    for key in OBJECTS:
        if body.get(key) is not None and not isinstance(body[key], dict):
            return f"{key} is not an object"
    for key in STRINGS:
        if body.get(key) is not None and not isinstance(body[key], str):
            return f"{key} is not a string"
    kind = body.get("type")
    if kind in INTERACTIVE and not isinstance(pick(body, "user", "id"), str):
        return f"{kind} without a user id"
    if kind == "block_actions":
        return _actions_problem(body)
    if kind in ("view_submission", "view_closed"):
        return _view_problem(body.get("view"))
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event type"
    return None


def _actions_problem(body: dict) -> str | None:
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        return "block_actions without actions"
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
            return "an action without an action_id"
        for key in ("value", "action_ts", "block_id", "type"):
            if action.get(key) is not None and not isinstance(action[key], str):
                return f"an action's {key} is not a string"
    container = body.get("container")
    if not isinstance(container, dict):
        return "block_actions without a container"
    if container.get("type") == "view" and not isinstance(body.get("view"), dict):
        return "a click in a view without the view"
    if container.get("type") != "view" and not (container.get("channel_id") or pick(body, "channel", "id")):
        return "a click in a message without a channel"
    message = body.get("message") or {}
    if message.get("blocks") is not None and not (isinstance(message["blocks"], list)
                                                  and all(isinstance(block, dict) for block in message["blocks"])):
        return "the message's blocks are not a list of objects"
    return None


def _view_problem(view: Any) -> str | None:
    if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str) \
            or not isinstance(view.get("type"), str):
        return "a view without a type or callback_id"
    if view.get("private_metadata") is not None and not isinstance(view["private_metadata"], str):
        return "the view's private_metadata is not a string"
    state = view.get("state")
    if state is not None and not (isinstance(state, dict) and isinstance(state.get("values", {}), dict)):
        return "the view's state is not an object of values"
    return None


def pick(value: Any, *path: str) -> Any:
    """``value[path[0]][path[1]]…`` where every step is an object, else None (payload fields may be anything)."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def text_at(value: Any, *path: str) -> str | None:
    """The string at ``path`` (see ``pick``), or None when it is missing or not a string."""
    found = pick(value, *path)
    return found if isinstance(found, str) else None


def channel_of(body: Any) -> str | None:
    """The channel a click came from: the message's container, else the payload's channel (None in a modal or
    the Home tab)."""
    return text_at(body, "container", "channel_id") or text_at(body, "channel", "id")


def metadata(view: Any) -> dict:
    """A view's private_metadata as the object the bot put there; {} when it is missing or not JSON."""
    raw = view.get("private_metadata") if isinstance(view, dict) else None
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def claim(store: Store, key: str | None) -> bool:
    """Claim a delivery whose listener starts no job (it opens a modal, publishes a view): one INSERT.
    True the first time; False for a repeat, which the listener then acks and drops."""
    if key is None:
        return True
    # Raw SQL on purpose: the UNIQUE key makes this one statement the exactly-once claim, on the ack path.
    cursor = store.execute("INSERT OR IGNORE INTO slack_requests (key, received_at) VALUES (?, ?)", (key, now_iso()))
    if cursor.rowcount == 0:
        log.info("dropping a repeated Slack request (%s)", key[:80])
        return False
    return True


def forget(store: Store, before: str) -> int:
    """Forget the keys received before ``before`` (Slack retries within minutes); returns how many. One DELETE:
    its count is what the hourly prune reports."""
    return store.execute("DELETE FROM slack_requests WHERE received_at < ?", (before,)).rowcount


def key_of(context: Any, body: Any) -> str | None:
    """The key the middleware computed (Bolt's ``context``), or computed now for a listener called without it."""
    key = context.get(CONTEXT_KEY) if isinstance(context, dict) else None
    return key or delivery_key(body)
