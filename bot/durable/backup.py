"""Backups: an online, consistent copy of the database to a file or to S3, by hand or once a day.

``amibot backup DEST`` and the daily backup (``[backup].destination``, at ``[backup].at`` UTC) both copy with
SQLite's backup API (``Store.backup``: one read transaction, writers carry on), then, for ``s3://bucket/key``,
upload the copy. The daily one is claimed once per UTC day in SQLite (``backup_days``), like the digest and the
audit anchor: a restart, or two processes sharing the file, back up once. A failed backup gives its claim back,
so the next start or the next day tries again. Restoring is putting such a copy at ``AMIBOT_DB`` while amibot is
stopped (docs/operations.md); ``amibot audit verify --anchor`` checks it against the anchor a backup printed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.aws.clients import call, requires
from bot.durable import anchors

if TYPE_CHECKING:
    from bot.durable.store import Store

log = logging.getLogger(__name__)

S3 = "s3://"
# The bucket of [backup].destination (bot/iam_policy.py fills it in from the policy file, or a parameter).
BACKUP_OBJECTS = "arn:{partition}:s3:::{backup_bucket}/*"


class BackupError(Exception):
    """A destination amibot cannot write to, said in one sentence."""


@dataclass(frozen=True)
class Done:
    destination: str  # where the copy went (the date filled in)
    anchor: anchors.Anchor  # the audit trail's state in the copy: `audit verify --anchor COUNT:HASH` on a restore
    size: int  # bytes

    def line(self) -> str:
        return (f"backed up to {self.destination} ({self.size:,} bytes, audit trail {self.anchor.count} rows, "
                f"anchor {self.anchor.count}:{self.anchor.head})")


def split_s3(destination: str) -> tuple[str, str]:
    """s3://bucket/key → (bucket, key); BackupError when either is missing."""
    bucket, _, key = destination.removeprefix(S3).partition("/")
    if not bucket or not key or key.endswith("/"):
        raise BackupError(f"expected s3://BUCKET/KEY (a key, not a prefix), got {destination!r}")
    return bucket, key


def fill(destination: str, now: datetime) -> str:
    """The destination with ``{date}`` replaced by the UTC day (YYYY-MM-DD), so each day keeps its own copy."""
    return destination.replace("{date}", now.strftime("%Y-%m-%d"))


def run(store: Store, destination: str, aws_factory=None) -> Done:
    """Copy the database to ``destination``: a file path, or s3://bucket/key (``aws_factory()`` gives the Aws to
    upload with). The anchor is read from the copy itself, so it describes exactly what was backed up."""
    from bot.durable.store import Store

    if destination.startswith(S3):
        bucket, key = split_s3(destination)
        with tempfile.TemporaryDirectory(prefix="amibot-backup-") as folder:
            copy = Path(folder) / "amibot.db"
            store.backup(copy)
            done = _described(Store(copy, create=False), destination)
            upload(aws_factory(), bucket, key, copy)
            return done
    target = Path(destination)
    if target.resolve() in {Path(f"{store.path}{suffix}").resolve() for suffix in ("", "-wal", "-shm")}:
        raise BackupError(f"{destination} is the database itself: give another file")
    if target.is_dir():
        raise BackupError(f"{destination} is a directory: give the backup's file name")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} does not exist")
    try:
        store.backup(target)
    except OSError as error:
        raise BackupError(f"cannot write {destination}: {error.strerror or error}") from None
    return _described(Store(target, create=False), destination)


def _described(copy: Store, destination: str) -> Done:
    try:
        return Done(destination, anchors.current(copy), os.path.getsize(copy.path))
    finally:
        copy.close()


@requires("s3:PutObject", resource=BACKUP_OBJECTS)
def upload(aws, bucket: str, key: str, path: Path) -> None:
    """Put the copy at s3://bucket/key (one PUT: up to 5 GB, far more than amibot's database grows to)."""
    with open(path, "rb") as body:
        call(aws.client("s3"), "put_object", resource=f"s3://{bucket}/{key}", Bucket=bucket, Key=key, Body=body,
             ContentType="application/vnd.sqlite3")


# --- the daily backup ----------------------------------------------------------------------------------------

def configured(policy) -> bool:
    return bool((getattr(policy, "backup", None) or {}).get("destination"))


def daily_time(policy) -> tuple[int, int]:
    hour, minute = policy.backup.at.split(":")
    return int(hour), int(minute)


def daily(ctx, now: datetime | None = None) -> str | None:
    """Today's backup, claimed once per UTC day in SQLite; what happened, or None when another run has it."""
    if not configured(ctx.policy):
        return None
    now = now or ctx.clock()
    day = now.strftime("%Y-%m-%d")
    destination = fill(ctx.policy.backup.destination, now)
    # Raw SQL on purpose: the date's primary key makes this one INSERT the once-a-day claim, across processes.
    claimed = ctx.store.execute("INSERT OR IGNORE INTO backup_days (date, claimed_at, destination) VALUES (?, ?, ?)",
                                (day, now.strftime("%Y-%m-%dT%H:%M:%SZ"), destination)).rowcount
    if not claimed:
        return None
    try:
        done = run(ctx.store, destination, lambda: ctx.aws.home)
    except Exception as error:
        reason = getattr(error, "message", None) or str(error) or type(error).__name__
        log.error("the daily backup to %s failed: %s (tried again at the next start or tomorrow)", destination,
                  reason)
        ctx.store.db["backup_days"].delete(day)  # give the claim back
        return f"failed: {reason}"
    ctx.store.db["backup_days"].update(day, {"finished_at": ctx.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                                             "outcome": "ok"})
    log.info("daily %s", done.line())
    return done.line()


def daily_at_start(ctx) -> None:
    """At start: today's backup when its time has passed and no process has made it (a failure is logged)."""
    if not configured(ctx.policy):
        return
    now = ctx.clock()
    hour, minute = daily_time(ctx.policy)
    if (now.hour, now.minute) < (hour, minute):
        return
    try:
        daily(ctx, now)
    except Exception:
        log.exception("could not make the daily backup")
