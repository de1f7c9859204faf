"""Everything a listener or a job needs, built once by the app factory (bot/app.py, wired by bot/wiring.py)
and passed explicitly.

Every per-process part has a typed field here; nothing is looked up by a string key. The runtime's own parts
(the scheduler, the start and stop hooks) stay in the runtime: the one it shares, the running scheduler, is
typed by APScheduler's own base class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from bot.aws.clients import AwsAccounts
from bot.core.access import Access
from bot.core.config import Policy, Settings
from bot.core.metrics import Metrics
from bot.durable.jobs import InFlight, JobRunner, TrackedExecutor
from bot.durable.store import Store
from bot.services.create import DEFAULT_POLL_SECONDS as CREATE_POLL_SECONDS
from bot.services.create import DEFAULT_WAIT_SECONDS as CREATE_WAIT_SECONDS
from bot.services.digest import Publisher
from bot.services.usage_reports import DEFAULT_POLL_SECONDS as USAGE_REPORT_POLL_SECONDS
from bot.services.usage_reports import DEFAULT_WAIT_SECONDS as USAGE_REPORT_WAIT_SECONDS
from bot.slack.outbox import BACKOFF_SECONDS, Outbox
from bot.slack.subcommands import Registry

if TYPE_CHECKING:  # annotations only: the scheduler is started by the runtime (bot/scheduler.py)
    from apscheduler.schedulers.base import BaseScheduler


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Waits:
    """How long background jobs wait for AWS and Slack, and how often they look: the defaults serve production;
    tests shorten them with ``dataclasses.replace(ctx.waits, …)``."""

    create_wait_seconds: float = CREATE_WAIT_SECONDS  # a new image: until it is available (or the message says so)
    create_poll_seconds: float = CREATE_POLL_SECONDS
    create_retry_seconds: float = 1.0  # finishing the image's message: pause before a retry, times the attempt
    usage_report_wait_seconds: float = USAGE_REPORT_WAIT_SECONDS  # AWS's image usage report, for deregistration
    usage_report_poll_seconds: float = USAGE_REPORT_POLL_SECONDS
    bake_poll_seconds: float = 30.0  # a bake's run: how often AWS is asked (backing off while nothing changes)
    bake_deadline_seconds: float | None = None  # None: the mechanism's own (bot.services.bake.DEADLINE_SECONDS)
    bake_scan_wait_seconds: float = 7200.0  # a proposed version: how long Inspector's first scan is waited for
    bake_scan_poll_seconds: float = 300.0
    rollout_poll_seconds: float = 60.0  # a rollout's refreshes: how often AWS is asked (backing off while unchanged)
    outbox_backoff_seconds: float = BACKOFF_SECONDS  # the outbox's first retry; doubled each time


@dataclass
class Context:
    settings: Settings
    policy: Policy
    store: Store
    aws: AwsAccounts
    slack: WebClient
    jobs: JobRunner
    access: Access
    registry: Registry = field(default_factory=Registry)
    clock: Callable[[], datetime] = utc_now
    started_at: datetime = field(default_factory=utc_now)
    waits: Waits = field(default_factory=Waits)
    metrics: Metrics | None = None  # this app's own registry (bot.core.metrics.of falls back to a silent one)
    listeners: TrackedExecutor | None = None  # Bolt's listener pool
    acking: InFlight = field(default_factory=InFlight)  # Slack requests waiting for their ack: jobs yield to them
    outbox: Outbox | None = None
    # Deliver what a commit owes Slack now, on the committing thread (the outbox's deliver_due; None: only the
    # outbox worker delivers). The approval engine calls it after each commit.
    deliver_now: Callable[[], int] | None = None
    digest_publisher: Publisher | None = None  # how the daily digest is posted (bot.slack.post_digest)
    scheduler: BaseScheduler | None = None  # while running (serve, socket)
    health_problem: str | None = None  # the last problem /healthz logged, so each is logged once
    permalinks: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, ts) → link, asked once
