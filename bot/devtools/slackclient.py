"""Slack's side of the conversation: the signed HTTP requests Slack sends to an app.

``SlackClientSim`` builds slash commands, ``block_actions`` clicks, ``view_submission``s and Events API
callbacks as Slack shapes them, signs them with the app's signing secret (``v0=`` HMAC-SHA256 over
``v0:{timestamp}:{body}``, via slack_sdk's ``SignatureVerifier``) and POSTs them to the app's request URL.
Every ``response_url`` it hands out points at a FakeSlack, so what the bot answers there is recorded.

Used by the tests' Harness and by `amibot demo`'s console. Standard library and slack_sdk only.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from slack_sdk.signature import SignatureVerifier

from bot.devtools.fakeslack import FakeSlack

EVENTS_PATH = "/slack/events"
TEAM_ID = "T0FAKE"
APP_ID = "A0AMIBOT"
DEFAULT_MESSAGE_TS = "1700000000.000100"
REQUEST_TIMEOUT_SECONDS = 10
FORM = "application/x-www-form-urlencoded"
ACTION_EXTRAS = ("text", "selected_option", "selected_options")  # what a click carries besides its ids

# Where a modal input's value goes in view.state.values, by element type (the rest use "value").
STATE_KEYS = {"static_select": "selected_option", "external_select": "selected_option",
              "radio_buttons": "selected_option", "multi_static_select": "selected_options",
              "checkboxes": "selected_options", "datepicker": "selected_date", "timepicker": "selected_time",
              "users_select": "selected_user", "multi_users_select": "selected_users",
              "conversations_select": "selected_conversation", "channels_select": "selected_channel"}
INITIAL_KEYS = ("initial_value", "initial_option", "initial_options", "initial_date", "initial_time",
                "initial_user", "initial_users", "initial_conversation", "initial_channel")

# One sequence per process: response_url keys and trigger ids stay unique across restarted apps
# that share one FakeSlack (tests restart the app on the same database).
_sequence = itertools.count(1)

# Loopback only: a developer's HTTP(S)_PROXY must never see (or break) these requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Response:
    """The app's HTTP answer (its ack): status, body, and how long it took."""

    status: int
    body: str
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackClientSim:
    """Sends signed requests to the app at ``app_url`` as Slack would; see the module docstring."""

    def __init__(self, app_url: str, signing_secret: str, fake: FakeSlack, path: str = EVENTS_PATH):
        self.app_url = app_url.rstrip("/")
        self.path = path
        self.fake = fake
        self._verifier = SignatureVerifier(signing_secret)

    # --- the wire ---------------------------------------------------------------------------------
    def post(self, body: str, content_type: str = FORM, timestamp: int | None = None, signature: str | None = None,
             headers: dict | None = None, path: str | None = None) -> Response:
        """POST ``body`` signed (or with the given ``signature``/``timestamp``, to test verification)."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = signature or self._verifier.generate_signature(timestamp=str(timestamp), body=body)
        request = urllib.request.Request(self.app_url + (path or self.path), data=body.encode("utf-8"),
                                         method="POST", headers={
                                             "Content-Type": content_type, "X-Slack-Request-Timestamp": str(timestamp),
                                             "X-Slack-Signature": signature, **(headers or {})})
        started = time.perf_counter()
        try:
            with _opener.open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                return Response(response.status, response.read().decode(), time.perf_counter() - started)
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode(), time.perf_counter() - started)

    # --- slash commands ------------------------------------------------------------------------------
    def command_body(self, text: str, user: str, channel: str, command: str = "/ami", **extra: str) -> str:
        """The form body of a slash command; its response_url is a fresh one on the FakeSlack."""
        number = next(_sequence)
        fields = {"token": "legacy", "team_id": TEAM_ID, "team_domain": "fake", "channel_id": channel,
                  "channel_name": "ops", "user_id": user, "user_name": user.lower(), "command": command,
                  "text": text, "api_app_id": APP_ID, "response_url": self.fake.response_url(f"cmd{number}"),
                  "trigger_id": _trigger_id(number, "trigger")}
        fields.update(extra)
        return urllib.parse.urlencode(fields)

    def command(self, text: str, user: str, channel: str, **extra: str) -> Response:
        return self.post(self.command_body(text, user, channel, **extra))

    # --- interactivity ---------------------------------------------------------------------------------
    def block_actions_payload(self, action: dict, user: str, channel: str | None,
                              message_ts: str | None = None, message: dict | None = None,
                              ephemeral: bool = False, view: dict | None = None) -> dict:
        """A click on ``action`` (the element as the bot sent it, or at least its action_id/value/type).

        In a message: ``container`` names the channel and the message's ts; a visible message comes with
        its ``message`` (ts, text, blocks), an ephemeral one does not, as in Slack. In a modal: pass ``view``.
        """
        number = next(_sequence)
        payload: dict[str, Any] = {
            "type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": user, "name": user.lower()},
            "api_app_id": APP_ID, "trigger_id": _trigger_id(number, "click"),
            "actions": [{"type": action.get("type", "button"), "action_id": action.get("action_id", ""),
                         "block_id": action.get("block_id") or "b", "value": action.get("value", ""),
                         "action_ts": f"{time.time():.6f}",
                         **{key: action[key] for key in ACTION_EXTRAS if action.get(key) is not None}}]}
        if view is not None:
            payload.update(container={"type": "view", "view_id": view.get("id")}, view=view)
            return payload
        message_ts = message_ts or DEFAULT_MESSAGE_TS
        payload.update(channel={"id": channel}, response_url=self.fake.response_url(f"act{number}"),
                       container={"type": "message", "channel_id": channel, "message_ts": message_ts,
                                  **({"is_ephemeral": True} if ephemeral else {})})
        if not ephemeral:
            payload["message"] = message or {"ts": message_ts, "blocks": []}
        return payload

    def view_submission_payload(self, view: dict, user: str, values: dict) -> dict:
        """Submitting ``view`` (as opened by the bot, with its id) with ``values`` in Slack's state shape:
        {block_id: {action_id: {"type": …, "value" | "selected_option": …}}}."""
        return {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": user, "name": user.lower()},
                "api_app_id": APP_ID, "trigger_id": _trigger_id(next(_sequence), "submit"),
                "view": {**view, "state": {"values": values}}}

    def interact(self, payload: dict, **kwargs) -> Response:
        """Send an interactivity payload (block_actions, view_submission, …) form-encoded, as Slack does."""
        return self.post(urllib.parse.urlencode({"payload": json.dumps(payload)}), **kwargs)

    # --- events ----------------------------------------------------------------------------------------------
    def event_body(self, event: dict, event_id: str | None = None) -> str:
        return json.dumps({"type": "event_callback", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event,
                           "event_id": event_id or f"Ev{next(_sequence):08d}", "event_time": int(time.time())})

    def event(self, event: dict, event_id: str | None = None, **kwargs) -> Response:
        return self.post(self.event_body(event, event_id), content_type="application/json", **kwargs)


def _trigger_id(number: int, kind: str) -> str:
    return f"{number}.{kind}.{time.time_ns()}"


# --- modal state, as Slack sends it back on submission ---------------------------------------------------------

def block_key(block: dict, index: int) -> str:
    """An input block's id: its block_id, or a stable stand-in (Slack generates one when absent)."""
    return block.get("block_id") or f"block-{index}"


def initial_value(element: dict) -> Any:
    """What an input holds when its modal opens (the element's initial_* key), None if nothing."""
    return next((element[key] for key in INITIAL_KEYS if key in element), None)


def form_state(view: dict, values: dict[str, Any]) -> dict[str, dict]:
    """view.state.values for a modal whose inputs hold ``values`` ({block key: value}; inputs not in it keep
    their initial value): {block_id: {action_id: {"type": …, "value" | "selected_option" | …: …}}}."""
    state = {}
    for index, block in enumerate(view.get("blocks") or []):
        if block.get("type") != "input":
            continue
        element = block.get("element") or {}
        key = block_key(block, index)
        value = values[key] if key in values else initial_value(element)
        kind = element.get("type", "plain_text_input")
        state[key] = {element.get("action_id") or "value": {"type": kind, STATE_KEYS.get(kind, "value"): value}}
    return state
