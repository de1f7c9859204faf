"""The daily digest: scan every region, judge what is stale or orphaned, post it, let people act on it.

With accounts configured ([[accounts]] or [organization]) it is the organisation's digest: every managed
account × its regions in one bounded pool ([aws].max_concurrency), each account-region reduced to its findings
as it is scanned; the findings carry their account, so the buttons act in it (``ctx.aws.of(account)``), and
an account whose role cannot be assumed is a warning line naming it while the others' findings still count.

Once a day at [digest].at in [digest].timezone, to [digest].channel. The run is claimed in SQLite
(``digest_runs``, primary key (date, channel), INSERT OR IGNORE) *before* anything is posted, so a
restart, a coalesced misfire or a second process on the same database never posts the same day twice.
A run that fails after its claim (any exception, or a process that died mid-run) is retried the same
day with backoff (``RETRY_DELAYS``, bounded by ``MAX_ATTEMPTS``); the claim row holds the state and the
attempts, so a restart carries on, and ``/healthz`` shows the latest run's state and error. A region
that fails is a warning line in the digest, never "all clean". A run missed while the bot was down is
made once at start if it is still the same day and past the time (``catch_up``).

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.aws import data as awsdata
from bot.aws.clients import Aws, Target, paginate, requires
from bot.core.config import bake_of
from bot.core.errors import AmibotError, AwsError, NotFound, PolicyViolation
from bot.core.text import money, plural
from bot.durable import audit
from bot.durable.steps import DONE, FAILED, SKIPPED, Resumed, Step, Steps
from bot.services import approvals, drift, fleet_health, recycle_bin
from bot.services.dashboard import record_posted_digest, trend  # the Home tab's history, charted in the digest too
from bot.services.fleet_health import RegionHealth
from bot.services.images import Image, describe_own_images
from bot.services.inventory import Progress, ami_of, scan_region
from bot.services.snapshots import delete_step, deleted_phrase
from bot.services.staleness import (
    SNOOZE_DAYS,
    Findings,
    RegionFindings,
    Rules,
    failed_region,
    foreign_uses,
    judge,
    keep_what_other_accounts_use,
    where,
)
from bot.services.versions import ordered_versions

log = logging.getLogger(__name__)

DAILY_JOB = "digest.daily"
SCHEDULE_ID = "digest.daily"
MISFIRE_GRACE_SECONDS = 3600
CLEANUP_KIND = "snapshot-cleanup"
MAX_CLEANUP = 100
CLEANUP_DETAILS = "snapshot_cleanup"  # the view that renders a cleanup request's details (bot/render/digest.py)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- computing ------------------------------------------------------------------------------------------

def snoozed_ids(store, now: datetime) -> set[str]:
    # Plain SQL, not sqlite-utils: `amibot digest` reads this and stays without sqlite-utils' 12 MB.
    return {row["image_id"] for row in store.query("SELECT image_id FROM snoozes WHERE until > ?", (_stamp(now),))}


# The services a digest reads in every account-region (bot.aws.clients.Aws.prepare builds their models up front)
SERVICES = ("ec2", "autoscaling", "ssm", "imagebuilder")


def compute(aws: Aws, policy, now: datetime, snoozed: set[str] | frozenset[str] = frozenset(),
            regions: list[str] | None = None, progress: Progress | None = None,
            names: dict[str, str] | None = None, health: bool = True,
            done: Callable[[int, int, Target], None] | None = None) -> Findings:
    """Scan every managed account × its regions (without accounts configured: the bot's own regions). Each
    account-region is judged — its findings and its fleet health — inside its own task, and its inventory
    dropped there; only findings come back and they are collected as they arrive. So memory holds at most
    [aws].max_concurrency inventories at a time (see inventory.LARGE_LISTINGS), never accounts × images.
    `progress(where, text)` says what one account-region is doing; `done(count, total, target)` is called as
    each one finishes. A failed account or region is a RegionFindings with its error (a warning line)."""
    rules = Rules.from_policy(policy.digest)
    report = progress or (lambda where, text: None)
    targets = aws.targets(regions=regions)

    def one(handle: Aws, region: str) -> tuple[RegionFindings, RegionHealth | None]:
        label, started = where(handle.account, region), time.monotonic()

        def timed(_region: str, text: str) -> None:
            report(label, f"{text} ({time.monotonic() - started:.1f} s)")

        timed(region, "scanning")
        try:
            findings = _judged(handle, region, policy, rules, now, snoozed, names, timed, aws.many)
            findings.unbaked = unbaked_families(findings.images, policy, now, findings.label)
        except AwsError:
            raise  # the fan-out makes it the region's failure, with AWS's one-sentence message
        except Exception as error:  # any other surprise in one region is that region's warning line, never a crash
            log.warning("digest: %s could not be checked", label, exc_info=True)
            return failed_region(region, f"could not be checked ({type(error).__name__}: {str(error)[:200]})",
                                 handle.account), None
        timed(region, f"done: {plural(len(findings.stale), 'stale image')}, "
                      f"{plural(len(findings.orphans), 'orphaned snapshot')}")
        if not health:
            return findings, None
        region_health = _health(handle, region, policy, now, findings, names)
        findings.images, findings.instances = [], []  # the reading keeps what drift needs
        _hold_for_the_bin(findings, region_health, rules)
        return findings, region_health

    judged: dict[Target, RegionFindings] = {}
    healths: dict[Target, RegionHealth] = {}

    def arrived(target: Target, result) -> None:  # reduce as each account-region comes in
        if isinstance(result, AwsError):
            judged[target] = failed_region(target.region, result.message, target.account)
        else:
            judged[target], region_health = result
            if region_health is not None:
                healths[target] = region_health
        if done:
            done(len(judged), len(targets), target)

    aws.each_target(one, targets, on_result=arrived)  # one bounded pool over accounts × regions
    findings = Findings([judged[target] for target in targets], now, rules)
    keep_what_other_accounts_use(findings.regions, rules)
    if health:
        findings.health = fleet_health.FleetHealth([healths[target] for target in targets if target in healths])
        order = {account.id: number for number, account in enumerate(findings.accounts)}
        findings.health.regions.sort(key=lambda region: (order.get(region.account.id, 0), region.region))
        findings.health.combine(policy.digest.family_tag, now, names)  # the one drift, as `/ami drift` has it
    return findings


@dataclass(frozen=True)
class Unbaked:
    """A family whose current version is older than [digest].stale_after_days and that no [[bakes]] entry bakes
    (issue 22 §7): advice to set one up, not a stale image. `version` "" and `age_days` None: unknown."""

    family: str
    place: str  # the region, or "account, region"
    version: str
    image_id: str
    age_days: int | None


def unbaked_families(images: list[Image], policy, now: datetime, place: str) -> list[Unbaked]:
    """The families of one account-region's images with no [[bakes]] entry whose current version (the promoted
    one, else the newest available, as everywhere) is old, or unknown (none available, no creation date): an
    unknown one is listed, never taken for fine."""
    family_tag, limit = policy.digest.family_tag, policy.digest.stale_after_days
    by_family: dict[str, list[Image]] = {}
    for image in images:
        family = image.tags.get(family_tag)
        if family and not bake_of(policy, family):
            by_family.setdefault(family, []).append(image)
    found = []
    for family, members in sorted(by_family.items()):
        ordered = ordered_versions([image for image in members if image.state == "available"])
        current = next((version for version in ordered if version.current), None) or (ordered[0] if ordered else None)
        if current is None:
            found.append(Unbaked(family, place, "", "", None))
            continue
        created = current.image.created
        age = (now - created).days if created is not None else None
        if age is None or age > limit:
            found.append(Unbaked(family, place, current.image.version or current.image.name or current.label,
                                 current.image.id, age))
    return found


def _judged(handle: Aws, region: str, policy, rules: Rules, now: datetime, snoozed, names, progress,
            many: bool) -> RegionFindings:
    """One account-region's findings; its inventory is not kept (it goes out of scope on return)."""
    inventory = scan_region(handle, region, policy.digest.family_tag, progress)
    findings = judge(inventory, rules, now, snoozed)
    findings.account = handle.account
    if many:  # what this account runs of the others' images (keep_what_other_accounts_use)
        findings.foreign_uses = foreign_uses(inventory)
    # for drift, read with the fleet health (then dropped): its images and instances, not listed twice
    findings.images, findings.instances = inventory.images, drift.listed_instances(region, inventory.references)
    return findings


