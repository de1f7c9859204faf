"""HTTP mode: Bolt's WSGI adapter behind waitress (a production multi-threaded WSGI server).

POST /slack/events takes slash commands, interactivity and events; GET /healthz answers a small
JSON status without touching AWS or Slack, for load balancers and orchestrators (bot/slack/health.py);
GET /metrics the Prometheus exposition (bot/core/metrics.py).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Protocol

import waitress
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

from bot.core import metrics
from bot.slack.context import Context
from bot.slack.health import HEALTH_PATH, health

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class Served(Protocol):
    """What the runtime (bot/app.py's Amibot) passes in: the Bolt app and its context."""

    app: App
    ctx: Context


# --- POST /slack/events: nothing unauthenticated is parsed, logged or stored -----------------------------
# Slack's own payloads are a few KB (a slash command's text is at most about 4,000 characters, a modal's
# state or a message's blocks tens of KB); 256 KiB leaves ample room and bounds what an anonymous client
# can make us read and hold.
MAX_BODY_BYTES = 256 * 1024


def _answer(start_response, status: str, text: str) -> list[bytes]:
    payload = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(payload)))])
    return [payload]


def _read_capped(environ) -> bytes | None:
    """The request body, or None when it is over MAX_BODY_BYTES. Never reads more than the cap plus one byte,
    whatever Content-Length says (it may be missing or lie)."""
    declared = environ.get("CONTENT_LENGTH") or ""
    try:
        length = int(declared) if declared.strip() else None
    except ValueError:
        length = None
    if length is not None and length > MAX_BODY_BYTES:
        return None
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    wanted = MAX_BODY_BYTES + 1 if length is None else min(length, MAX_BODY_BYTES + 1)
    chunks, total = [], 0
    while total < wanted:
        chunk = stream.read(min(65536, wanted - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    body = b"".join(chunks)
    return None if len(body) > MAX_BODY_BYTES else body


def _signed(verifier: SignatureVerifier | None, environ, body: bytes) -> bool:
    if verifier is None:  # no signing secret (never in `serve`, which requires one): Bolt decides
        return True
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""
    signature = environ.get("HTTP_X_SLACK_SIGNATURE") or ""
    if not timestamp.strip().isdigit() or not signature:
        return False
    return verifier.is_valid(body=body, timestamp=timestamp.strip(), signature=signature)


def guarded_events(amibot: Served):
    """POST /slack/events with the body size and Slack's signature checked before anything parses the body:
    over MAX_BODY_BYTES → 413, unsigned, stale or non-integer timestamp → 401 (both tiny answers; the body of
    an unsigned request is never logged), then Bolt gets the already-read body. A signed body Bolt cannot
    make sense of is a 400 and one log line, never a 500 with a traceback."""
    slack = SlackRequestHandler(amibot.app, path=EVENTS_PATH)
    secret = amibot.ctx.settings.signing_secret
    verifier = SignatureVerifier(secret) if secret else None

    def events(environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", "POST only")
        body = _read_capped(environ)
        if body is None:
            log.info("refused a request body over %d bytes (Content-Length %s)", MAX_BODY_BYTES,
                     environ.get("CONTENT_LENGTH") or "absent")
            return _answer(start_response, "413 Payload Too Large", "request body too large")
        if not _signed(verifier, environ, body):
            return _answer(start_response, "401 Unauthorized", "invalid signature or timestamp")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        with amibot.ctx.acking:  # jobs wait while Slack waits for an ack
            try:
                return slack(environ, start_response)
            except Exception as error:  # signed, yet not a body Bolt can parse: Slack never sends these
                log.warning("signed request Bolt could not handle (%s: %s); answered 400", type(error).__name__,
                            str(error)[:200])
                return _answer(start_response, "400 Bad Request", "malformed request")

    return events


def wsgi_app(amibot: Served):
    slack = guarded_events(amibot)

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status, body = health(amibot.ctx)
            payload = json.dumps(body).encode()
            start_response(f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        if path == metrics.METRICS_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return metrics.scrape(amibot.ctx, environ, start_response)
        if path == EVENTS_PATH:
            return slack(environ, start_response)
        payload = b"Not Found"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
        return [payload]

    return application


def create_server(amibot: Served, host: str = "0.0.0.0", port: int = 3000, threads: int = 16,
                  loop_timeout: float = 1.0):
    """A waitress server ready to `run()`; `close()` stops it. Tests use it exactly as `serve` does, with a
    shorter loop timeout (how soon the loop notices `close()`) so that each stop takes milliseconds."""
    # max_request_body_size: waitress itself stops reading a body over the cap (it would otherwise spool any
    # size to a temporary file before the app sees it); guarded_events checks again for any other server.
    return waitress.create_server(wsgi_app(amibot), host=host, port=port, threads=threads, ident="amibot",
                                  clear_untrusted_proxy_headers=True, asyncore_loop_timeout=loop_timeout,
                                  max_request_body_size=MAX_BODY_BYTES + 1)


def stop_workers(server, timeout: float = 5.0) -> None:
    """End a closed server's worker threads, letting requests in flight finish (up to `timeout`). waitress's
    `close()` on a single-socket server only closes the socket: without this each stopped server keeps its
    `threads` idle workers — and through them the whole app — for the rest of the process."""
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=timeout)


def serve_forever(server) -> None:
    """Run until `server.close()` is called from another thread (waitress then sees a closed socket)."""
    try:
        server.run()
    except OSError:
        if server.accepting:  # a real socket error, not our own shutdown
            raise
