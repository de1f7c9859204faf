"""The app factory: one Bolt App with its listeners, its context and its background parts.

bot/ never imports handlers/ except here, where the listeners are registered.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot import approvals, dispatch, scheduler
from bot.access import Access
from bot.audit import now_iso
from bot.aws import Aws
from bot.config import Policy, Settings
from bot.context import Context, utc_now
from bot.jobs import InFlight, JobRunner, TrackedExecutor
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass
class Amibot:
    app: App
    ctx: Context

    def start_background(self) -> None:
        """Resume unfinished jobs; later: start the scheduler. Called by `serve` and `socket`."""
        counts = self.ctx.jobs.recover()
        if any(counts.values()):
            log.info("recovered jobs: %s", counts)
        for hook in self.ctx.extras.get("on_start", []):
            hook(self.ctx)

    def stop(self) -> None:
        for hook in self.ctx.extras.get("on_stop", []):
            hook(self.ctx)
        # Give running jobs a moment to finish; any still running are reconciled at the next start.
        self.ctx.jobs.wait_idle(timeout=10)
        self.ctx.jobs.shutdown(wait=False)
        self.ctx.store.close()


def create_app(settings: Settings, policy: Policy, *, slack: WebClient | None = None, aws: Aws | None = None,
               store: Store | None = None, clock=utc_now, socket_mode: bool = False,
               token_verification: bool = True) -> Amibot:
    store = store or Store(settings.db_path)
    slack = slack or WebClient(token=settings.bot_token, base_url=settings.slack_api_url)
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in slack.retry_handlers):
        slack.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    aws = aws or Aws(policy.aws.regions)
    jobs = JobRunner(store)
    ctx = Context(settings=settings, policy=policy, store=store, aws=aws, slack=slack, jobs=jobs,
                  access=Access(policy, slack), clock=clock)
    listeners = TrackedExecutor(max_workers=16, thread_name_prefix="amibot-listener")
    ctx.extras["listeners"] = listeners
    ctx.extras["acking"] = InFlight()  # the HTTP server counts Slack requests in it
    jobs.yield_to += [lambda: listeners.busy, lambda: ctx.extras["acking"].busy]
    app = App(
        client=slack,
        signing_secret=settings.signing_secret or ("" if socket_mode else None),
        token_verification_enabled=token_verification,
        # Listeners only ack and enqueue, so a modest pool keeps up; AWS work runs on the job pool.
        listener_executor=listeners,
        raise_error_for_unhandled_request=False,
    )
    app.middleware(_once_only(store))
    approvals.enable(ctx)
    scheduler.add_schedule(ctx, lambda sched, ctx: sched.add_job(
        lambda: prune(ctx.store, ctx.clock()), "interval", hours=1, id="store.prune"))
    jobs.register(dispatch.JOB_KIND, lambda payload: dispatch.run_command(ctx, payload),
                  lambda payload: dispatch.report_interrupted(ctx, payload))

    import handlers  # the one place bot/ imports handlers/
    from bot.services import load_all

    load_all()  # every approval kind is known before recovery looks at stored requests

    handlers.register(app, ctx)
    return Amibot(app, ctx)


def request_key(body: dict, raw_body: str) -> str:
    """What makes a Slack request unique: a retry resends the same body (same event_id)."""
    if isinstance(body, dict) and body.get("event_id"):
        return f"event:{body['event_id']}"
    return "body:" + hashlib.sha256(raw_body.encode("utf-8")).hexdigest()


def _once_only(store: Store):
    """Global middleware: an event, or any request Slack says it is retrying, is acked and dropped the second
    time. Commands and clicks are de-duplicated by the job they create (one INSERT on the ack path, not two)."""

    def middleware(req, resp, next):
        is_event = isinstance(req.body, dict) and req.body.get("type") == "event_callback"
        if not is_event and not req.headers.get("x-slack-retry-num"):
            return next()
        key = request_key(req.body, req.raw_body or "")
        cursor = store.execute("INSERT OR IGNORE INTO slack_requests (key, received_at) VALUES (?, ?)",
                               (key, now_iso()))
        if cursor.rowcount == 0:
            log.info("dropping a repeated Slack request (%s, retry %s)", key[:40],
                     req.headers.get("x-slack-retry-num", ["-"])[0])
            return BoltResponse(status=200, body="")
        return next()

    return middleware


# Slack retries within minutes; a day of request keys and a week of finished jobs is plenty to drop repeats
# and to look back at what ran, without the tables growing forever.
SEEN_REQUESTS_KEPT = timedelta(days=1)
FINISHED_JOBS_KEPT = timedelta(days=7)


def prune(store: Store, now: datetime) -> dict[str, int]:
    """Forget old de-duplication keys and finished jobs (queued, running and interrupted ones stay)."""
    def before(age: timedelta) -> str:
        return (now - age).strftime("%Y-%m-%dT%H:%M:%S")

    requests = store.execute("DELETE FROM slack_requests WHERE received_at < ?", (before(SEEN_REQUESTS_KEPT),))
    jobs = store.execute("DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < ?",
                         (before(FINISHED_JOBS_KEPT),))
    return {"slack_requests": requests.rowcount, "jobs": jobs.rowcount}