def _hold_for_the_bin(region: RegionFindings, health: RegionHealth, rules: Rules) -> None:
    """A snapshot whose image is in the Recycle Bin is not an orphan: restoring the image needs it (the bin keeps
    the image, and the snapshot only if a snapshot rule covers it). Off the list, off the cost, counted apart."""
    if not health.in_bin:
        return
    held = [orphan for orphan in region.orphans if orphan.snapshot.ami_id in health.in_bin]
    if held:
        region.orphans = [orphan for orphan in region.orphans if orphan.snapshot.ami_id not in health.in_bin]
        region.saving_gb -= sum(orphan.snapshot.size_gb or 0 for orphan in held)
        region.monthly_cost = rules.cost(region.saving_gb)
        health.held_snapshots = len(held)


def _health(handle: Aws, region: str, policy, now: datetime, findings: RegionFindings,
            names: dict[str, str] | None) -> RegionHealth:
    """The fleet-health part (bot.services.fleet_health) of one account-region that could be scanned."""
    stale = [item.image for item in findings.stale[:fleet_health.FINDINGS_PER_REGION]]
    try:
        return fleet_health.region_health(handle, region, policy.digest.family_tag, now, stale, names,
                                          findings.images, findings.instances)
    except AwsError as error:
        return RegionHealth(region, notes=[f"fleet health not checked: {error.message}"], account=handle.account)
    except Exception as error:  # never lose the digest over its extra part
        log.warning("digest: fleet health of %s could not be computed", findings.label, exc_info=True)
        return RegionHealth(region, notes=[f"fleet health not checked ({type(error).__name__})"],
                            account=handle.account)


