"""Scheduled work (APScheduler 3.x): approval reminders and expiry, the daily digest.

Features contribute jobs with ``add_schedule(ctx, function)`` where ``function(scheduler, ctx)``
adds its APScheduler jobs. ``serve`` and ``socket`` start one BackgroundScheduler through the
app's on_start hook; tests call the job functions directly with an injected clock.

Settings are explicit: ``coalesce=True`` (a backlog of missed runs runs once), ``max_instances=1``
(a run never overlaps itself), ``misfire_grace_time`` per job (how late a run may still start).
Every scheduled job must be idempotent — claimed in SQLite before it acts — because two processes
may share a database and a restart re-runs what was missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.core import metrics

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}


def add_schedule(ctx, function: Callable) -> None:
    """Register function(scheduler, ctx) to add jobs when the scheduler starts."""
    ctx.extras.setdefault("schedules", []).append(function)


def build_scheduler(ctx) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults=dict(JOB_DEFAULTS),
                                    executors={"default": ThreadPoolExecutor(max_workers=4)})
    for function in ctx.extras.get("schedules", []):
        function(scheduler, ctx)
    scheduler.add_listener(metrics.scheduler_listener(ctx), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def start(ctx) -> BackgroundScheduler:
    scheduler = build_scheduler(ctx)
    scheduler.start()
    ctx.extras["scheduler"] = scheduler
    log.info("scheduler started with %d job(s)", len(scheduler.get_jobs()))
    return scheduler


def stop(ctx) -> None:
    scheduler = ctx.extras.pop("scheduler", None)
    if scheduler is not None:
        scheduler.shutdown(wait=False)


def enable(ctx) -> None:
    """Start the scheduler with the app (serve/socket), stop it with the app."""
    ctx.extras.setdefault("on_start", []).append(start)
    ctx.extras.setdefault("on_stop", []).append(stop)
