"""Audit anchors: the hash chain's state written outside the database, so it cannot be rewound quietly.

The chain in bot/durable/audit.py detects any edit, insert or deletion — except by someone who rewrites the file
consistently: delete the last rows and point the head back, or empty the trail. An anchor is the chain's
state at a moment — (row count, last id, head hash, time) — copied to places the database's owner cannot
rewrite: a Slack channel (``[audit].channel``) and an S3 bucket with Object Lock (``[audit].anchor_bucket``,
each object under COMPLIANCE retention for ``[audit].anchor_retention_days``, so not even the account's root
user can delete or overwrite it before then). Anchors are written once a day (claimed in SQLite, like the
digest) and after every approval decision.

``amibot audit verify`` recomputes the chain, then checks it against every anchor in the bucket — every version of
every object, so a newer object (or a newer version under an old key) cannot outvote the ones before it — or
against one given by hand: the trail must have at least each anchor's rows, and each anchor's row must still have
the anchor's hash. At start, a missing database while the bucket shows a history refuses to start unless
``--new-database`` is given.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.aws.clients import call, paginate, requires
from bot.durable import audit

if TYPE_CHECKING:
    from bot.durable.store import Store

log = logging.getLogger(__name__)

ANCHOR_JOB = "audit.anchor"
KEY_PREFIX = "amibot/anchors/"
# What the bot's IAM role may touch in [audit].anchor_bucket (bot/iam_policy.py fills in the bucket)
ANCHOR_BUCKET = "arn:{partition}:s3:::{anchor_bucket}"
ANCHOR_OBJECTS = f"{ANCHOR_BUCKET}/{KEY_PREFIX}*"
FORMAT = "amibot-anchor/1"
# Decisions and outcomes of approval requests: each is followed by an anchor (bot/services/approvals.py _record).
DECISIONS = {"approved", "rejected", "cancelled", "expired", "succeeded", "failed"}
HASH = re.compile(r"^[0-9a-f]{64}$")
LINE = re.compile(r"count=(?P<count>\d+) last_id=(?P<last_id>\d+) head=(?P<head>[0-9a-f]{64}) at=(?P<at>\S+)")


class AnchorError(Exception):
    """An anchor given by hand (or read back) that cannot be understood."""


@dataclass(frozen=True)
class Anchor:
    count: int | None  # rows in the trail; None for a bare hash given by hand
    last_id: int | None
    head: str
    at: str | None = None

    def line(self) -> str:
        """The machine-readable line posted to the audit channel (parse() reads it back)."""
        return f"{FORMAT} count={self.count} last_id={self.last_id} head={self.head} at={self.at}"

    def describe(self) -> str:
        where = f" of {self.at}" if self.at else ""
        rows = f"{self.count} rows, " if self.count is not None else ""
        return f"anchor{where} ({rows}head {self.head[:12]}…)"

    def document(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """HASH, COUNT:HASH, an anchor line as posted, or an anchor object's JSON."""
        text = (text or "").strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
                return cls(int(data["count"]), int(data.get("last_id") or data["count"]), str(data["head"]),
                           data.get("at"))
            except (ValueError, KeyError, TypeError) as error:
                raise AnchorError(f"not an amibot anchor document ({error})") from None
        found = LINE.search(text)
        if found:
            return cls(int(found["count"]), int(found["last_id"]), found["head"], found["at"])
        count, _, head = text.rpartition(":")
        if HASH.match(head) and (not count or count.isdigit()):
            number = int(count) if count else None
            return cls(number, number, head)
        raise AnchorError(f"expected HASH or COUNT:HASH (a 64-character SHA-256 in hex), got {text[:80]!r}")


