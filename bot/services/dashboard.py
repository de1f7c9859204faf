"""The Home tab's data: where a lead starts the day.

Two kinds of parts. Those in SQLite (the requests waiting for this user, the requests they made, the digest's
daily totals and the last digest) are read on every open. The fleet's health — per family the current version
and its age, instances on it and on older versions, its critical findings — needs AWS, so it is computed by a
background job and kept in ``dashboard_cache``; the Home tab opens from that cache (never an AWS call on the
ack path) and the job publishes the tab again when it has fresh numbers. The cache is refreshed when it is
older than FRESH and someone wants it (opened the tab in the last WANTED_FOR).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from bot.core.errors import AmibotError, AwsError
from bot.durable.steps import FAILED, Steps
from bot.services import approvals, bake, revoke, rollout, rollout_watch
from bot.services.drift import Drift, fleet_drift, retired_names
from bot.services.findings import findings_of_many
from bot.services.staleness import where

log = logging.getLogger(__name__)

FRESH = timedelta(minutes=5)
WANTED_FOR = timedelta(minutes=30)
FLEET = "fleet"
TREND_DAYS = 30


@dataclass
class FamilyHealth:
    family: str
    region: str
    current_id: str | None
    current_name: str
    current_age_days: float | None
    on_current: int
    on_older: int
    critical: int | None  # None: unknown (no Inspector, or not read)


@dataclass
class Fleet:
    families: list[FamilyHealth] = field(default_factory=list)
    computed_at: str = ""
    failures: dict[str, str] = field(default_factory=dict)
    unknown_family: int = 0
    checked: int = 0  # (account-)regions read: with failures, "no families" is said only where something was read

    @property
    def drifted(self) -> int:
        return sum(family.on_older for family in self.families)


@dataclass
class DayTotals:
    date: str
    stale_images: int
    orphaned_snapshots: int
    monthly_waste: float
    drifted_instances: int | None


@dataclass
class LastDigest:
    date: str
    monthly_waste: float
    stale_images: int
    orphaned_snapshots: int
    channel: str | None
    permalink: str | None


@dataclass
class RolloutProgress:
    """A rollout still running (`/ami rollout`), as its watch last recorded it (no AWS call: the Home tab opens
    from SQLite). `id`, `channel` and `message_ts` are its request's: the tab links that message."""

    id: str
    family: str
    version: str  # the target version(s), "1.5.0"
    groups: int  # groups rolled
    done: int  # of them finished (whatever the outcome)
    percent: int  # of its instances' work done: each group's PercentageComplete weighted by its instances
    failed: dict[str, str] = field(default_factory=dict)  # group -> why (failed, rolled back, cancelled, not started)
    channel: str = ""
    message_ts: str | None = None


@dataclass
class Dashboard:
    user: str
    fleet: Fleet | None  # None: never computed yet (the refresh is on its way)
    fleet_age: timedelta | None
    waiting: list  # approvals.Request this user may decide
    mine: list  # approvals.Request this user made, newest first
    trend: list[DayTotals]
    last_digest: LastDigest | None
    now: datetime
    bakes: list = field(default_factory=list)  # running bakes' records, with "state" (bot.services.bake)
    revoked: list = field(default_factory=list)  # the latest revocations (bot.services.revoke.recent), newest first
    rollouts: list[RolloutProgress] = field(default_factory=list)  # rollouts running, oldest first


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# --- the fleet (AWS, in a job) -----------------------------------------------------------------------

def compute_fleet(ctx) -> Fleet:
    """Per family and region (and account, with many): the current version, its age, instances on it and on
    others, its critical findings. A region that cannot be read is named, never silently missing."""
    now = ctx.clock()
    found = fleet_drift(ctx.aws, ctx.policy.digest.family_tag, now, names=retired_names(ctx.store))
    families = _families(ctx.aws, found, now)
    families.sort(key=lambda f: (-(f.critical or 0), -f.on_older, f.family, f.region))
    return Fleet(families, _stamp(now), dict(found.failures), found.unknown_family, len(found.sources))


