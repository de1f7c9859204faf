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


@requires("ec2:DeleteSnapshot")
def delete_snapshots(ec2, snapshot_ids: list[str], on_deleted: Callable[[str], None] = lambda _: None) -> Deletion:
    """Delete each snapshot; one that is gone or in use (InvalidSnapshot.InUse) is skipped, not a failure."""
    result = Deletion()
    for snapshot_id in snapshot_ids:
        try:
            call(ec2, "delete_snapshot", resource=f"snapshot {snapshot_id}", SnapshotId=snapshot_id)
        except NotFound:
            result.skipped.append(f"{snapshot_id} (already gone)")
        except AwsError as error:
            if error.code == "InvalidSnapshot.InUse":
                result.skipped.append(f"{snapshot_id} (in use)")
            else:
                result.failed.append(f"{snapshot_id}: {error.message}")
        else:
            result.deleted.append(snapshot_id)
            on_deleted(snapshot_id)
    return result
