"""Deleting snapshots the way every cleanup should: one at a time, each outcome known."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bot.aws import call, requires
from bot.errors import AwsError, NotFound


@dataclass
class Deletion:
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "snap-… (why)": already gone, or in use
    failed: list[str] = field(default_factory=list)  # "snap-…: AWS's sentence"


DELETED, GONE, IN_USE, FAILED = "deleted", "already gone", "in use", "failed"


@requires("ec2:DeleteSnapshot")
def delete_snapshot(ec2, snapshot_id: str) -> tuple[str, str]:
    """Delete one snapshot: (DELETED | GONE | IN_USE | FAILED, what AWS said). Safe to repeat: a snapshot
    already gone is reported as GONE, which a resumed cleanup counts as done."""
    try:
        call(ec2, "delete_snapshot", resource=f"snapshot {snapshot_id}", SnapshotId=snapshot_id)
    except NotFound as error:
        return GONE, error.message
    except AwsError as error:
        if error.code == "InvalidSnapshot.InUse":
            return IN_USE, error.message
        return FAILED, error.message
    return DELETED, "deleted"


def delete_snapshots(ec2, snapshot_ids: list[str], on_deleted: Callable[[str], None] = lambda _: None) -> Deletion:
    """Delete each snapshot; one that is gone or in use (InvalidSnapshot.InUse) is skipped, not a failure."""
    result = Deletion()
    for snapshot_id in snapshot_ids:
        outcome, said = delete_snapshot(ec2, snapshot_id)
        if outcome == DELETED:
            result.deleted.append(snapshot_id)
            on_deleted(snapshot_id)
        elif outcome == FAILED:
            result.failed.append(f"{snapshot_id}: {said}")
        else:
            result.skipped.append(f"{snapshot_id} ({outcome})")
    return result
