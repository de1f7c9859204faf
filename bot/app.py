"""The app factory: one Bolt App with its context; bot/wiring.py gives it its listeners and background parts.

bot/ never imports handlers/ except from the runtime (bot/wiring.py), where the listeners are registered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot import wiring
from bot.aws.clients import Aws, AwsAccounts
from bot.core.access import Access
from bot.core.config import Policy, Settings
from bot.durable.jobs import JobRunner, TrackedExecutor
from bot.durable.store import Store
from bot.slack import delivery_keys
from bot.slack.context import Context, utc_now
from bot.wiring import Hook

log = logging.getLogger(__name__)


STOP_WAIT_SECONDS = 5


@dataclass
class Amibot:
    app: App
    ctx: Context
    on_start: list[Hook] = field(default_factory=list)  # bot/wiring.py's start hooks, in order
    on_stop: list[Hook] = field(default_factory=list)

    def start_background(self) -> None:
        """Resume unfinished work, then (serve, socket) start the scheduler: bot/wiring.py's start hooks."""
        for hook in self.on_start:
            hook(self.ctx)

    def stop(self) -> None:
        for hook in self.on_stop:
            hook(self.ctx)
        # Give running jobs a moment to finish; any still running are reconciled at the next start. Bounded, so
        # SIGTERM stops the process within 10 s even when the database is broken and jobs hang on it.
        self.ctx.jobs.wait_idle(timeout=STOP_WAIT_SECONDS)
        self.ctx.jobs.shutdown(wait=False)
        self.ctx.listeners.shutdown(wait=False)  # idle listener threads end; one still running finishes first
        self.ctx.store.close()


def create_app(settings: Settings, policy: Policy, *, slack: WebClient | None = None, aws: Aws | None = None,
               store: Store | None = None, clock=utc_now, socket_mode: bool = False,
               token_verification: bool = True, scheduled: bool = False) -> Amibot:
    """The app, wired by bot/wiring.py. `scheduled`: its start hooks also start the scheduler (serve, socket)."""
    store = store or Store(settings.db_path)
    slack = slack or WebClient(token=settings.bot_token, base_url=settings.slack_api_url)
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in slack.retry_handlers):
        slack.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    # `aws`: the bot's own account (default: boto3's credential chain); the accounts it manages are added at start
    aws = AwsAccounts(aws or Aws(policy.aws.regions), max_concurrency=policy.aws.max_concurrency,
                      max_cached_account_regions=policy.aws.max_cached_account_regions)
    jobs = JobRunner(store, workers=policy.jobs.workers, per_user=policy.jobs.per_user,
                     deadline=policy.jobs.deadline_seconds)
    listeners = TrackedExecutor(max_workers=16, thread_name_prefix="amibot-listener")
    ctx = Context(settings=settings, policy=policy, store=store, aws=aws, slack=slack, jobs=jobs,
                  access=Access(policy, slack), clock=clock, listeners=listeners)
    jobs.yield_to += [lambda: listeners.busy, lambda: ctx.acking.busy]  # the HTTP server counts Slack requests
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
    wiring.attach(app, ctx)
    return Amibot(app, ctx, on_start=wiring.start_hooks(scheduled), on_stop=wiring.stop_hooks(scheduled))


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
