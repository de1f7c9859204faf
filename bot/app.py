"""The app factory: one Bolt App with its listeners, its context and its background parts.

bot/ never imports handlers/ except here, where the listeners are registered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot import scheduler
from bot.aws.clients import Aws, AwsAccounts
from bot.context import Context, utc_now
from bot.core import metrics
from bot.core.access import Access
from bot.core.config import Policy, Settings
from bot.durable import anchors
from bot.durable.jobs import InFlight, JobRunner, TrackedExecutor
from bot.durable.store import Store
from bot.services import approvals, organization
from bot.slack import delivery_keys, dispatch, outbox
from bot.slack.dbguard import database_guard

log = logging.getLogger(__name__)


STOP_WAIT_SECONDS = 5


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
        # Give running jobs a moment to finish; any still running are reconciled at the next start. Bounded, so
        # SIGTERM stops the process within 10 s even when the database is broken and jobs hang on it.
        self.ctx.jobs.wait_idle(timeout=STOP_WAIT_SECONDS)
        self.ctx.jobs.shutdown(wait=False)
        self.ctx.store.close()


def create_app(settings: Settings, policy: Policy, *, slack: WebClient | None = None, aws: Aws | None = None,
               store: Store | None = None, clock=utc_now, socket_mode: bool = False,
               token_verification: bool = True) -> Amibot:
    store = store or Store(settings.db_path)
    slack = slack or WebClient(token=settings.bot_token, base_url=settings.slack_api_url)
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in slack.retry_handlers):
        slack.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    # `aws`: the bot's own account (default: boto3's credential chain); the accounts it manages are added at start
    aws = AwsAccounts(aws or Aws(policy.aws.regions), max_concurrency=policy.aws.max_concurrency,
                      max_cached_account_regions=policy.aws.max_cached_account_regions)
    jobs = JobRunner(store, workers=policy.jobs.workers, per_user=policy.jobs.per_user,
                     deadline=policy.jobs.deadline_seconds)
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
        # Right after the signature check and before Bolt's own middleware and any written as a function (Bolt
        # builds their arguments from the payload, which raises on shapes Slack never sends, `actions: []`):
        # _OnceOnly answers those first and runs nothing.
        before_authorize=_OnceOnly(),
    )
    app.middleware(database_guard(store))  # no new work is accepted on a lost database
    metrics.enable(app, ctx)  # the app's own registry; times every ack, observes jobs and AWS calls
    organization.enable(ctx)  # the managed accounts, before anything lists or acts
    approvals.enable(ctx)
    outbox.enable(ctx)  # after approvals: its start hook (resend what a crash left) runs first
    anchors.enable(ctx)  # audit anchors: daily and after every approval decision
    scheduler.add_schedule(ctx, lambda sched, ctx: sched.add_job(
        lambda: prune(ctx.store, ctx.clock()), "interval", hours=1, id="store.prune",
        name="store.prune: forget old request keys and finished jobs"))
    # The listener picks each command's lane; a changing command's access check runs first on the quick lane
    # (refused: answered without waiting for AWS), and one not answered by the deadline says AWS is slow.
    jobs.register(dispatch.JOB_KIND, lambda payload: dispatch.run_command(ctx, payload),
                  lambda payload: dispatch.report_interrupted(ctx, payload),
                  gate=lambda payload: dispatch.gate_command(ctx, payload),
                  on_overdue=lambda payload, seconds: dispatch.report_overdue(ctx, payload, seconds))

    import handlers  # the one place bot/ imports handlers/
    from bot.services import load_all

    load_all()  # every approval kind is known before recovery looks at stored requests

    handlers.register(app, ctx)
    from handlers.commands import launch as launch_command

    launch_command.register_jobs(ctx)  # resumes a launch wait a crash interrupted
    return Amibot(app, ctx)


class _OnceOnly(Middleware):
    """Global middleware, before Bolt builds any listener arguments: a payload Slack would never send is
    answered at once (HTTP 400; a plain ack in Socket Mode, so it is not redelivered) with one warning line and
    nothing runs; every other delivery gets its key in ``context["delivery_key"]``. The listener claims it with
    its one INSERT on the ack path — the job it records, or ``delivery_keys.claim`` — so a retry, a redelivered
    envelope or a replay is acked and dropped (bot/slack/delivery_keys.py)."""

    def process(self, *, req, resp, next):
        reason = delivery_keys.problem(req.body)
        if reason is not None:
            log.warning("ignoring a malformed Slack payload: %s", reason)
            if req.mode == "socket_mode":
                return BoltResponse(status=200, body="")
            return BoltResponse(status=400, body="This is not a payload Slack sends; nothing was done.")
        req.context[delivery_keys.CONTEXT_KEY] = delivery_keys.delivery_key(req.body)
        return next()


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
