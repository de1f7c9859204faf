"""Socket Mode's small HTTP listener (`amibot socket --metrics-port`): GET /metrics and /healthz only.

In Socket Mode there is no signing secret, so no /slack/events here; `serve` answers both paths on its own HTTP
server (bot/slack/server.py). The counters are bot/core/metrics.py's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import waitress

from bot.core import metrics
from bot.core.metrics import METRICS_PATH
from bot.slack.context import Context
from bot.slack.health import HEALTH_PATH, health
from bot.slack.server import stop_workers

log = logging.getLogger(__name__)


def ops_wsgi_app(ctx: Context) -> Callable:
    """GET /metrics and /healthz only."""

    def application(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if method in ("GET", "HEAD") and path == METRICS_PATH:
            return metrics.scrape(ctx, environ, start_response)
        if method in ("GET", "HEAD") and path == HEALTH_PATH:
            code, body = health(ctx)
            payload, content_type = json.dumps(body).encode(), "application/json"
            status = "200 OK" if code == 200 else "503 Service Unavailable"
        else:
            payload, content_type, status = b"Not Found", "text/plain", "404 Not Found"
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        return [payload] if method != "HEAD" else [b""]

    return application


class MetricsServer:
    """The Socket Mode listener (waitress, as `serve` uses) in a daemon thread; `close()` stops it."""

    def __init__(self, ctx: Context, host: str = "127.0.0.1", port: int = 0) -> None:
        # Creating the server binds the port, so "port in use" surfaces here, before Slack is connected.
        self._server = waitress.create_server(ops_wsgi_app(ctx), host=host, port=port, threads=2,
                                              ident="amibot-metrics", asyncore_loop_timeout=0.5)
        self.host, self.port = host, self._server.effective_port
        self._thread = threading.Thread(target=self._run, name="amibot-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%s%s", self.host, self.port, METRICS_PATH)
        return self

    def _run(self) -> None:
        try:
            self._server.run()
        except OSError:
            if self._server.accepting:  # a real socket error, not our own close()
                log.exception("the metrics listener stopped")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)
        stop_workers(self._server)


def start_server(ctx: Context, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """What `amibot socket --metrics-port` runs (port 0: a free one, for tests)."""
    return MetricsServer(ctx, host, port).start()