def compute_for(ctx) -> Findings:
    """The app's digest (the daily run, `/ami digest`), timed and counted in the app's metrics."""
    now, started, findings = ctx.clock(), time.monotonic(), None
    try:
        findings = compute(ctx.aws, ctx.policy, now, snoozed_ids(ctx.store, now), names=drift.retired_names(ctx.store))
        findings.trend = trend(ctx.store)
        return findings
    finally:
        from bot.core import metrics  # the app's; `amibot digest` on the command line does not load prometheus

        metrics.digest_computed(ctx, time.monotonic() - started, findings)


def local_day(ctx_or_policy, now: datetime) -> str:
    policy = getattr(ctx_or_policy, "policy", ctx_or_policy)
    return now.astimezone(ZoneInfo(policy.digest.timezone)).date().isoformat()


# --- posting: through the publisher the digest's handlers register (bot.slack.post_digest), never render here ----

class Publisher(Protocol):
    """How the daily run posts (bot.slack.post_digest.SlackPublisher, given to the app by bot/wiring.py)."""

    def digest(self, ctx, channel: str, findings: Findings, day: str) -> str | None: ...

    def failure(self, ctx, channel: str, day: str, reason: str) -> str | None: ...


def publisher(ctx) -> Publisher:
    found = ctx.digest_publisher
    if found is None:  # a programming error: bot/wiring.py gives the app its publisher
        raise AmibotError("the digest cannot be posted: no publisher is registered")
    return found