def _families(aws, found: Drift, now: datetime) -> list[FamilyHealth]:
    """Per family and region: its current version (its findings read in the account that owns it). Families are
    the organisation's, as `/ami drift` judges them: an instance in prod on bake's image counts in bake's family."""
    owners: dict[str, list] = {}
    for family in found.families:
        if family.current is not None:
            owners.setdefault(family.current.account, []).append(family.current)
    findings: dict = {}
    for account, currents in owners.items():
        try:
            findings.update(findings_of_many(_owner(aws, account), currents))
        except AwsError as error:  # findings are per image and already caught; this is the pool itself failing
            log.warning("findings for the Home tab could not be read: %s", error.message)
    families = []
    for family in found.families:
        current = family.current
        known = findings.get(current.id) if current else None
        age = (now - current.created).total_seconds() / 86400 if current and current.created else None
        # with many accounts, "svc (prod (111111111111), us-east-1)": the account whose images make the family
        region = where(_owner(aws, current.account).account, family.region) if aws.many and current \
            else family.region
        families.append(FamilyHealth(family.family, region, current.id if current else None,
                                     (current.name or current.id) if current else "", age, family.on_current,
                                     family.drifted, known.critical if known and known.known else None))
    return families


def _owner(aws, account: str):
    try:
        return aws.of(account)
    except AmibotError:  # not (or no longer) managed: the bot's own credentials
        return aws.home


def save_fleet(store, fleet: Fleet) -> None:
    store.db["dashboard_cache"].upsert({"key": FLEET, "data": json.dumps(asdict(fleet)),
                                        "computed_at": fleet.computed_at}, pk="key")


def _cached(store, column: str) -> dict | None:
    return next(store.db["dashboard_cache"].rows_where("key = ?", [FLEET], select=column), None)


def load_fleet(store) -> Fleet | None:
    row = _cached(store, "data")
    if row is None:
        return None
    try:
        data = json.loads(row["data"])
        if not isinstance(data, dict):  # the tab was opened, but no fleet was computed yet
            return None
        return Fleet([FamilyHealth(**item) for item in data.get("families", [])], data.get("computed_at", ""),
                     data.get("failures", {}), data.get("unknown_family", 0), data.get("checked", 0))
    except (ValueError, TypeError, AttributeError) as error:  # an older shape: recompute rather than fail the Home tab
        log.warning("the Home tab's fleet cache could not be read (%s); it will be recomputed", error)
        return None


def want(store, now: datetime) -> None:
    """Someone opened the Home tab: the scheduled refresh keeps the fleet fresh while this is recent. (One statement
    that sets only wanted_at on a cached fleet and gives a new row the placeholders its NOT NULL columns need.)"""
    store.execute("INSERT INTO dashboard_cache (key, data, computed_at, wanted_at) VALUES (?, 'null', '', ?) "
                  "ON CONFLICT(key) DO UPDATE SET wanted_at = excluded.wanted_at", (FLEET, _stamp(now)))


def stale(store, now: datetime) -> bool:
    row = _cached(store, "computed_at")
    return not row or not row["computed_at"] or now - _parse(row["computed_at"]) >= FRESH


def wanted(store, now: datetime) -> bool:
    row = _cached(store, "wanted_at")
    return bool(row and row["wanted_at"] and now - _parse(row["wanted_at"]) < WANTED_FOR)


# --- the digest's history (SQLite) -------------------------------------------------------------------

def record_digest(store, day: str, stale_images: int, orphaned_snapshots: int, monthly_waste: float,
                  drifted_instances: int | None = None, channel: str | None = None, message_ts: str | None = None,
                  permalink: str | None = None, now: datetime | None = None) -> None:
    """The day's digest totals (the day's last run wins): the Home tab's trend and its last-digest line."""
    stamp = _stamp(now) if now else datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    where = {"channel": channel, "message_ts": message_ts, "permalink": permalink}
    store.db["digest_history"].upsert({  # an upsert sets only the columns given: an unknown link keeps the known one
        "date": day, "stale_images": stale_images, "orphaned_snapshots": orphaned_snapshots,
        "monthly_waste": round(monthly_waste, 2), "drifted_instances": drifted_instances, "recorded_at": stamp,
        **{name: value for name, value in where.items() if value is not None}}, pk="date")


def record_posted_digest(ctx, day: str, findings, channel: str | None, ts: str | None,
                         permalink: str | None = None) -> None:
    """After a digest was posted: its totals for the trend, and the link to it for the Home tab (asked of Slack by
    the poster, bot/slack/post_digest.py: a service never calls Slack)."""
    try:
        drifted = getattr(findings, "drifted_instances", None)
        record_digest(ctx.store, day, len(findings.stale), len(findings.orphans), findings.monthly_cost,
                      drifted if isinstance(drifted, int) else None, channel, ts, permalink, ctx.clock())
    except Exception:  # the digest is out; its history line must not fail the run
        log.exception("could not record the digest's totals for %s", day)


def trend(store, days: int = TREND_DAYS) -> list[DayTotals]:
    rows = list(store.db["digest_history"].rows_where(order_by="date DESC", limit=days))
    return [DayTotals(row["date"], row["stale_images"], row["orphaned_snapshots"], row["monthly_waste"],
                      row["drifted_instances"]) for row in reversed(rows)]


