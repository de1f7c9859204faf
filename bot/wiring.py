"""The composition root: everything that makes amibot run, in plain view and in order.

Nothing registers itself on import. Domain modules and listener modules export plain functions; this module,
called once per app by the factory (bot/app.py), decides which of them are durable job kinds (with what to do
when a restart interrupts one), which approval kinds exist, what the scheduler runs and when, and what runs
when the app starts and stops. A new background part is added here, or it does not run.

- ``attach``: the app's own parts on its context (metrics, accounts, outbox, digest publisher), then the
  approval kinds, the job kinds and the Slack listeners.
- ``add_schedules`` / ``build_scheduler``: every scheduled job with its trigger.
- ``start_hooks`` / ``stop_hooks``: in the order they run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_bolt import App

import handlers
from bot import scheduler
from bot.core import metrics
from bot.durable import anchors, backup
from bot.durable.jobs import QUICK, active_counts, forget_finished
from bot.durable.store import Store
from bot.services import (
    approvals,
    bake,
    deregister,
    digest,
    launch,
    organization,
    recycle_bin,
    revoke,
    rollout,
    rollout_watch,
    share,
    stages,
    usage_reports,
)
from bot.slack import delivery_keys, dispatch, outbox
from bot.slack.context import Context
from bot.slack.dbguard import database_guard
from bot.slack.post_digest import SlackPublisher
from bot.slack.subcommands import Registry
from handlers import events
from handlers.actions import approvals as approval_clicks
from handlers.actions import bake_buttons, image_buttons
from handlers.actions import deregister as deregister_follow_up
from handlers.actions import digest as digest_clicks
from handlers.commands import add_subcommands
from handlers.commands import bake as bake_command
from handlers.commands import launch as launch_command
from handlers.views import launch as launch_form

log = logging.getLogger(__name__)

Hook = Callable[[Context], None]


def attach(app: App, ctx: Context) -> None:
    """Give a new app its parts, in this order (each one may rely on those above it)."""
    app.middleware(database_guard(ctx.store))  # no new work is accepted on a lost database
    _attach_metrics(app, ctx)  # the app's own registry; times every ack, observes jobs and AWS calls
    organization.manage_accounts(ctx.aws, ctx.policy)  # the managed accounts, before anything lists or acts
    ctx.outbox = outbox.Outbox(ctx)  # every message the approval engine owes Slack
    ctx.deliver_now = ctx.outbox.deliver_due  # … sent right after the commit that owes it
    ctx.digest_publisher = SlackPublisher()  # the daily digest posts through it (services never render)
    register_approval_kinds()  # every kind is known before recovery looks at stored requests
    register_job_kinds(ctx)
    handlers.register(app, ctx)  # the Slack listeners: they only ack and record jobs


def _attach_metrics(app: App, ctx: Context) -> None:
    # the gauges read at scrape time come from the tables' owners (metrics sits below them)
    ctx.metrics = metrics.Metrics(ctx, lambda: (active_counts(ctx.store), approvals.count_by_state(ctx.store)))
    metrics.time_acks(app, ctx.metrics)
    ctx.jobs.observers.append(lambda kind, seconds, state: metrics.job_finished(ctx, kind, seconds, state))
    if hasattr(ctx.aws, "observers"):  # a stand-in Aws given to create_app may not report its calls
        ctx.aws.observers.append(lambda service, operation, error: metrics.aws_called(ctx, service, operation, error))


# --- approval kinds: what an approved request executes, and how a restart reconciles one left executing ----

def approval_kinds() -> list[approvals.Kind]:
    Kind = approvals.Kind
    return [
        Kind(bake.KIND, execute=bake.execute_promotion, reconcile=bake.reconcile_promotion,
             confirm_text=bake.confirm_promotion),
        Kind(deregister.KIND, execute=deregister.execute, reconcile=deregister.reconcile,
             confirm_text=deregister.confirm_text),
        Kind(digest.CLEANUP_KIND, execute=digest.execute_cleanup, reconcile=digest.reconcile_cleanup,
             confirm_text=digest.cleanup_confirm),
        Kind(launch.KIND, execute=launch.execute, reconcile=launch.reconcile, confirm_text=launch.confirm_text),
        Kind(recycle_bin.ENABLE_KIND, execute=recycle_bin.execute_enable, confirm_text=recycle_bin.confirm_enable),
        Kind(revoke.KIND, execute=revoke.execute, reconcile=revoke.reconcile, confirm_text=revoke.confirm_text),
        Kind(rollout.KIND, execute=rollout.execute, reconcile=rollout.reconcile, confirm_text=rollout.confirm_text),
        Kind(share.KIND, execute=share.execute, reconcile=share.reconcile, confirm_text=share.confirm_text),
        Kind(stages.DISABLE_KIND, execute=stages.execute_disable, reconcile=stages.reconcile_disable,
             confirm_text=stages.confirm_disable),
        Kind(stages.UNPROTECT_KIND, execute=stages.execute_unprotect, reconcile=stages.reconcile_unprotect,
             confirm_text=stages.confirm_unprotect),
    ]


def register_approval_kinds() -> None:
    for kind in approval_kinds():
        approvals.register_kind(kind)


# --- durable job kinds: recorded in SQLite before Slack's ack, run on the job pool, recovered at start -------
# The second function is what happens to a job a restart interrupted: run it again (harmless to repeat), tell
# the user (not safe to repeat blindly), or nothing (something else reconciles it).

def register_job_kinds(ctx: Context) -> None:
    jobs = ctx.jobs

    def again(kind: str) -> Callable[[dict], None]:
        return lambda payload: jobs.submit(kind, payload)

    def nothing(payload: dict) -> None:
        return None

    # `/ami …`: the listener picks each command's lane; a changing command's access check runs first on the
    # quick lane (refused: answered without waiting for AWS), and one not answered by the deadline says AWS is slow.
    jobs.register(dispatch.JOB_KIND, lambda payload: dispatch.run_command(ctx, payload),
                  lambda payload: dispatch.report_interrupted(ctx, payload),
                  gate=lambda payload: dispatch.gate_command(ctx, payload),
                  on_overdue=lambda payload, seconds: dispatch.report_overdue(ctx, payload, seconds))
    # An interrupted execution is reconciled by approvals.recover at start, never re-run blindly.
    jobs.register(approvals.EXECUTE_JOB, lambda payload: approvals.execute(ctx, payload["request_id"]), nothing)
    # A decision needs no AWS (approving queues the execution as its own AWS job): the quick lane; idempotent.
    jobs.register(approval_clicks.CLICK_JOB, lambda payload: approval_clicks.decide(ctx, payload),
                  again(approval_clicks.CLICK_JOB), lane=QUICK)
    # Writing one more audit anchor is harmless.
    jobs.register(anchors.ANCHOR_JOB, lambda payload: anchors.publish(ctx, payload.get("reason") or "anchor"),
                  again(anchors.ANCHOR_JOB))
    # A digest button: not re-run (it might open a second request); the clicker is told to check and click again.
    jobs.register(digest_clicks.CLICK_JOB, lambda payload: digest_clicks.handle_click(ctx, payload),
                  lambda payload: digest_clicks.report_interrupted(ctx, payload),
                  gate=lambda payload: digest_clicks.refused_early(ctx, payload))
    # The daily digest: a long scan of every region, with no user waiting on it; its claim row retries it.
    jobs.register(digest.DAILY_JOB, lambda payload: digest.run_daily(ctx), nothing, deadline=None)
    # Following AWS's image usage report for a deregistration request: polling again is harmless.
    jobs.register(usage_reports.WATCH_JOB, lambda payload: deregister_follow_up.follow(ctx, payload),
                  again(usage_reports.WATCH_JOB))
    # Watching a new image until it is available: bounded by its own wait (ctx.waits), and says so itself.
    jobs.register(image_buttons.WATCH_JOB, lambda payload: image_buttons.watch(ctx, payload),
                  again(image_buttons.WATCH_JOB), deadline=None)
    # The launch form's submission: a launch is not repeated blindly; the user is told what to check.
    jobs.register(launch_form.JOB_KIND, lambda payload: launch_form.run_form(ctx, payload),
                  lambda payload: launch_form.report_interrupted(ctx, payload))
    # Opening the launch form from a button: listing and filling again is harmless.
    jobs.register(launch_form.OPEN_JOB, lambda payload: launch_form.fill_form(ctx, payload),
                  again(launch_form.OPEN_JOB), gate=lambda payload: launch_form.open_loading(ctx, payload))
    # A launch's wait for its instances, resumed after a crash (launch_command.resume_waits): bounded by its wait.
    jobs.register(launch_command.WAIT_JOB, lambda payload: launch_command.resume_wait(ctx, payload["owner"]),
                  again(launch_command.WAIT_JOB), deadline=None)
    # A bake's watch: its steps hold the run's id, so running it again resumes the same run (never a second).
    jobs.register(bake_command.WATCH_JOB, lambda payload: bake_command.follow(ctx, payload),
                  again(bake_command.WATCH_JOB), deadline=None)
    # A scheduled bake, claimed by its dedupe key: again starts nothing new (the bake id is the claim's).
    jobs.register(bake_command.SCHEDULE_JOB, lambda payload: bake_command.run_scheduled(ctx, payload),
                  again(bake_command.SCHEDULE_JOB), deadline=None)
    # A version built elsewhere, claimed by its image id: proposing again finds the request and stops.
    jobs.register(bake_command.FOUND_JOB, lambda payload: bake_command.propose_found(ctx, payload),
                  again(bake_command.FOUND_JOB))
    # A pipeline's own output, claimed by its image id: again re-reads the outputs, finds the request and stops.
    jobs.register(bake_command.PIPELINE_JOB, lambda payload: bake_command.propose_pipeline(ctx, payload),
                  again(bake_command.PIPELINE_JOB))
    # A bake's Promote button (promote = "manual"): promoting again leaves what is already current as it is.
    jobs.register(bake_buttons.CLICK_JOB, lambda payload: bake_buttons.promote_clicked(ctx, payload),
                  lambda payload: bake_buttons.report_interrupted(ctx, payload))
    # A rollout's watch: reading AWS again is harmless; its end is claimed once (its finish step).
    jobs.register(rollout.WATCH_JOB, lambda payload: rollout_watch.watch(ctx, payload), again(rollout.WATCH_JOB),
                  deadline=None)
    # The Home tab: reading and publishing again is safe.
    jobs.register(events.HOME_JOB, lambda payload: events.refresh(ctx, payload), again(events.HOME_JOB))


# --- the scheduler: every scheduled job with its trigger ---------------------------------------------------
# Each must be idempotent (claimed in SQLite before it acts): two processes may share a database, and a
# restart runs once what was missed (coalesce; bot/scheduler.py's defaults).

def add_schedules(sched: BaseScheduler, ctx: Context) -> None:
    policy = ctx.policy
    if policy.organization.enabled:
        sched.add_job(organization.refresh, IntervalTrigger(hours=organization.REFRESH_HOURS),
                      args=[ctx.aws, policy], id="organization.refresh",
                      name="organization.refresh: list the organisation's member accounts")
    sched.add_job(approvals.sweep, IntervalTrigger(minutes=5), args=[ctx], id="approvals.sweep",
                  misfire_grace_time=300, name="approvals.sweep: reminders and expiry")
    sched.add_job(outbox.prune, IntervalTrigger(hours=1), args=[ctx], id="outbox.prune", name="outbox.prune")
    sched.add_job(anchors.daily, CronTrigger(hour=0, minute=10), args=[ctx], id="audit.daily_anchor",
                  name="audit.daily_anchor")
    if backup.configured(policy):  # claimed per UTC day in SQLite: two processes on one file back up once
        hour, minute = backup.daily_time(policy)
        sched.add_job(backup.daily, CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo("UTC")), args=[ctx],
                      id="backup.daily", name="backup.daily: copy the database to [backup].destination",
                      coalesce=True, max_instances=1, misfire_grace_time=3600)
    sched.add_job(lambda: prune(ctx.store, ctx.clock()), IntervalTrigger(hours=1), id="store.prune",
                  name="store.prune: forget old request keys and finished jobs")
    if policy.digest.channel:  # no channel, no daily digest
        hour, minute = digest.daily_time(policy)  # in the digest's time zone, so daylight saving keeps the hour
        daily = CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(policy.digest.timezone))
        sched.add_job(digest.run_daily, daily,
                      args=[ctx], id=digest.SCHEDULE_ID, name="digest.daily: the daily digest", replace_existing=True,
                      coalesce=True, max_instances=1, misfire_grace_time=digest.MISFIRE_GRACE_SECONDS)
        sched.add_job(digest.retry_due, IntervalTrigger(seconds=digest.RETRY_CHECK_SECONDS), args=[ctx],
                      id=digest.RETRY_SCHEDULE_ID, name="digest.retry: a failed daily digest, again",
                      replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=digest.RETRY_CHECK_SECONDS)
    if policy.bakes:  # versions of baked families built elsewhere (pipelines' own schedules, Packer): proposed
        sched.add_job(bake_command.discover, IntervalTrigger(hours=1), args=[ctx], id="bake.discover",
                      name="bake.discover: versions built elsewhere", misfire_grace_time=600)
    for entry in policy.bakes:  # [[bakes]] with a schedule; each run is claimed in SQLite (bake_command.scheduled)
        if entry.schedule:
            trigger = CronTrigger.from_crontab(entry.schedule, timezone=ZoneInfo(policy.digest.timezone))
            sched.add_job(bake_command.scheduled, trigger, args=[ctx, entry],
                          id=f"bake.{entry.family}.{entry.account or ''}.{entry.region or ''}",
                          name=f"bake: {entry.family}", replace_existing=True, coalesce=True, max_instances=1,
                          misfire_grace_time=3600)
    sched.add_job(events.keep_fresh, IntervalTrigger(minutes=5), args=[ctx], id="home.keep_fresh",
                  name="Home tab: keep the fleet fresh", misfire_grace_time=300)


def build_scheduler(ctx: Context) -> BaseScheduler:
    """The app's scheduler with every scheduled job, not started."""
    sched = scheduler.new_scheduler(ctx)
    add_schedules(sched, ctx)
    return sched