def _permalink(ctx, channel: str, ts: str | None) -> str | None:
    """The link to the posted digest for the Home tab, asked of Slack by the publisher (None if it cannot say)."""
    ask = getattr(publisher(ctx), "permalink", None)  # a publisher without links (a test's, say): none
    return ask(ctx, channel, ts) if ask else None


def claim(store, day: str, channel: str, now: datetime) -> bool:
    """True for exactly one caller per (day, channel), across threads and processes: the first attempt. (Raw SQL
    on purpose: the primary key makes this one INSERT the claim.)"""
    return store.execute("INSERT OR IGNORE INTO digest_runs (date, channel, claimed_at, state, attempts)"
                         " VALUES (?, ?, ?, 'running', 1)", (day, channel, _utc(now))).rowcount == 1


# A run that fails after its claim is retried the same day: attempt 2 a minute after attempt 1 failed, then
# 5 and 15 minutes later. The schedule is in the claim row (state 'retry', attempts, next_attempt_at), so a
# restart carries on where the last process stopped; a run still 'running' after CRASHED_AFTER died with its
# process and is retried as well.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15))
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)
CRASHED_AFTER = timedelta(minutes=30)
RETRY_SCHEDULE_ID = "digest.retry"
RETRY_CHECK_SECONDS = 30


def _utc(moment: datetime) -> str:
    return _stamp(moment.astimezone(UTC))


def _run(store, day: str, channel: str) -> dict | None:
    return next(store.db["digest_runs"].rows_where("date = ? AND channel = ?", [day, channel]), None)


def _set_run(store, day: str, channel: str, **columns) -> None:
    store.db["digest_runs"].update((day, channel), columns)


def retry_is_due(row: dict | None, now: datetime) -> bool:
    if row is None or row["attempts"] >= MAX_ATTEMPTS:
        return False
    if row["state"] == "retry":
        return (row["next_attempt_at"] or "") <= _utc(now)
    return row["state"] == "running" and row["claimed_at"] <= _utc(now - CRASHED_AFTER)


def claim_retry(store, day: str, channel: str, now: datetime) -> int | None:
    """Take today's due retry, for exactly one caller (a conditional UPDATE); returns its attempt number."""
    row = _run(store, day, channel)
    if not retry_is_due(row, now):
        return None
    taken = store.execute("UPDATE digest_runs SET state = 'running', attempts = attempts + 1, claimed_at = ?,"
                          " next_attempt_at = NULL WHERE date = ? AND channel = ? AND state = ? AND attempts = ?",
                          (_utc(now), day, channel, row["state"], row["attempts"])).rowcount == 1
    return row["attempts"] + 1 if taken else None


def claimed(store, day: str, channel: str) -> bool:
    return _run(store, day, channel) is not None


def run_daily(ctx) -> str:
    """The scheduled run: claim today (or today's due retry), compute, post. Returns what happened (also
    audited). Any failure after the claim schedules the next attempt (see RETRY_DELAYS) instead of losing the day."""
    channel = ctx.policy.digest.channel
    if not channel:
        return "no [digest].channel configured"
    now = ctx.clock()
    day = local_day(ctx, now)
    attempt = 1 if claim(ctx.store, day, channel, now) else claim_retry(ctx.store, day, channel, now)
    if attempt is None:
        log.info("digest for %s in %s already claimed; not posting again", day, channel)
        return "already posted"
    if attempt > 1:
        log.warning("digest for %s in %s: attempt %d of %d", day, channel, attempt, MAX_ATTEMPTS)
    try:
        findings = compute_for(ctx)
        ts = publisher(ctx).digest(ctx, channel, findings, day)
    except Exception as error:  # whatever it was, the day is not lost: retried, and visible in /healthz
        return _failed_attempt(ctx, day, channel, attempt, error)
    # It is out: whatever happens next, no retry may post it again.
    _set_run(ctx.store, day, channel, state="posted", message_ts=ts, error=None)
    record_posted_digest(ctx, day, findings, channel, ts, _permalink(ctx, channel, ts))
    outcome = (f"posted: {len(findings.stale)} stale, {len(findings.orphans)} orphaned, "
               f"${findings.monthly_cost:,.2f}/month")
    if findings.failures:
        unchecked = [region.label for region in findings.failures]
        more = f" and {len(unchecked) - 10} more" if len(unchecked) > 10 else ""  # an organisation: keep it short
        outcome += f"; not checked: {', '.join(unchecked[:10])}{more}"
    return _finish_run(ctx, day, channel, ts, outcome)


