"""The daily digest: scan every region, judge what is stale or orphaned, post it, let people act on it.

Once a day at [digest].at in [digest].timezone, to [digest].channel. The run is claimed in SQLite
(``digest_runs``, primary key (date, channel), INSERT OR IGNORE) *before* anything is posted, so a
restart, a coalesced misfire or a second process on the same database never posts the same day twice.
The price of that choice: a crash between the claim and the post loses that day's digest (at most
once, never twice). A run missed while the bot was down is made once at start if it is still the
same day and past the time (``catch_up``).

Scheduler settings (APScheduler CronTrigger in the digest's time zone, so daylight-saving changes
keep the local time): ``coalesce=True`` — runs missed while the process was paused collapse into
one; ``misfire_grace_time=3600`` — a run up to an hour late (a busy or suspended process) still
happens, later ones are left to ``catch_up`` at the next start; ``max_instances=1``.

Also here: snoozing an image (30 days out of digests, audited) and the "snapshot-cleanup" approval
kind behind the digest's "Request cleanup" button.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot import approvals, audit
from bot.aws import Aws, paginate, requires
from bot.blocks import code, context, section
from bot.errors import AmibotError, AwsError, PolicyViolation
from bot.render import digest as render
from bot.services.images import describe_own_images
from bot.services.inventory import Progress, ami_of, scan_region
from bot.services.snapshots import delete_snapshots
from bot.services.staleness import SNOOZE_DAYS, Findings, RegionFindings, Rules, failed_region, judge

log = logging.getLogger(__name__)

DAILY_JOB = "digest.daily"
SCHEDULE_ID = "digest.daily"
MISFIRE_GRACE_SECONDS = 3600
CLEANUP_KIND = "snapshot-cleanup"
MAX_CLEANUP = 100


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- computing ------------------------------------------------------------------------------------------

def snoozed_ids(store, now: datetime) -> set[str]:
    return {row["image_id"] for row in store.query("SELECT image_id FROM snoozes WHERE until > ?", (_stamp(now),))}


def compute(aws: Aws, policy, now: datetime, snoozed: set[str] | frozenset[str] = frozenset(),
            regions: list[str] | None = None, progress: Progress | None = None) -> Findings:
    """Scan the regions in parallel; each region's inventory is judged as soon as it is in and then dropped,
    so memory holds one region's inventory at a time (see inventory.LARGE_LISTINGS), not the whole account."""
    rules = Rules.from_policy(policy.digest)
    report = progress or (lambda region, text: None)

    def one(region: str) -> RegionFindings:
        started = time.monotonic()

        def timed(region: str, text: str) -> None:
            report(region, f"{text} ({time.monotonic() - started:.1f} s)")

        timed(region, "scanning")
        findings = judge(scan_region(aws, region, policy.digest.family_tag, timed), rules, now, snoozed)
        timed(region, f"done: {render.plural(len(findings.stale), 'stale image')}, "
                      f"{render.plural(len(findings.orphans), 'orphaned snapshot')}")
        return findings

    results = aws.each_region(one, regions)
    judged = [result if isinstance(result, RegionFindings) else failed_region(region, result.message)
              for region, result in results.items()]
    return Findings(judged, now, rules)


def compute_for(ctx) -> Findings:
    now = ctx.clock()
    return compute(ctx.aws, ctx.policy, now, snoozed_ids(ctx.store, now))


def local_day(ctx_or_policy, now: datetime) -> str:
    policy = getattr(ctx_or_policy, "policy", ctx_or_policy)
    return now.astimezone(ZoneInfo(policy.digest.timezone)).date().isoformat()


# --- posting --------------------------------------------------------------------------------------------

def post(slack, channel: str, findings: Findings, day: str, send: Callable[[dict], str | None] | None = None
         ) -> str | None:
    """Post the digest (through `send` if given, e.g. a command's Reply.post); attach the full list as a CSV
    in the message's thread when not all of it is listed. Returns the message ts."""
    rendered = render.digest_message(findings, day)
    send = send or (lambda msg: slack.chat_postMessage(channel=channel, **msg)["ts"])
    ts = send(rendered.message)
    if rendered.more:
        attach_csv(slack, channel, ts, findings, day)
    return ts


def attach_csv(slack, channel: str, ts: str | None, findings: Findings, day: str) -> None:
    thread = {"thread_ts": ts} if ts else {}
    try:
        slack.files_upload_v2(channel=channel, content=render.as_csv(findings), filename=f"amibot-digest-{day}.csv",
                              title=f"AMI digest {day}", initial_comment=render.csv_comment(findings, day), **thread)
    except Exception:  # the digest is out; a missing attachment must not fail the run
        log.exception("could not attach the digest CSV in %s", channel)


