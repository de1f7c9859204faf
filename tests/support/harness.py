"""Drive the real app the way Slack does: signed HTTP requests to a running `amibot serve` server.

``Harness`` builds the app with the factory, serves it with the same waitress server `amibot serve`
uses on 127.0.0.1:<free port> (bot.devtools.local, shared with `amibot demo`), and sends slash
commands, button clicks and events signed with the signing secret (bot.devtools.slackclient).
What the bot says arrives at the FakeSlack Web API, where tests read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient

from bot.app import Amibot, create_app
from bot.aws.clients import Aws
from bot.core.config import Settings, parse_policy
from bot.devtools.fakeslack import FakeSlack
from bot.devtools.local import LocalApp
from bot.devtools.slackclient import Response

__all__ = ["BOT_TOKEN", "REGIONS", "SIGNING_SECRET", "AppWithAws", "Harness", "Response"]

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-token-1234"
REGIONS = ["us-east-1", "eu-west-1"]  # what the default test policy covers (tests/conftest.py)


@dataclass
class Harness:
    fake: FakeSlack
    db_path: str
    policy_data: dict = field(default_factory=dict)
    clock: Any = None
    amibot: Amibot | None = None
    _local: LocalApp | None = None

    def start(self) -> Harness:
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, slack_api_url=self.fake.url,
                            db_path=self.db_path)
        kwargs = {"clock": self.clock} if self.clock else {}
        self.amibot = create_app(settings, parse_policy(self.policy_data),
                                 slack=WebClient(token=BOT_TOKEN, base_url=self.fake.url), **kwargs)
        self._local = LocalApp(self.amibot, SIGNING_SECRET, self.fake).start()
        return self

    def stop(self) -> None:
        if self._local is not None:
            self._local.stop()

    @property
    def ctx(self):
        return self.amibot.ctx

    @property
    def url(self) -> str:
        return self._local.url

    @property
    def local(self) -> LocalApp:
        """The served app with its Slack-side client (what `amibot demo`'s console drives)."""
        return self._local

    @property
    def _sim(self):
        return self._local.sim

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every Bolt listener has returned (not just acked) and every job they started is done."""
        busy = self._local.wait_idle(timeout)
        assert busy is None, busy

    # --- sending what Slack sends (signed by bot.devtools.slackclient, shared with `amibot demo`) ------
    def post(self, body: str, content_type: str = "application/x-www-form-urlencoded",
             timestamp: int | None = None, signature: str | None = None, headers: dict | None = None,
             path: str = "/slack/events") -> Response:
        return self._sim.post(body, content_type, timestamp, signature, headers, path)

    def command_body(self, text: str, user: str = "U0OPS", channel: str = "C0OPS", **extra: str) -> str:
        return self._sim.command_body(text, user, channel, **extra)

    def command(self, text: str, user: str = "U0OPS", channel: str = "C0OPS", wait: bool = True,
                **extra: str) -> Response:
        response = self.post(self.command_body(text, user, channel, **extra))
        if wait:
            self.wait_idle()
        return response

    def interact(self, payload: dict, wait: bool = True, **kwargs) -> Response:
        response = self._sim.interact(payload, **kwargs)
        if wait:
            self.wait_idle()
        return response

    def click(self, action_id: str, value: str = "", user: str = "U0LEAD", channel: str = "C0OPS",
              message_ts: str | None = None, message: dict | None = None, wait: bool = True) -> Response:
        payload = self._sim.block_actions_payload({"action_id": action_id, "value": value}, user, channel,
                                                  message_ts=message_ts, message=message)
        return self.interact(payload, wait=wait)

    def event(self, event: dict, event_id: str | None = None, wait: bool = True, **kwargs) -> Response:
        response = self._sim.event(event, event_id, **kwargs)
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


@dataclass
class AppWithAws(Harness):
    """The Harness with the app's Aws given (create_app(aws=…)), e.g. one that routes some calls to a Stubber."""

    aws_layer: Aws | None = None

    def start(self) -> AppWithAws:  # as Harness.start, with the app's Aws injected (create_app(aws=…))
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, slack_api_url=self.fake.url,
                            db_path=self.db_path)
        self.amibot = create_app(settings, parse_policy(self.policy_data), aws=self.aws_layer,
                                 slack=WebClient(token=BOT_TOKEN, base_url=self.fake.url))
        self._local = LocalApp(self.amibot, SIGNING_SECRET, self.fake).start()
        return self