def _finish_run(ctx, day: str, channel: str, ts: str | None, outcome: str) -> str:
    _set_run(ctx.store, day, channel, message_ts=ts, outcome=outcome, state="posted", error=None)
    _audit_run(ctx, day, channel, outcome)
    return outcome


def _failed_attempt(ctx, day: str, channel: str, attempt: int, error: Exception) -> str:
    """Record a failed attempt: schedule the next one (same day, bounded), or give up and say so in the channel."""
    reason = error.message if isinstance(error, AmibotError) else f"{type(error).__name__}: {str(error)[:300]}"
    now = ctx.clock()
    next_at = now + RETRY_DELAYS[attempt - 1] if attempt < MAX_ATTEMPTS else None
    if next_at is not None and local_day(ctx, next_at) == day:
        log.error("digest for %s in %s failed (attempt %d of %d); retrying at %s: %s", day, channel, attempt,
                  MAX_ATTEMPTS, _utc(next_at), reason, exc_info=error)
        when = next_at.astimezone(UTC)
        outcome = f"failed (attempt {attempt} of {MAX_ATTEMPTS}): {reason}; retrying at {when:%H:%M} UTC"
        _set_run(ctx.store, day, channel, state="retry", next_attempt_at=_utc(next_at), error=reason, outcome=outcome)
        _audit_run(ctx, day, channel, outcome)
        return outcome
    log.error("digest for %s in %s failed (attempt %d of %d); giving up for today: %s", day, channel, attempt,
              MAX_ATTEMPTS, reason, exc_info=error)
    ts = None
    try:
        ts = publisher(ctx).failure(ctx, channel, day, reason)
    except Exception:  # Slack may be what failed; the log, /healthz and the audit trail still say it
        log.exception("could not tell %s that the digest for %s failed", channel, day)
    outcome = f"failed after {attempt} attempt(s): {reason}"
    _set_run(ctx.store, day, channel, state="failed", message_ts=ts, error=reason, outcome=outcome)
    _audit_run(ctx, day, channel, outcome)
    return outcome


def retry_due(ctx) -> str | None:
    """The scheduler's frequent check (and the start's): make today's retry if one is due."""
    channel = ctx.policy.digest.channel
    if not channel:
        return None
    now = ctx.clock()
    if not retry_is_due(_run(ctx.store, local_day(ctx, now), channel), now):
        return None
    return run_daily(ctx)


def health_status(ctx) -> dict | None:
    """The latest daily run, for /healthz: its day, state, attempts and last error."""
    row = next(ctx.store.db["digest_runs"].rows_where(order_by="date DESC, claimed_at DESC", limit=1), None)
    if row is None:
        return None
    status = {"date": row["date"], "channel": row["channel"], "state": row["state"], "attempts": row["attempts"]}
    if row["error"]:
        status["error"] = row["error"]
    if row["next_attempt_at"]:
        status["next_attempt_at"] = row["next_attempt_at"]
    return status


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


def catch_up(ctx) -> bool:
    """At start: if today's run is past due and nobody made it, or a failed attempt's retry is due, make it now
    (as a durable job)."""
    channel = ctx.policy.digest.channel
    now = ctx.clock()
    if not channel or not due(ctx.policy, now):
        return False
    run = _run(ctx.store, local_day(ctx, now), channel)
    if run is not None and not retry_is_due(run, now):
        return False
    ctx.jobs.submit(DAILY_JOB, {"reason": "catch-up at start"})
    return True