def last_digest(store) -> LastDigest | None:
    row = next(store.db["digest_history"].rows_where(order_by="date DESC", limit=1), None)
    if row is None:
        return None
    return LastDigest(row["date"], row["monthly_waste"], row["stale_images"], row["orphaned_snapshots"],
                      row["channel"], row["permalink"])


# --- rollouts in progress (SQLite: what each rollout's watch recorded) --------------------------------

def _group_percent(item: dict) -> float:
    """One group's share done: waiting (not started, Pending) 0, finished 100 (whatever the outcome: nothing more
    happens there — a failed one is named apart), else AWS's PercentageComplete."""
    status = item.get("status") or ""
    if status in rollout.TERMINAL or status == "NotStarted":
        return 100.0
    percent = item.get("percent")
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        return 0.0
    return float(min(max(percent, 0), 100))


def _recorded_progress(store, request) -> dict[str, dict]:
    """Each group's refresh as the watch last recorded it: on the request's details, else on its steps."""
    found: dict[str, dict] = {}
    for step in Steps(store, f"request:{request.id}").all():
        if step.action != rollout.REFRESH_STEP:
            continue
        if step.state == FAILED:
            found[step.target] = {"status": "NotStarted", "reason": step.result or ""}
        elif step.data.get("status"):
            found[step.target] = {key: step.data.get(key) for key in ("status", "percent", "reason")}
    details = request.details.get("progress") if isinstance(request.details, dict) else None
    if isinstance(details, dict):
        found.update({key: item for key, item in details.items() if isinstance(item, dict)})
    return found


def rollout_progress(ctx, request) -> RolloutProgress:
    """One running rollout's progress: groups finished of those rolled, and the instances-weighted percentage."""
    found = rollout.stored_plan(request)
    progress = _recorded_progress(ctx.store, request)
    rolled = found.to_roll
    weights = {rollout.group_key(group): max(group.instances or 0, 1) for group in rolled}
    total = sum(weights.values())
    done_share = sum(weight * _group_percent(progress.get(key) or {}) for key, weight in weights.items())
    groups = {rollout.group_key(group): group.group for group in rolled}
    finished = [key for key in weights if ((progress.get(key) or {}).get("status") or "") in
                (*rollout.TERMINAL, "NotStarted")]
    failed = {groups[key]: (progress[key].get("reason") or progress[key].get("status") or "") for key in finished
              if progress[key].get("status") not in rollout.SUCCEEDED_REFRESH}
    version = ", ".join(sorted({target.get("version") or target.get("image_id") or "" for target in
                                found.targets.values()}))
    return RolloutProgress(request.id, found.family, version, len(rolled), len(finished),
                           int(done_share / total) if total else 0, failed, request.channel, request.message_ts)


def rollouts_in_progress(ctx) -> list[RolloutProgress]:
    """Every rollout not yet finished, from SQLite only; one that cannot be read is left out (logged)."""
    try:
        running = rollout_watch.running(ctx)
    except AmibotError as error:  # a request gone from under its steps: the tab opens all the same
        log.warning("rollouts on the Home tab: %s", error.message)
        return []
    found = []
    for request in running:
        try:
            found.append(rollout_progress(ctx, request))
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # an older or broken record
            log.warning("rollout %s on the Home tab: %s", request.id, error)
    return found


# --- the whole view's data ---------------------------------------------------------------------------

def waiting_for(ctx, user: str) -> list:
    """Pending requests this user may approve (not their own; an account's own approvers for its requests; for a
    request changing several accounts, the approvers of one still lacking its approval)."""
    return [request for request in approvals.pending(ctx) if approvals.awaits(ctx, user, request)]


def made_by(ctx, user: str, limit: int = 10) -> list:
    return approvals.made_by(ctx.store, user, limit)


def dashboard(ctx, user: str) -> Dashboard:
    """Everything the Home tab shows, from SQLite only (no AWS): safe on the ack path."""
    now = ctx.clock()
    fleet = load_fleet(ctx.store)
    age = now - _parse(fleet.computed_at) if fleet and fleet.computed_at else None
    running = [{**run.record, "state": run.state} for run in bake.runs(ctx.store)
               if run.state in ("starting", "running", "cancelling")]
    return Dashboard(user, fleet if fleet and fleet.computed_at else None, age, waiting_for(ctx, user),
                     made_by(ctx, user), trend(ctx.store), last_digest(ctx.store), now, running,
                     revoke.recent(ctx.store), rollouts_in_progress(ctx))