def start_scheduler(ctx: Context) -> None:
    scheduler.start(ctx, build_scheduler(ctx))


# --- start and stop, in order --------------------------------------------------------------------------

def recover_jobs(ctx: Context) -> None:
    """Jobs a stopped process left queued or running: resumed, or handed to their kind's on-interrupted."""
    counts = ctx.jobs.recover()
    if any(counts.values()):
        log.info("recovered jobs: %s", counts)


def start_hooks(scheduled: bool) -> list[Hook]:
    """What `start_background` runs, in order. `scheduled`: `serve` and `socket` also run the scheduler."""
    hooks: list[Hook] = [
        recover_jobs,
        outbox.at_start,  # first: resend what a crash left, so the messages below come after it
        approvals.at_start,  # approved → execute, executing → reconcile; then reminders and expiries missed
        anchors.daily_at_start,  # the audit anchor of a day not yet anchored
        backup.daily_at_start,  # today's backup, when past due and no process made it
        digest.catch_up,  # today's digest, when past due and nobody made it
        image_buttons.resume_watches,  # new images whose watch a crash left without a job
        launch_command.resume_waits,  # launches whose wait for their instances a crash interrupted
        bake_command.resume,  # bakes whose watch a crash left without a job
        bake_command.discover_at_start,  # versions of baked families built elsewhere while amibot was down
    ]
    if scheduled:
        hooks.append(start_scheduler)
    return hooks