# --- acting on it ---------------------------------------------------------------------------------------

def snooze(ctx, image_id: str, region: str, user: str, channel: str | None, days: int = SNOOZE_DAYS,
           account: str = "") -> datetime:
    """Keep the image out of digests for `days`; stored and audited (with its account). Returns when it ends."""
    now = ctx.clock()
    until = now + timedelta(days=days)
    ctx.store.db["snoozes"].upsert({"image_id": image_id, "until": _stamp(until), "by": user, "at": _stamp(now)},
                                   pk="image_id")
    detail = {"region": region, "days": days, **({"account": account} if account else {})}
    audit.record(ctx.store, actor=user, action="digest.snooze", channel=channel, target=image_id,
                 outcome=f"snoozed until {until.date().isoformat()}", detail=detail)
    return until


@requires("ec2:DescribeSnapshots", "ec2:DescribeImages")
def cleanup_preflight(ctx, region: str, snapshot_ids: list[str], account: str = ""
                      ) -> tuple[dict[str, int], list[str], dict[str, dict[str, str]]]:
    """The listed snapshots that still exist in `account` (an id; "": the bot's own), are still orphaned (no
    image uses them, their image is gone), with their sizes; notes on the ones dropped; the tags of those kept
    (what the Recycle Bin's rules match)."""
    handle = ctx.aws.of(account)
    account_id = handle.account_id()
    found = {item["SnapshotId"]: item for item in paginate(
        handle.ec2(region), "describe_snapshots", "Snapshots", OwnerIds=["self"],
        Filters=[{"Name": "snapshot-id", "Values": snapshot_ids}])
        if isinstance(item, dict) and item.get("OwnerId") == account_id and isinstance(item.get("SnapshotId"), str)}
    images = describe_own_images(handle, region, ctx.policy.digest.family_tag)
    existing = {image.id for image in images}
    used = {snapshot_id for image in images for snapshot_id in image.snapshot_ids}
    sizes, notes, tags = {}, [], {}
    for snapshot_id in snapshot_ids:
        item = found.get(snapshot_id)
        if item is None:
            notes.append(f"{snapshot_id} is already gone")
        elif snapshot_id in used or ami_of(item.get("Description")) in existing:
            notes.append(f"{snapshot_id} belongs to an existing image again; left out")
        else:
            where = awsdata.label("snapshot", snapshot_id, region)
            sizes[snapshot_id] = awsdata.integer(item, "VolumeSize", where) or 0
            tags[snapshot_id] = {str(tag.get("Key")): str(tag.get("Value") or "") for tag in item.get("Tags") or []
                                 if isinstance(tag, dict) and tag.get("Key")}
    return sizes, notes, tags


SNAPSHOT_RESTORE = "aws ec2 restore-snapshot-from-recycle-bin"


def snapshots_undo(handle: Aws, region: str, tags: dict[str, dict[str, str]], at: datetime) -> dict:
    """Whether deleting these snapshots can be undone, as data for the request: {"known": the Recycle Bin's
    snapshot rules could be read, "kept": {snapshot id: days a rule keeps it}, "at": when this was found}."""
    try:
        rules = recycle_bin.rules_in(handle, region, recycle_bin.SNAPSHOT)
    except AwsError as error:
        log.info("the Recycle Bin of %s could not be read for a cleanup: %s", region, error.message)
        return {"known": False, "kept": {}, "at": at.isoformat()}
    kept = {}
    for snapshot_id, have in tags.items():
        days = [rule.days for rule in rules if rule.status == "available" and rule.days and rule.covers(have)]
        if days:
            kept[snapshot_id] = max(days)
    return {"known": True, "kept": kept, "at": at.isoformat()}


