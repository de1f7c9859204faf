"""Prometheus metrics: what an operator watches (GET /metrics; in Socket Mode a small listener, --metrics-port,
bot/slack/metrics_server.py). This module holds the counters and their registry only; the app's are created and
attached by bot/wiring.py.

One CollectorRegistry per app (not prometheus_client's global one), so several apps in one process — the tests,
the demo — each count only their own traffic. Features report through small functions here
(``command_finished``, ``click_finished``, ``job_finished``…) that take the context, so no caller touches a metric
object. What lives in SQLite (jobs waiting or running, approval requests by state) is read at scrape time by
``StoreCollector``: always right, across restarts and processes sharing the database.

Label values are bounded: subcommands and actions come from fixed lists ("unknown" otherwise), outcomes from a
small set, AWS operations from what the code calls, AWS errors by class (throttled, denied…), never by message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bot import __version__

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

COMMAND_OUTCOMES = ("ok", "usage", "refused", "error", "crashed")
# Slack needs its ack within 3 s; the buckets are fine where acks are (milliseconds) and around the limit.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BAKE_BUCKETS = (60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
DIGEST_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0)
JOB_STATES = ("queued", "running")  # the queue; done/failed rows are history (pruned after a week)
APPROVAL_STATES = ("pending", "approved", "rejected", "expired", "cancelled", "executing", "succeeded", "failed")
HELP_WORDS = ("", "help", "-h", "--help", "?")
# ({(job kind, state): count} of the queued and running jobs, {request state: count}), read at scrape time
DatabaseCounts = Callable[[], tuple[dict[tuple[str, str], int], dict[str, int]]]


class Metrics:
    """The metric objects of one app, in their own registry."""

    def __init__(self, ctx: Any = None, database_counts: DatabaseCounts | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        Info("amibot_build", "The running amibot's version.", registry=registry).info({"version": __version__})
        self.commands = Counter("amibot_commands", "Slash commands run, by subcommand and outcome.",
                                ["subcommand", "outcome"], registry=registry)
        self.clicks = Counter("amibot_clicks", "Button clicks handled, by action and outcome.",
                              ["action", "outcome"], registry=registry)
        self.ack_seconds = Histogram("amibot_ack_seconds", "Time from a Slack request's arrival to its ack, by kind.",
                                     ["kind"], buckets=ACK_BUCKETS, registry=registry)
        self.job_seconds = Histogram("amibot_job_duration_seconds", "Background job run time, by kind and outcome.",
                                     ["kind", "outcome"], buckets=JOB_BUCKETS, registry=registry)
        self.aws_calls = Counter("amibot_aws_calls", "AWS API calls (after botocore's retries), by service, "
                                 "operation and outcome (ok, or the error's class).",
                                 ["service", "operation", "outcome"], registry=registry)
        self.digest_seconds = Histogram("amibot_digest_duration_seconds", "Time to compute the digest (every "
                                        "region), by outcome.", ["outcome"], buckets=DIGEST_BUCKETS,
                                        registry=registry)
        self.digest_findings = Gauge("amibot_digest_findings", "What the last digest found: stale_images, "
                                     "orphaned_snapshots, unchecked_regions.", ["finding"], registry=registry)
        self.digest_cost = Gauge("amibot_digest_monthly_cost_usd", "Monthly cost of what the last digest found, USD.",
                                 registry=registry)
        self.digest_last = Gauge("amibot_digest_last_success_timestamp_seconds",
                                 "When a digest was last computed (Unix time).", registry=registry)
        self.scheduler_runs = Counter("amibot_scheduler_runs", "Scheduled job runs, by job id and outcome "
                                      "(ok, error, missed).", ["job", "outcome"], registry=registry)
        self.bakes = Counter("amibot_bakes", "Bakes by outcome: started, succeeded, failed, cancelled, overdue.",
                             ["outcome"], registry=registry)
        self.bake_seconds = Histogram("amibot_bake_duration_seconds", "Time from a bake's start to its end, by "
                                      "outcome.", ["outcome"], buckets=BAKE_BUCKETS, registry=registry)
        self.rollouts = Counter("amibot_rollouts", "Rollouts by outcome: started, succeeded, failed, cancelled.",
                                ["outcome"], registry=registry)
        self.instances_replaced = Counter("amibot_rollout_instances_replaced", "Instances replaced by rollouts.",
                                          registry=registry)
        self.images_revoked = Counter("amibot_images_revoked", "Images revoked by /ami revoke (deprecated and "
                                      "disabled; descendants too).", registry=registry)
        if ctx is not None and database_counts is not None:
            registry.register(StoreCollector(ctx, database_counts))


class StoreCollector(Collector):
    """Gauges read from SQLite when scraped (one cheap GROUP BY each), so they are right across restarts. The
    tables' owners count (``database_counts``: given by the app factory, as this module sits below them)."""

    def __init__(self, ctx: Any, database_counts: DatabaseCounts) -> None:
        self.ctx = ctx
        self.database_counts = database_counts

    def describe(self) -> list:
        return []  # read at scrape time only: registering must not touch the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            jobs, requests = self.database_counts()
        except Exception as error:  # a broken database must not break the scrape; /healthz says why
            log.warning("metrics: cannot read the database: %r", error)
            yield GaugeMetricFamily("amibot_database_up", "Whether the last scrape could read SQLite.", value=0)
            return
        yield GaugeMetricFamily("amibot_database_up", "Whether the last scrape could read SQLite.", value=1)
        depth = GaugeMetricFamily("amibot_job_queue_depth", "Durable jobs waiting or running, by kind and state.",
                                  labels=["kind", "state"])
        counts = {(kind, state): 0 for kind in self.ctx.jobs.kinds for state in JOB_STATES}
        counts.update(jobs)
        for (kind, state), count in sorted(counts.items()):
            depth.add_metric([kind, state], count)
        yield depth
        states = GaugeMetricFamily("amibot_approval_requests", "Approval requests in the database, by state.",
                                   labels=["state"])
        by_state = dict.fromkeys(APPROVAL_STATES, 0) | requests
        for state, count in sorted(by_state.items()):
            states.add_metric([state], count)
        yield states


