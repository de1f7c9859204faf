"""HTTP mode: Bolt's WSGI adapter behind waitress (a production multi-threaded WSGI server).

POST /slack/events takes slash commands, interactivity and events; GET /healthz answers a small
JSON status without touching AWS or Slack, for load balancers and orchestrators.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import waitress
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import __version__
from bot.app import Amibot

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def health(amibot: Amibot) -> tuple[int, dict[str, Any]]:
    ctx = amibot.ctx
    try:
        schema = ctx.store.schema_version
        pending = ctx.jobs.pending()
        status, db = 200, "ok"
    except Exception as error:  # a broken database is exactly what a health check must report
        log.warning("health check: database unavailable: %r", error)
        schema, pending, status, db = None, None, 503, "unavailable"
    uptime = (ctx.clock() - ctx.started_at).total_seconds()
    return status, {"status": "ok" if status == 200 else "degraded", "version": __version__, "db": db,
                    "schema_version": schema, "jobs_pending": pending, "uptime_s": round(uptime, 1)}


def wsgi_app(amibot: Amibot):
    slack = SlackRequestHandler(amibot.app, path=EVENTS_PATH)

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status, body = health(amibot)
            payload = json.dumps(body).encode()
            start_response(f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        if path == EVENTS_PATH:
            with amibot.ctx.extras["acking"]:  # jobs wait while Slack waits for an ack
                return slack(environ, start_response)
        payload = b"Not Found"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
        return [payload]

    return application


def create_server(amibot: Amibot, host: str = "0.0.0.0", port: int = 3000, threads: int = 16,
                  loop_timeout: float = 1.0):
    """A waitress server ready to `run()`; `close()` stops it. Tests use it exactly as `serve` does, with a
    shorter loop timeout (how soon the loop notices `close()`) so that each stop takes milliseconds."""
    return waitress.create_server(wsgi_app(amibot), host=host, port=port, threads=threads, ident="amibot",
                                  clear_untrusted_proxy_headers=True, asyncore_loop_timeout=loop_timeout)


def serve_forever(server) -> None:
    """Run until `server.close()` is called from another thread (waitress then sees a closed socket)."""
    try:
        server.run()
    except OSError:
        if server.accepting:  # a real socket error, not our own shutdown
            raise