def snapshots_undo_sentence(details: object) -> str:
    """The one way a cleanup says whether it can be undone (plain words: the confirmation, the request's message,
    its reason): recoverable until when and how, irreversible, or unknown."""
    undo = details.get("undo") if isinstance(details, dict) else None
    sizes = details.get("sizes") if isinstance(details, dict) else None
    if not isinstance(undo, dict) or not undo.get("known"):
        return "Whether it can be undone is unknown: the Recycle Bin could not be read; assume it cannot."
    count = len(sizes) if isinstance(sizes, dict) else 0
    kept = {key: days for key, days in (undo.get("kept") or {}).items() if isinstance(days, int) and days > 0}
    if not kept:
        return "This cannot be undone: no Recycle Bin rule keeps these snapshots."
    days = min(kept.values())
    try:
        until = f"until at least {datetime.fromisoformat(undo['at']) + timedelta(days=days):%Y-%m-%d}"
    except (KeyError, TypeError, ValueError):
        until = f"for {days} days"
    if len(kept) >= count:
        return f"Recoverable {until} from the Recycle Bin ({days} days) with {SNAPSHOT_RESTORE}."
    return (f"{len(kept)} of {count} recoverable {until} from the Recycle Bin with {SNAPSHOT_RESTORE}; "
            f"the other {count - len(kept)} cannot be undone.")


def request_cleanup(ctx, region: str, snapshot_ids: list[str], requester: str, channel: str,
                    account: str = "") -> approvals.Request:
    """One approval request for a set of orphaned snapshots of one account-region (`account`: its id; "": the
    bot's own). Raises PolicyViolation if none is left, NotFound for an account amibot does not manage."""
    if not snapshot_ids:
        raise PolicyViolation("No snapshots were listed for cleanup.")
    snapshot_ids = snapshot_ids[:MAX_CLEANUP]
    handle = ctx.aws.of(account)
    account = handle.account.id if account else ""  # a name given: the id, as every request's params carry
    sizes, notes, tags = cleanup_preflight(ctx, region, snapshot_ids, account)
    place = _place(ctx, handle, region)
    if not sizes:
        raise PolicyViolation("Nothing to clean up: " + "; ".join(notes) + ".")
    price = ctx.policy.digest.snapshot_price_per_gb_month
    total = sum(sizes.values())
    # Data, rendered where the request's message is (bot/render/digest.py cleanup_details)
    details = {"view": CLEANUP_DETAILS, "place": place, "sizes": sizes, "monthly": total * price, "notes": notes,
               "undo": snapshots_undo(handle, region, tags, ctx.clock())}
    return approvals.create_request(
        ctx, kind=CLEANUP_KIND,
        params={"account": account, "region": region, "snapshot_ids": list(sizes), "sizes": sizes},
        requester=requester, channel=channel,
        title=f"Delete {plural(len(sizes), 'orphaned snapshot')} in {place} ({total:,} GiB)",
        details=details, reason=f"it deletes snapshots. {snapshots_undo_sentence(details)}")


def _place(ctx, handle: Aws, region: str) -> str:
    """Where a cleanup acts, as messages say it: the region, and the account when amibot manages several."""
    return where(handle.account, region) if ctx.aws.many else region


def _owner(ctx, params: dict) -> Aws:
    """The handle of the account a stored cleanup acts in (old requests have no "account": the bot's own)."""
    try:
        return ctx.aws.of(params.get("account") or "")
    except NotFound as error:
        raise AmibotError(f"Nothing was deleted: {error.message}.") from None


def _cleanup_plan(request: approvals.Request) -> list[Step]:
    sizes = request.params.get("sizes", {})
    return [Step("delete_snapshot", snapshot_id, {"size_gb": sizes.get(snapshot_id, 0)})
            for snapshot_id in request.params["snapshot_ids"]]