# --- one app's metrics ----------------------------------------------------------------------------------

_NO_APP = Metrics()  # for code run without an app (a context built by hand): counted, never exposed


def of(ctx) -> Metrics:
    """The app's metrics (``ctx.metrics``, set by bot/wiring.py), else one that counts and is never exposed."""
    found = getattr(ctx, "metrics", None)
    return found if isinstance(found, Metrics) else _NO_APP


def render(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition (Prometheus text format; OpenMetrics when the scraper's Accept header asks for it)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


def scrape(ctx, environ, start_response) -> list[bytes]:
    """WSGI answer to GET/HEAD /metrics (used by `serve`'s server and by the Socket Mode listener)."""
    payload, content_type = render(of(ctx).registry, environ.get("HTTP_ACCEPT"))
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
    return [payload] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]


# --- what features report -------------------------------------------------------------------------------

def outcome_label(outcome: str | None) -> str:
    """An audit outcome ("ok", "usage: …", "refused: …", "crashed: ref …") as one of a few label values."""
    head = (outcome or "").split(":", 1)[0].strip()
    if head == "help":  # `/ami <subcommand> --help`: the user asked for its usage and got it
        return "ok"
    return head if head in COMMAND_OUTCOMES else "error"


def subcommand_label(registry, text: str | None) -> str:
    """The subcommand a command's text names ("help" for none), or "unknown": bounded, whatever users type."""
    words = (text or "").strip().split(maxsplit=1)
    word = words[0].lower() if words else ""
    if word in HELP_WORDS:
        return "help"
    spec = registry.lookup(word) if registry is not None else None
    return spec.name if spec is not None else "unknown"


def command_finished(ctx, text: str | None, outcome: str | None) -> None:
    _safely(lambda: of(ctx).commands.labels(subcommand_label(getattr(ctx, "registry", None), text),
                                            outcome_label(outcome)).inc())


def click_finished(ctx, action: str, outcome: str | None) -> None:
    """`action` must come from a fixed list (the button's kind), never from the request."""
    _safely(lambda: of(ctx).clicks.labels(action, outcome_label(outcome)).inc())


def job_finished(ctx, kind: str, seconds: float, state: str) -> None:
    _safely(lambda: of(ctx).job_seconds.labels(kind, state).observe(seconds))


def bake_counted(ctx, outcome: str) -> None:
    """`outcome`: one of a fixed few (started, succeeded, failed, cancelled, overdue)."""
    _safely(lambda: of(ctx).bakes.labels(outcome).inc())


def rollout_counted(ctx, outcome: str, replaced: int = 0) -> None:
    """`outcome`: started, succeeded, failed or cancelled; `replaced`: instances the rollout replaced."""
    _safely(lambda: of(ctx).rollouts.labels(outcome).inc())
    if replaced:
        _safely(lambda: of(ctx).instances_replaced.inc(replaced))


def image_revoked(ctx) -> None:
    """One image deprecated and disabled by a revocation (counted once: its step is done once)."""
    _safely(lambda: of(ctx).images_revoked.inc())


def bake_finished(ctx, outcome: str, seconds: float) -> None:
    _safely(lambda: of(ctx).bake_seconds.labels(outcome).observe(seconds))


def aws_called(ctx, service: str, operation: str, error: str | None) -> None:
    _safely(lambda: of(ctx).aws_calls.labels(service, operation, error or "ok").inc())


def digest_computed(ctx, seconds: float, findings=None) -> None:
    """Record one digest computation; `findings` None means it failed."""
    def record() -> None:
        metrics = of(ctx)
        metrics.digest_seconds.labels("ok" if findings is not None else "failed").observe(seconds)
        if findings is None:
            return
        metrics.digest_findings.labels("stale_images").set(len(findings.stale))
        metrics.digest_findings.labels("orphaned_snapshots").set(len(findings.orphans))
        metrics.digest_findings.labels("unchecked_regions").set(len(findings.failures))
        metrics.digest_cost.set(findings.monthly_cost)
        metrics.digest_last.set(time.time())

    _safely(record)


def scheduler_listener(ctx) -> Callable:
    """An APScheduler listener (EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED) counting runs."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED

    def listener(event) -> None:
        outcome = {EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed"}.get(event.code, "ok")
        _safely(lambda: of(ctx).scheduler_runs.labels(str(event.job_id), outcome).inc())

    return listener


def _safely(record: Callable[[], None]) -> None:
    try:
        record()
    except Exception:  # counting must never break what is being counted
        log.exception("could not record a metric")


# --- ack latency ----------------------------------------------------------------------------------------

def request_kind(body: Any) -> str:
    if not isinstance(body, dict):
        return "other"
    if body.get("command"):
        return "command"
    kind = body.get("type")
    return {"block_actions": "action", "view_submission": "view", "view_closed": "view",
            "event_callback": "event", "block_suggestion": "options", "shortcut": "shortcut",
            "message_action": "shortcut"}.get(kind, "other")


def time_acks(app, metrics: Metrics) -> None:
    """Time every request from its arrival to its ack, in both modes.

    Bolt's global middleware cannot do it: its chain is flat (``next()`` only marks the request as passed on,
    the listener runs after every middleware has returned). ``App.dispatch`` is the one call both adapters make
    — the WSGI handler and the Socket Mode client — and it returns as soon as the listener acks (or, for a
    listener that never acks, when Bolt gives up), so the wrapper measures exactly what Slack waits for.
    """
    dispatch = app.dispatch

    def timed_dispatch(req):
        started = time.perf_counter()
        try:
            return dispatch(req)
        finally:
            elapsed = time.perf_counter() - started
            _safely(lambda: metrics.ack_seconds.labels(request_kind(req.body)).observe(elapsed))

    app.dispatch = timed_dispatch