def current(store: Store, at: str | None = None) -> Anchor:
    """The chain's state now, read in one transaction."""
    count, last_id, last_hash = audit.state(store)
    return Anchor(count, last_id, last_hash, at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def check(store: Store, anchor: Anchor, count: int | None = None) -> str | None:
    """None when the trail contains the anchored state; else one sentence saying how it does not. ``count``: the
    trail's rows, when the caller has counted them already. (Run after audit.verify: the chain itself must be
    intact for this to mean anything.)"""
    if count is None:
        count = audit.count(store)
    if anchor.count is None:
        if not audit.has_hash(store, anchor.head) and anchor.head != "0" * 64:
            return (f"no row has the {anchor.describe()}'s hash: the trail was rewound or rewritten "
                    f"({count} rows now)")
        return None
    if count < anchor.count:
        return (f"the trail has {count} rows but the {anchor.describe()} recorded {anchor.count}: "
                "rows were removed (the trail was rewound or emptied)")
    if not anchor.count:
        return None
    if audit.hash_of(store, anchor.last_id or anchor.count) != anchor.head:
        return (f"row {anchor.last_id or anchor.count} does not have the {anchor.describe()}'s hash: "
                "the trail diverges from the anchor (rewritten)")
    return None


# --- S3 with Object Lock ------------------------------------------------------------------------------

def object_key(anchor: Anchor) -> str:
    stamp = (anchor.at or "").replace("-", "").replace(":", "")
    return f"{KEY_PREFIX}{stamp}-{anchor.count}.json"


@requires("s3:PutObject", "s3:PutObjectRetention", resource=ANCHOR_OBJECTS)
def put_to_bucket(aws, bucket: str, anchor: Anchor, retention_days: int, now: datetime | None = None) -> str:
    """Write the anchor as a new object under COMPLIANCE retention; return its key."""
    until = (now or datetime.now(UTC)) + timedelta(days=retention_days)
    key = object_key(anchor)
    call(aws.client("s3"), "put_object", resource=f"s3://{bucket}", Bucket=bucket, Key=key,
         Body=json.dumps(anchor.document(), sort_keys=True).encode(), ContentType="application/json",
         ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    return key


@dataclass(frozen=True)
class Stored:
    """One version of one object under the anchors' prefix: the anchor it holds, or why it holds none."""

    place: str  # s3://bucket/key (version id)
    anchor: Anchor | None
    problem: str | None = None

    def order(self) -> tuple:
        """Anchors by row count, then time (never by key: "…Z-9.json" sorts after "…Z-12.json" as text)."""
        if self.anchor is None:
            return (0, 0, "", self.place)
        return (1, self.anchor.count or 0, self.anchor.at or "", self.place)


READ_WORKERS = 8  # the objects are small: reading them a few at a time bounds `audit verify` on a long history


@requires("s3:ListBucketVersions", resource=ANCHOR_BUCKET)
@requires("s3:GetObjectVersion", resource=ANCHOR_OBJECTS)
def read_bucket(aws, bucket: str) -> list[Stored]:
    """Every version of every object under the anchors' prefix (a role that may put objects can put a new version
    under an existing key: it must not hide the one before), oldest anchor first (Stored.order); objects that
    are not readable anchors first of all, each with its problem."""
    from concurrent.futures import ThreadPoolExecutor

    s3 = aws.client("s3")
    versions = [(item["Key"], item["VersionId"]) for item in
                paginate(s3, "list_object_versions", "Versions", Bucket=bucket, Prefix=KEY_PREFIX)]

    def read(version: tuple[str, str]) -> Stored:
        key, version_id = version
        place = f"s3://{bucket}/{key}" + (f" (version {version_id})" if version_id != "null" else "")
        body = call(s3, "get_object", resource=f"s3://{bucket}/{key}", Bucket=bucket, Key=key,
                    VersionId=version_id)["Body"].read()
        try:
            return Stored(place, Anchor.parse(body.decode("utf-8", "replace")))
        except AnchorError as error:
            return Stored(place, None, f"not a readable amibot anchor ({error})")

    with ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="amibot-anchors") as pool:
        return sorted(pool.map(read, versions), key=Stored.order)


def newest_in_bucket(aws, bucket: str) -> Anchor | None:
    """The newest anchor in the bucket — the most rows, then the latest time — or None when there is none (an
    object that is not a readable anchor is skipped, never taken for "no history")."""
    anchors = [stored.anchor for stored in read_bucket(aws, bucket) if stored.anchor is not None]
    return anchors[-1] if anchors else None


def check_all(store: Store, stored: list[Stored]) -> list[str]:
    """One line per object the trail does not match — an anchor it does not contain, or an object that is not an
    anchor — naming it; [] when the trail contains every anchor. No anchor outvotes another: a rewritten trail
    with a newer anchor to match still fails against every older one."""
    count = audit.count(store)
    lines = []
    for item in stored:
        if item.anchor is None:
            lines.append(f"{item.place} is {item.problem}")
        elif problem := check(store, item.anchor, count):
            lines.append(f"audit trail does not match the {item.anchor.describe()} from {item.place}: {problem}")
    return lines


# --- writing anchors from the running bot -------------------------------------------------------------

def configured(policy) -> bool:
    section = getattr(policy, "audit", None) or {}
    return bool(section.get("channel") or section.get("anchor_bucket"))


def publish(ctx, reason: str) -> dict[str, str]:
    """Write the chain's current state to every configured place; {place: "ok" or what went wrong}. A place
    that fails is logged (one line) and recorded, never raised: the decision it follows already happened."""
    anchor = current(ctx.store)
    audit_policy = ctx.policy.audit
    places: dict[str, str] = {}
    if audit_policy.channel:
        try:
            ctx.slack.chat_postMessage(channel=audit_policy.channel, text=f"Audit anchor ({reason}): `{anchor.line()}`",
                                       metadata={"event_type": "amibot_audit_anchor",
                                                 "event_payload": anchor.document()})
            places[f"slack:{audit_policy.channel}"] = "ok"
        except Exception as error:
            places[f"slack:{audit_policy.channel}"] = f"{type(error).__name__}: {str(error)[:200]}"
    if audit_policy.anchor_bucket:
        try:
            key = put_to_bucket(ctx.aws.home, audit_policy.anchor_bucket, anchor, audit_policy.anchor_retention_days)
            places[f"s3://{audit_policy.anchor_bucket}/{key}"] = "ok"
        except Exception as error:
            places[f"s3://{audit_policy.anchor_bucket}"] = getattr(error, "message", None) or repr(error)[:200]
    for place, outcome in places.items():
        if outcome != "ok":
            log.warning("could not write the audit anchor to %s: %s", place, outcome)
    ctx.store.db["anchors"].insert({"at": anchor.at, "count": anchor.count, "last_id": anchor.last_id,
                                    "head": anchor.head, "reason": reason, "places": json.dumps(places)})
    return places


def after_decision(ctx, action: str) -> None:
    """Called for every approval-request audit row; decisions and outcomes are followed by an anchor (as a
    durable job, so the decision's own path never waits on Slack or S3)."""
    if action not in DECISIONS or not configured(ctx.policy):
        return
    try:
        ctx.jobs.submit(ANCHOR_JOB, {"reason": f"after request {action}"})
    except Exception:
        log.exception("could not queue an audit anchor")


def daily(ctx, now: datetime | None = None) -> bool:
    """The daily anchor, claimed once per UTC day in SQLite (restarts and several processes write one)."""
    if not configured(ctx.policy):
        return False
    now = now or ctx.clock()
    # Raw SQL on purpose: the date's primary key makes this one INSERT the once-a-day claim, across processes.
    claimed = ctx.store.execute("INSERT OR IGNORE INTO anchor_days (date, claimed_at) VALUES (?, ?)",
                                (now.strftime("%Y-%m-%d"), now.strftime("%Y-%m-%dT%H:%M:%SZ"))).rowcount
    if claimed:
        publish(ctx, "daily")
    return bool(claimed)


def daily_at_start(ctx) -> None:
    """At start: the anchor of a day not yet anchored (a failure is logged; the next start tries again)."""
    try:
        daily(ctx)
    except Exception:
        log.exception("could not write the daily audit anchor")


# --- at start: a missing database with a recorded history ---------------------------------------------

def history_without_database(db_path: str, policy, aws_factory) -> str | None:
    """At `serve`/`socket` start: when the database file is missing (or empty) but the bucket's anchors show
    the trail had rows, the one-line reason to refuse starting; else None."""
    import os

    bucket = (getattr(policy, "audit", None) or {}).get("anchor_bucket")
    if not bucket:
        return None
    try:
        missing = os.stat(db_path).st_size == 0
    except FileNotFoundError:
        missing = True
    if not missing:
        return None
    try:
        anchor = newest_in_bucket(aws_factory(), bucket)
    except Exception as error:
        reason = getattr(error, "message", None) or repr(error)
        return (f"no database at {db_path} and the audit anchors in s3://{bucket} cannot be read ({reason}); "
                "restore the database, or start with --new-database to begin a new one")
    if anchor is None or not anchor.count:
        return None
    return (f"no database at {db_path}, but the audit anchors in s3://{bucket} show a trail of {anchor.count} rows "
            f"({anchor.describe()}); restore the database, or start with --new-database to begin a new one")