def claim(store, day: str, channel: str, now: datetime) -> bool:
    """True for exactly one caller per (day, channel), across threads and processes."""
    return store.execute("INSERT OR IGNORE INTO digest_runs (date, channel, claimed_at) VALUES (?, ?, ?)",
                         (day, channel, _stamp(now))).rowcount == 1


def claimed(store, day: str, channel: str) -> bool:
    return store.one("SELECT 1 AS yes FROM digest_runs WHERE date = ? AND channel = ?", (day, channel)) is not None


def run_daily(ctx) -> str:
    """The scheduled run: claim today, compute, post. Returns what happened (also audited)."""
    channel = ctx.policy.digest.channel
    if not channel:
        return "no [digest].channel configured"
    now = ctx.clock()
    day = local_day(ctx, now)
    if not claim(ctx.store, day, channel, now):
        log.info("digest for %s in %s already claimed; not posting again", day, channel)
        return "already posted"
    try:
        findings = compute_for(ctx)
    except AwsError as error:
        ts = ctx.slack.chat_postMessage(channel=channel, **render.digest_failed(day, error.message))["ts"]
        return _finish_run(ctx, day, channel, ts, f"failed: {error.message}")
    try:
        ts = post(ctx.slack, channel, findings, day)
    except Exception:
        # Nothing reached the channel: release the claim so the next start can make the run.
        ctx.store.execute("DELETE FROM digest_runs WHERE date = ? AND channel = ?", (day, channel))
        _audit_run(ctx, day, channel, "failed: could not post to Slack")
        raise
    outcome = (f"posted: {len(findings.stale)} stale, {len(findings.orphans)} orphaned, "
               f"${findings.monthly_cost:,.2f}/month")
    if findings.failures:
        outcome += f"; not checked: {', '.join(region.region for region in findings.failures)}"
    return _finish_run(ctx, day, channel, ts, outcome)


def _finish_run(ctx, day: str, channel: str, ts: str | None, outcome: str) -> str:
    ctx.store.execute("UPDATE digest_runs SET message_ts = ?, outcome = ? WHERE date = ? AND channel = ?",
                      (ts, outcome, day, channel))
    _audit_run(ctx, day, channel, outcome)
    return outcome


def _audit_run(ctx, day: str, channel: str, outcome: str) -> None:
    audit.record(ctx.store, actor="amibot", action="digest.daily", channel=channel, target=day, outcome=outcome)


# --- scheduling -----------------------------------------------------------------------------------------

def daily_time(policy) -> tuple[int, int]:
    hour, minute = policy.digest.at.split(":")
    return int(hour), int(minute)


def due(policy, now: datetime) -> bool:
    """Whether today's run (in the digest's time zone) should have happened by now."""
    local = now.astimezone(ZoneInfo(policy.digest.timezone))
    hour, minute = daily_time(policy)
    return (local.hour, local.minute) >= (hour, minute)


def schedule(scheduler, ctx) -> None:
    """Add the daily job (for bot.scheduler.add_schedule); nothing without [digest].channel."""
    from apscheduler.triggers.cron import CronTrigger

    if not ctx.policy.digest.channel:
        return
    hour, minute = daily_time(ctx.policy)
    scheduler.add_job(run_daily, CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(ctx.policy.digest.timezone)),
                      args=[ctx], id=SCHEDULE_ID, replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=MISFIRE_GRACE_SECONDS)


def catch_up(ctx) -> bool:
    """At start: if today's run is past due and nobody made it, make it now (as a durable job)."""
    channel = ctx.policy.digest.channel
    now = ctx.clock()
    if not channel or not due(ctx.policy, now) or claimed(ctx.store, local_day(ctx, now), channel):
        return False
    ctx.jobs.submit(DAILY_JOB, {"reason": "catch-up at start"})
    return True


# --- acting on it ---------------------------------------------------------------------------------------

def snooze(ctx, image_id: str, region: str, user: str, channel: str | None, days: int = SNOOZE_DAYS) -> datetime:
    """Keep the image out of digests for `days`; stored and audited. Returns when it ends."""
    now = ctx.clock()
    until = now + timedelta(days=days)
    ctx.store.execute("INSERT INTO snoozes (image_id, until, by, at) VALUES (?, ?, ?, ?) ON CONFLICT(image_id)"
                      " DO UPDATE SET until = excluded.until, by = excluded.by, at = excluded.at",
                      (image_id, _stamp(until), user, _stamp(now)))
    audit.record(ctx.store, actor=user, action="digest.snooze", channel=channel, target=image_id,
                 outcome=f"snoozed until {until.date().isoformat()}", detail={"region": region, "days": days})
    return until