def execute_cleanup(ctx, request: approvals.Request, progress) -> str:
    """Delete each snapshot, in the request's account; skip those in use or already gone; report each. Each
    deletion is a durable step (bot/durable/steps.py), planned before the first DeleteSnapshot: a crash from there on is
    finished by reconcile_cleanup, which says what was done before the restart and what after."""
    region = request.params["region"]
    handle = _owner(ctx, request.params)
    ec2 = handle.ec2(region)
    steps = Steps(ctx.store, f"request:{request.id}")
    for step in steps.plan(_cleanup_plan(request)):
        delete_step(ec2, steps, step)
        if step.result == "deleted":
            progress(f":broom: Deleted {step.target} ({step.data['size_gb']:,} GiB).")
        elif step.state != FAILED:
            progress(f":fast_forward: Skipped {step.target} ({step.result}).")
    return _cleanup_summary(ctx, handle, request, steps.all())


def _cleanup_summary(ctx, handle: Aws, request: approvals.Request, done: list[Step]) -> str:
    deleted = [step for step in done if step.result == "deleted"]
    skipped = [f"{step.target} ({step.result})" for step in done if step.state in (DONE, SKIPPED)
               and step.result != "deleted"]
    failed = [f"{step.target}: {step.result}" for step in done if step.state == FAILED]
    freed = sum(step.data.get("size_gb", 0) for step in deleted)
    price = ctx.policy.digest.snapshot_price_per_gb_month
    summary = (f"Deleted {len(deleted)} of {len(done)} snapshots in {_place(ctx, handle, request.params['region'])} "
               f"({freed:,} GiB, {money(freed * price)}/month saved)")
    if skipped:
        summary += f"; skipped {', '.join(skipped)}"
    if failed:
        raise AmibotError(f"{summary}; could NOT delete {'; '.join(failed)}.")
    return summary + "."


@requires("ec2:DescribeSnapshots")
def _still_there(handle: Aws, region: str, snapshot_ids: list[str]) -> set[str]:
    return {item.get("SnapshotId") for item in paginate(
        handle.ec2(region), "describe_snapshots", "Snapshots", OwnerIds=["self"],
        Filters=[{"Name": "snapshot-id", "Values": snapshot_ids}]) if isinstance(item, dict)}


def reconcile_cleanup(ctx, request: approvals.Request):
    """After a crash mid-cleanup: look each recorded step up and finish the deletions (deleting again is safe; a
    snapshot already gone counts as done), reporting what was done before the restart and what after.

    Nothing recorded as done and every snapshot still there → nothing was done (None: approve again)."""
    region, ids = request.params["region"], request.params["snapshot_ids"]
    try:
        handle = _owner(ctx, request.params)
    except AmibotError as error:  # the account is no longer managed: nothing can be checked or finished here
        return approvals.Reconciled(approvals.FAILED, error.message)
    steps = Steps(ctx.store, f"request:{request.id}")
    plan = steps.all()
    if all(step.open for step in plan) and _still_there(handle, region, ids) >= set(ids):
        steps.forget()  # the crash came before the first DeleteSnapshot reached AWS
        return None
    if not plan:  # executed before cleanups recorded their steps, and something is gone: finish it
        plan = steps.plan(_cleanup_plan(request))
    ec2 = handle.ec2(region)
    resumed, kept = Resumed(), []
    for step in plan:
        if step.open:
            delete_step(ec2, steps, step)
            said = resumed.after
        else:
            said = resumed.before
        if step.state == DONE:
            said.append(deleted_phrase(step))
        elif step.state == SKIPPED:
            kept.append(f"{step.target} ({step.result})")
        else:
            resumed.failed.append(f"delete {step.target}: {step.result}")
    outcome = resumed.sentence() + (f" Skipped {', '.join(kept)}." if kept else "")
    if resumed.failed:
        return approvals.Reconciled(approvals.FAILED, outcome)
    return approvals.Reconciled(approvals.SUCCEEDED, outcome)


def cleanup_confirm(params: dict, details: object = None) -> str:
    account = f" of account {params['account']}" if params.get("account") else ""
    return (f"Delete {plural(len(params['snapshot_ids']), 'snapshot')} in {params['region']}{account}. "
            f"{snapshots_undo_sentence(details)}")
