"""Drive the real app the way Slack does: signed HTTP requests to a running `amibot serve` server.

``Harness`` builds the app with the factory, serves it with the same waitress server `amibot serve`
uses on 127.0.0.1:<free port>, and sends slash commands, button clicks and events signed with the
signing secret. What the bot says arrives at the FakeSlack Web API, where tests read it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.app import Amibot, create_app
from bot.config import Settings, parse_policy
from bot.server import create_server, serve_forever
from tests.fakeslack import FakeSlack

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-token-1234"
_counter = itertools.count(1)


@dataclass
class Response:
    status: int
    body: str
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Harness:
    fake: FakeSlack
    db_path: str
    policy_data: dict = field(default_factory=dict)
    clock: Any = None
    amibot: Amibot | None = None
    _server: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> Harness:
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, slack_api_url=self.fake.url,
                            db_path=self.db_path)
        kwargs = {"clock": self.clock} if self.clock else {}
        self.amibot = create_app(settings, parse_policy(self.policy_data),
                                 slack=WebClient(token=BOT_TOKEN, base_url=self.fake.url), **kwargs)
        self._server = create_server(self.amibot, host="127.0.0.1", port=0, threads=8)
        self._thread = threading.Thread(target=serve_forever, args=(self._server,), daemon=True)
        self._thread.start()
        self.amibot.start_background()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._thread.join(timeout=5)
            self._server = None
        if self.amibot is not None:
            self.amibot.ctx.jobs.wait_idle(10)
            self.amibot.stop()

    @property
    def ctx(self):
        return self.amibot.ctx

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.effective_port}"

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every Bolt listener has returned (not just acked) and every job they started is done."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.1, deadline - time.monotonic())
            assert self.ctx.extras["listeners"].wait_idle(left), "Slack listeners did not finish"
            assert self.ctx.jobs.wait_idle(left), "background jobs did not finish"
            if self.ctx.extras["listeners"].wait_idle(0):
                return

    # --- sending what Slack sends -------------------------------------------------------------
    def post(self, body: str, content_type: str = "application/x-www-form-urlencoded",
             timestamp: int | None = None, signature: str | None = None, headers: dict | None = None,
             path: str = "/slack/events") -> Response:
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = signature or SignatureVerifier(SIGNING_SECRET).generate_signature(
            timestamp=str(timestamp), body=body)
        request = urllib.request.Request(self.url + path, data=body.encode("utf-8"), method="POST", headers={
            "Content-Type": content_type, "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": signature, **(headers or {})})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Response(response.status, response.read().decode(), time.perf_counter() - started)
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode(), time.perf_counter() - started)

    def command_body(self, text: str, user: str = "U0OPS", channel: str = "C0OPS", **extra: str) -> str:
        number = next(_counter)
        fields = {"token": "legacy", "team_id": "T0FAKE", "team_domain": "fake", "channel_id": channel,
                  "channel_name": "ops", "user_id": user, "user_name": user.lower(), "command": "/ami",
                  "text": text, "api_app_id": "A0AMIBOT", "response_url": self.fake.response_url(f"cmd{number}"),
                  "trigger_id": f"{number}.trigger.{time.time_ns()}"}
        fields.update(extra)
        return urllib.parse.urlencode(fields)

    def command(self, text: str, user: str = "U0OPS", channel: str = "C0OPS", wait: bool = True,
                **extra: str) -> Response:
        response = self.post(self.command_body(text, user, channel, **extra))
        if wait:
            self.wait_idle()
        return response

    def interact(self, payload: dict, wait: bool = True, **kwargs) -> Response:
        response = self.post(urllib.parse.urlencode({"payload": json.dumps(payload)}), **kwargs)
        if wait:
            self.wait_idle()
        return response

    def click(self, action_id: str, value: str = "", user: str = "U0LEAD", channel: str = "C0OPS",
              message_ts: str | None = None, message: dict | None = None, wait: bool = True) -> Response:
        number = next(_counter)
        payload = {
            "type": "block_actions", "team": {"id": "T0FAKE"}, "user": {"id": user, "name": user.lower()},
            "api_app_id": "A0AMIBOT", "trigger_id": f"{number}.click.{time.time_ns()}",
            "channel": {"id": channel}, "container": {"type": "message", "channel_id": channel,
                                                      "message_ts": message_ts or "1700000000.000100"},
            "message": message or {"ts": message_ts or "1700000000.000100", "blocks": []},
            "response_url": self.fake.response_url(f"act{number}"),
            "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                         "action_ts": f"{time.time():.6f}"}]}
        return self.interact(payload, wait=wait)

    def event(self, event: dict, event_id: str | None = None, wait: bool = True, **kwargs) -> Response:
        body = {"type": "event_callback", "team_id": "T0FAKE", "api_app_id": "A0AMIBOT", "event": event,
                "event_id": event_id or f"Ev{next(_counter):08d}", "event_time": int(time.time())}
        response = self.post(json.dumps(body), content_type="application/json", **kwargs)
        if wait:
            self.wait_idle()
        return response

    # --- reading what the bot said ---------------------------------------------------------------
    def replies(self) -> list:
        """Everything sent through response_urls (ephemeral answers to commands), in order."""
        return self.fake.calls_to("response_url")

    def last_reply(self):
        replies = self.replies()
        assert replies, f"the bot answered nothing; calls: {[c.method for c in self.fake.calls]}"
        return replies[-1]