@requires("ec2:DescribeSnapshots", "ec2:DescribeImages")
def cleanup_preflight(ctx, region: str, snapshot_ids: list[str]) -> tuple[dict[str, int], list[str]]:
    """The listed snapshots that still exist, are still orphaned (no image uses them, their image is gone),
    with their sizes; and notes on the ones dropped."""
    account_id = ctx.aws.account_id()
    found = {item["SnapshotId"]: item for item in paginate(
        ctx.aws.ec2(region), "describe_snapshots", "Snapshots", OwnerIds=["self"],
        Filters=[{"Name": "snapshot-id", "Values": snapshot_ids}]) if item.get("OwnerId") == account_id}
    images = describe_own_images(ctx.aws, region, ctx.policy.digest.family_tag)
    existing = {image.id for image in images}
    used = {snapshot_id for image in images for snapshot_id in image.snapshot_ids}
    sizes, notes = {}, []
    for snapshot_id in snapshot_ids:
        item = found.get(snapshot_id)
        if item is None:
            notes.append(f"{snapshot_id} is already gone")
        elif snapshot_id in used or ami_of(item.get("Description")) in existing:
            notes.append(f"{snapshot_id} belongs to an existing image again; left out")
        else:
            sizes[snapshot_id] = int(item.get("VolumeSize") or 0)
    return sizes, notes


def request_cleanup(ctx, region: str, snapshot_ids: list[str], requester: str, channel: str) -> approvals.Request:
    """One approval request for a set of orphaned snapshots. Raises PolicyViolation if none is left."""
    if not snapshot_ids:
        raise PolicyViolation("No snapshots were listed for cleanup.")
    snapshot_ids = snapshot_ids[:MAX_CLEANUP]
    sizes, notes = cleanup_preflight(ctx, region, snapshot_ids)
    if not sizes:
        raise PolicyViolation("Nothing to clean up: " + "; ".join(notes) + ".")
    price = ctx.policy.digest.snapshot_price_per_gb_month
    total = sum(sizes.values())
    listed = "\n".join(f"{code(snapshot_id)} · {size:,} GiB" for snapshot_id, size in list(sizes.items())[:40])
    more = f"\n…and {len(sizes) - 40} more" if len(sizes) > 40 else ""
    details = [section(f"*Will delete {render.plural(len(sizes), 'orphaned snapshot')} in {region}* "
                       f"({total:,} GiB, {render.money(total * price)}/month). Each was made for an image that "
                       f"no longer exists and no image uses it:\n{listed}{more}")]
    if notes:
        details.append(context("Left out: " + "; ".join(notes)[:2900]))
    return approvals.create_request(
        ctx, kind=CLEANUP_KIND, params={"region": region, "snapshot_ids": list(sizes), "sizes": sizes},
        requester=requester, channel=channel,
        title=f"Delete {render.plural(len(sizes), 'orphaned snapshot')} in {region} ({total:,} GiB)",
        details=details, reason="deleting snapshots cannot be undone")


def execute_cleanup(ctx, request: approvals.Request, progress) -> str:
    """Delete each snapshot; skip those in use or already gone; report each."""
    region, sizes = request.params["region"], request.params.get("sizes", {})
    price = ctx.policy.digest.snapshot_price_per_gb_month
    outcome = delete_snapshots(ctx.aws.ec2(region), request.params["snapshot_ids"], lambda snapshot_id: progress(
        f":broom: Deleted {snapshot_id} ({sizes.get(snapshot_id, 0):,} GiB)."))
    deleted, skipped, failed = outcome.deleted, outcome.skipped, outcome.failed
    for note in skipped:
        progress(f":fast_forward: Skipped {note}.")
    freed = sum(sizes.get(snapshot_id, 0) for snapshot_id in deleted)
    summary = (f"Deleted {len(deleted)} of {len(request.params['snapshot_ids'])} snapshots in {region} "
               f"({freed:,} GiB, {render.money(freed * price)}/month saved)")
    if skipped:
        summary += f"; skipped {', '.join(skipped)}"
    if failed:
        raise AmibotError(f"{summary}; could NOT delete {'; '.join(failed)}.")
    return summary + "."


@requires("ec2:DescribeSnapshots")
def reconcile_cleanup(ctx, request: approvals.Request) -> str | None:
    """After a crash mid-cleanup: done if none of the snapshots is left, else let it be approved again."""
    ids = request.params["snapshot_ids"]
    left = list(paginate(ctx.aws.ec2(request.params["region"]), "describe_snapshots", "Snapshots",
                         OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": ids}]))
    return approvals.SUCCEEDED if not left else None


def cleanup_confirm(params: dict) -> str:
    return (f"Delete {render.plural(len(params['snapshot_ids']), 'snapshot')} in {params['region']}. "
            "This cannot be undone.")


approvals.register_kind(approvals.Kind(CLEANUP_KIND, execute=execute_cleanup, reconcile=reconcile_cleanup,
                                       confirm_text=cleanup_confirm))
