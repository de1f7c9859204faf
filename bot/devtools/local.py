"""The real app served over real HTTP on loopback, with Slack's side played by a SlackClientSim.

``LocalApp`` serves an ``Amibot`` with the same waitress server as `amibot serve`
(``bot.slack.server.create_server`` + ``serve_forever`` in a thread) on 127.0.0.1, and gives a
``SlackClientSim`` that signs requests for it. The tests' Harness and `amibot demo` both run the bot this way.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bot.app import Amibot
from bot.devtools.fakeslack import FakeSlack
from bot.devtools.slackclient import SlackClientSim
from bot.slack.server import create_server, serve_forever, stop_workers

HOST = "127.0.0.1"
STOP_WAIT_SECONDS = 10


def wait_idle(ctx, timeout: float = 30.0) -> str | None:
    """Wait until every Bolt listener has returned (not just acked), every job they started is done and
    every message the outbox owes Slack is delivered.

    Returns None when idle, or what is still busy after ``timeout`` seconds. Loops because a finishing
    job may start a listener-free job and a listener may submit a job: both must be quiet at once.
    """
    deadline = time.monotonic() + timeout
    listeners = ctx.listeners
    while True:
        left = max(0.1, deadline - time.monotonic())
        if not listeners.wait_idle(left):
            return "Slack listeners did not finish"
        if not ctx.jobs.wait_idle(left):
            return "background jobs did not finish"
        outbox = ctx.outbox
        if outbox is not None and not outbox.wait_idle(max(0.1, deadline - time.monotonic())):
            return "messages owed to Slack were not delivered"
        if listeners.wait_idle(0) and ctx.jobs.wait_idle(0):
            return None


class LocalApp:
    """Serve ``amibot`` on 127.0.0.1:``port`` (0: a free port); ``sim`` sends it Slack's signed requests."""

    def __init__(self, amibot: Amibot, signing_secret: str, fake: FakeSlack, port: int = 0, threads: int = 8):
        self.amibot = amibot
        self.fake = fake
        self._signing_secret = signing_secret
        self._port = port
        self._threads = threads
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.sim: SlackClientSim | None = None

    def start(self, background: bool = True) -> LocalApp:
        """Start serving; ``background`` also runs the app's start hooks (job recovery, schedules…)."""
        self._server = create_server(self.amibot, host=HOST, port=self._port, threads=self._threads, loop_timeout=0.05)
        self._thread = threading.Thread(target=serve_forever, args=(self._server,), name="amibot-http", daemon=True)
        self._thread.start()
        self.sim = SlackClientSim(self.url, self._signing_secret, self.fake)
        if background:
            self.amibot.start_background()
        return self

    def stop(self) -> None:
        """Stop taking requests, let running jobs finish (briefly), then stop the app's background parts."""
        if self._server is not None:
            self._server.close()
            self._thread.join(timeout=STOP_WAIT_SECONDS)
            stop_workers(self._server, STOP_WAIT_SECONDS)
            self._server = None
            self.amibot.ctx.jobs.wait_idle(STOP_WAIT_SECONDS)
            self.amibot.stop()

    @property
    def ctx(self):
        return self.amibot.ctx

    @property
    def port(self) -> int:
        return self._server.effective_port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_idle(self, timeout: float = 30.0) -> str | None:
        return wait_idle(self.ctx, timeout)
