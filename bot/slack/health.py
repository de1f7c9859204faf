"""GET /healthz: a small JSON status without touching AWS or Slack, for load balancers and orchestrators.

Served by the HTTP server (bot/slack/server.py) and, in Socket Mode, by the metrics listener
(bot/slack/metrics_server.py).
"""

from __future__ import annotations

import logging
from typing import Any

from bot import __version__
from bot.durable import jobs
from bot.services.digest import health_status
from bot.slack.context import Context

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


def health(ctx: Context) -> tuple[int, dict[str, Any]]:
    """200 only when the database file is the one opened at start and a short write transaction succeeds
    (bot/durable/store.py Store.health: about a second at most, even when the file is locked or truncated)."""
    try:
        checked = ctx.store.health(jobs_pending=jobs.count_active)
    except Exception as error:  # a broken database is exactly what a health check must report
        checked = {"ok": False, "problem": f"{type(error).__name__}: {error}", "schema_version": None,
                   "jobs_pending": None}
    if not checked["ok"]:
        _log_health_problem_once(ctx, checked["problem"])
    else:
        ctx.health_problem = None
    status = 200 if checked["ok"] else 503
    uptime = (ctx.clock() - ctx.started_at).total_seconds()
    body = {"status": "ok" if status == 200 else "degraded", "version": __version__,
            "db": "ok" if status == 200 else "unavailable", "schema_version": checked["schema_version"],
            "jobs_pending": checked["jobs_pending"], "uptime_s": round(uptime, 1)}
    if checked["problem"]:
        body["reason"] = checked["problem"]
    if checked["ok"]:
        body["digest"] = _digest_health(ctx)
    return status, body


def _digest_health(ctx: Context) -> dict | None:
    """The latest daily digest run: {"date", "channel", "state", "attempts", "error"?, "next_attempt_at"?}."""
    try:
        return health_status(ctx)
    except Exception as error:  # a health check never fails on its way to report something else
        return {"state": "unknown", "error": f"{type(error).__name__}: {error}"}


def _log_health_problem_once(ctx: Context, problem: str) -> None:
    if ctx.health_problem != problem:  # once per distinct problem, not once per probe
        ctx.health_problem = problem
        if problem != ctx.store.file_problem():  # a problem with the file itself: the store has said it once
            log.error("health check: database unavailable: %s", problem)