def stop_hooks(scheduled: bool) -> list[Hook]:
    """What `stop` runs, in order, before it waits for running jobs and closes the database."""
    hooks: list[Hook] = [outbox.at_stop]
    if scheduled:
        hooks.append(scheduler.stop)
    return hooks


# Slack retries within minutes; a day of request keys and a week of finished jobs is plenty to drop repeats
# and to look back at what ran, without the tables growing forever.
SEEN_REQUESTS_KEPT = timedelta(days=1)
FINISHED_JOBS_KEPT = timedelta(days=7)


def prune(store: Store, now: datetime) -> dict[str, int]:
    """Forget old de-duplication keys and finished jobs (queued, running and interrupted ones stay), through the
    tables' owners."""
    def before(age: timedelta) -> str:
        return (now - age).strftime("%Y-%m-%dT%H:%M:%S")

    return {"slack_requests": delivery_keys.forget(store, before(SEEN_REQUESTS_KEPT)),
            "jobs": forget_finished(store, before(FINISHED_JOBS_KEPT))}


def subcommand_registry() -> Registry:
    """Every `/ami` subcommand as the app registers it, without building the app: the source of `/ami help` and of
    the generated docs/commands.md (`amibot docs`)."""
    registry = Registry()
    add_subcommands(registry)
    return registry
