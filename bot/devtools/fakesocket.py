"""A local stand-in for Slack's Socket Mode, for end-to-end tests of `amibot socket`.

Socket Mode, as Slack runs it: the app calls the Web API method ``apps.connections.open`` with its app-level
token (``xapp-…``) and gets a one-time WebSocket URL; on connecting it receives ``hello``; then every slash
command, interactivity payload and Events API event arrives as an *envelope* — ``{"envelope_id": …, "type":
"slash_commands" | "interactive" | "events_api", "payload": {…}, "accepts_response_payload": …}`` (events add
``retry_attempt`` / ``retry_reason``) — that the app acks by sending ``{"envelope_id": …}`` back (with an optional
``payload``). Slack redelivers an envelope it saw no ack for, with the same envelope id and payload, and sends
``{"type": "disconnect", "reason": "refresh_requested"}`` when the app should open a new connection.

``FakeSocket`` plays that side on ``ws://127.0.0.1:<port>/link/?ticket=…`` with the ``websockets`` library's
threaded server, and answers ``apps.connections.open`` through a FakeSlack (``fake.methods``), so the bot's own
Socket Mode client (slack_sdk's, through SLACK_API_URL) finds it exactly as it finds Slack. Every envelope sent
is an ``Envelope`` that records when its ack arrived.

    fake = FakeSlack().start()
    socket = FakeSocket(fake).start()
    connection = socket.wait_for_connection()            # after `amibot socket` started with SLACK_API_URL=fake.url
    sent = socket.slash_command({"command": "/ami", "text": "list", …})
    sent.wait_ack(timeout=3)
    socket.redeliver(sent, retry_attempt=1, retry_reason="timeout")
    socket.disconnect()                                  # the bot calls apps.connections.open again and reconnects
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from bot.devtools.fakeslack import HOST, Call, FakeSlack

log = logging.getLogger(__name__)

OPEN_METHOD = "apps.connections.open"
APP_ID = "A0AMIBOT"
POLL_SECONDS = 0.01


@dataclass
class Envelope:
    """One delivery of an envelope (a redelivery is another Envelope with the same envelope_id)."""

    envelope_id: str
    type: str
    payload: dict
    connection: int  # the Connection.number it was sent on
    sent_at: float
    message: dict = field(default_factory=dict)  # exactly what went over the wire
    ack: dict | None = None
    acked_at: float | None = None
    _acked: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def ack_seconds(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at

    def wait_ack(self, timeout: float = 3.0) -> dict:
        """The ack (``{"envelope_id": …, "payload"?: …}``); AssertionError if none came within ``timeout``."""
        if not self._acked.wait(timeout):
            raise AssertionError(f"no ack for {self.type} envelope {self.envelope_id} within {timeout}s")
        return self.ack or {}


@dataclass
class Connection:
    number: int  # 1 for the first connection, 2 after a reconnect, …
    path: str
    opened_at: float
    websocket: ServerConnection = field(repr=False)
    closed_at: float | None = None
    received: list[dict] = field(default_factory=list)  # what the app sent that was not an ack

    @property
    def open(self) -> bool:
        return self.closed_at is None


class FakeSocket:
    """Slack's Socket Mode side on 127.0.0.1 (see the module docstring)."""

    def __init__(self, fake: FakeSlack, app_id: str = APP_ID):
        self.fake = fake
        self.app_id = app_id
        self.connections: list[Connection] = []
        self.envelopes: list[Envelope] = []
        self.tickets: list[str] = []  # one per apps.connections.open answered
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> FakeSocket:
        self._server = serve(self._handle, HOST, 0, compression=None, ping_interval=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="FakeSocket", daemon=True)
        self._thread.start()
        self.fake.methods[OPEN_METHOD] = self._open
        return self

    def stop(self) -> None:
        self.fake.methods.pop(OPEN_METHOD, None)
        if self._server is None:
            return
        for connection in self._snapshot():
            if connection.open:
                connection.websocket.close()
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeSocket:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.socket.getsockname()[1]

    # --- apps.connections.open --------------------------------------------------------------------------------
    def _open(self, call: Call) -> dict:
        if not (call.token or "").startswith("xapp-"):  # Slack wants the app-level token here, not the bot's
            return {"ok": False, "error": "not_allowed_token_type"}
        ticket = uuid.uuid4().hex
        with self._lock:
            self.tickets.append(ticket)
        return {"ok": True, "url": f"ws://{HOST}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    # --- the WebSocket side ---------------------------------------------------------------------------------
    def _handle(self, websocket: ServerConnection) -> None:
        connection = Connection(next(self._numbers), websocket.request.path, time.monotonic(), websocket)
        with self._lock:
            self.connections.append(connection)
        try:
            websocket.send(json.dumps({"type": "hello", "num_connections": len(self.open_connections()),
                                       "debug_info": {"host": "fakesocket", "approximate_connection_time": 3600},
                                       "connection_info": {"app_id": self.app_id}}))
            for raw in websocket:
                self._received(connection, raw)
        except ConnectionClosed:
            pass
        finally:
            connection.closed_at = time.monotonic()

    def _received(self, connection: Connection, raw: str | bytes) -> None:
        arrived = time.monotonic()
        try:
            message = json.loads(raw)
        except ValueError:
            message = {"unparsed": raw if isinstance(raw, str) else raw.decode("utf-8", "replace")}
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        with self._lock:
            waiting = next((e for e in self.envelopes if e.envelope_id == envelope_id and e.acked_at is None), None)
            if waiting is None:
                connection.received.append(message)
                return
            waiting.ack, waiting.acked_at = message, arrived
        waiting._acked.set()

    # --- sending --------------------------------------------------------------------------------------------
    def open_connections(self) -> list[Connection]:
        return [connection for connection in self._snapshot() if connection.open]

    def wait_for_connection(self, number: int = 1, timeout: float = 30.0) -> Connection:
        """The ``number``-th connection (1: the first), once it is open; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connections = self._snapshot()
            if len(connections) >= number and connections[number - 1].open:
                return connections[number - 1]
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"the app never opened connection {number} (connections: {self._snapshot()})")

    def wait_for_close(self, connection: Connection, timeout: float = 10.0) -> None:
        """Until the app has let go of ``connection`` (after a disconnect, slack_sdk's built-in client reads the
        new connection only once the old one is closed, which waits for its 3-second receive timeout)."""
        deadline = time.monotonic() + timeout
        while connection.open and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        if connection.open:
            raise AssertionError(f"the app kept connection {connection.number} open for {timeout}s")

    def send(self, kind: str, payload: dict, envelope_id: str | None = None, retry_attempt: int | None = None,
             retry_reason: str | None = None, accepts_response_payload: bool | None = None) -> Envelope:
        """Send an envelope on the newest open connection, as Slack does, and record it."""
        open_now = self.open_connections()
        if not open_now:
            raise AssertionError("no open Socket Mode connection to send on")
        connection = open_now[-1]
        message: dict[str, Any] = {"envelope_id": envelope_id or str(uuid.uuid4()), "type": kind, "payload": payload,
                                   "accepts_response_payload": kind == "slash_commands"
                                   if accepts_response_payload is None else accepts_response_payload}
        if kind == "events_api" or retry_attempt is not None:
            message["retry_attempt"] = retry_attempt or 0
            message["retry_reason"] = retry_reason or ""
        envelope = Envelope(message["envelope_id"], kind, payload, connection.number, time.monotonic(), message)
        with self._lock:
            self.envelopes.append(envelope)
        envelope.sent_at = time.monotonic()
        connection.websocket.send(json.dumps(message))
        return envelope

    def slash_command(self, fields: dict[str, str], **kwargs) -> Envelope:
        return self.send("slash_commands", fields, **kwargs)

    def interactive(self, payload: dict, **kwargs) -> Envelope:
        return self.send("interactive", payload, **kwargs)

    def event(self, body: dict, **kwargs) -> Envelope:
        """An Events API callback body (``{"type": "event_callback", "event": {…}, "event_id": …}``)."""
        return self.send("events_api", body, **kwargs)

    def redeliver(self, envelope: Envelope, retry_attempt: int | None = None,
                  retry_reason: str | None = None) -> Envelope:
        """Send ``envelope`` again — same envelope id, same payload — as Slack does when it missed the ack."""
        return self.send(envelope.type, envelope.payload, envelope_id=envelope.envelope_id,
                         retry_attempt=retry_attempt, retry_reason=retry_reason,
                         accepts_response_payload=envelope.message.get("accepts_response_payload"))

    def disconnect(self, reason: str = "refresh_requested", connection: Connection | None = None) -> Connection:
        """Ask the app to reconnect (Slack does so every few hours); returns the connection told to go."""
        target = connection or self.open_connections()[-1]
        target.websocket.send(json.dumps({"type": "disconnect", "reason": reason,
                                          "debug_info": {"host": "fakesocket"}}))
        return target

    def _snapshot(self) -> list[Connection]:
        with self._lock:
            return list(self.connections)
