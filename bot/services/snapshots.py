"""Deleting snapshots the way every cleanup should: one at a time, each outcome known and, for an approved
action, recorded as a durable step (bot/durable/steps.py) the moment AWS answers, so a restart knows which were done."""

from __future__ import annotations

from bot.aws.clients import call, requires
from bot.core.errors import AwsError, NotFound
from bot.durable.steps import DONE, SKIPPED, Step, Steps
from bot.durable.steps import FAILED as STEP_FAILED

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


def delete_step(ec2, steps: Steps, step: Step) -> Step:
    """Delete one planned snapshot and record what AWS said; a snapshot already gone counts as done."""
    outcome, said = delete_snapshot(ec2, step.target)
    if outcome == DELETED:
        return steps.mark(step, DONE, "deleted")
    if outcome == GONE:
        return steps.mark(step, DONE, "already gone")
    if outcome == IN_USE:
        return steps.mark(step, SKIPPED, "in use")
    return steps.mark(step, STEP_FAILED, said)


def deleted_phrase(step: Step) -> str:
    """A done delete_snapshot step, as a resumed action's report says it."""
    if step.result == "already gone":
        return f"{step.target} was already gone"
    return f"deleted {step.target} ({step.data.get('size_gb', '?')} GiB)"
