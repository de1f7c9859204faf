"""Scheduled work (APScheduler 3.x): the machinery. What is scheduled, and when, is listed in bot/wiring.py.

``serve`` and ``socket`` start one BackgroundScheduler through the app's start hook; tests build it with
``bot.wiring.build_scheduler`` and call the job functions directly with an injected clock.

Settings are explicit: ``coalesce=True`` (a backlog of missed runs runs once), ``max_instances=1``
(a run never overlaps itself), ``misfire_grace_time`` per job (how late a run may still start).
Every scheduled job must be idempotent — claimed in SQLite before it acts — because two processes
may share a database and a restart re-runs what was missed.
"""

from __future__ import annotations

import logging

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.core import metrics
from bot.slack.context import Context

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}


def new_scheduler(ctx: Context) -> BackgroundScheduler:
    """A scheduler with amibot's defaults and its runs counted in the app's metrics, with no jobs yet."""
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults=dict(JOB_DEFAULTS),
                                    executors={"default": ThreadPoolExecutor(max_workers=4)})
    scheduler.add_listener(metrics.scheduler_listener(ctx), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def start(ctx: Context, scheduler: BackgroundScheduler) -> None:
    scheduler.start()
    ctx.scheduler = scheduler
    log.info("scheduler started with %d job(s)", len(scheduler.get_jobs()))


def stop(ctx: Context) -> None:
    scheduler, ctx.scheduler = ctx.scheduler, None
    if scheduler is not None:
        scheduler.shutdown(wait=False)
