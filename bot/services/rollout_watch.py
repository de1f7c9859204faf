"""A rollout's refreshes followed to their end (issue 23), and `/ami rollout status|cancel|rollback`.

``watch`` is the durable job (``rollout.WATCH_JOB``, registered in bot/wiring.py) that polls each group's refresh
(bounded, backing off while nothing changes), keeps the request's message and thread up to date, reports each
checkpoint once, starts the next waiting groups as running ones end (``rollout.start_groups``: never more than
``[rollout].max_parallel_groups`` at once) and, once every group is terminal, says each outcome and the drift after —
once. ``status`` and ``stop`` (cancel, rollback) are for operators, without approval; a stop marks the groups still
waiting never to be started. The plan and starting refreshes are bot.services.rollout's (this module imports it,
never the other way round).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bot.core import authority, metrics
from bot.core.errors import AmibotError, AwsError, NotFound
from bot.core.text import escape
from bot.durable import audit, jobs
from bot.durable.steps import DONE, FAILED, PLANNED, Step, Steps, owners_with_open
from bot.durable.steps import SKIPPED as NOT_STARTED
from bot.services import approvals
from bot.services.drift import fleet_drift, retired_names
from bot.services.rollout import (
    FINISH_STEP,
    KIND,
    NEVER_STARTED,
    REFRESH_STEP,
    STARTERS,
    SUCCEEDED_REFRESH,
    TERMINAL,
    WAITING,
    WATCH_DEADLINE_SECONDS,
    WATCH_JOB,
    WATCH_MAX_POLL_SECONDS,
    WATCH_POLL_SECONDS,
    GroupPlan,
    RolloutPlan,
    audit_row,
    cancel_refresh,
    group_key,
    parallel_limit,
    refreshes,
    rollback_refresh,
    start_groups,
    stop_waiting,
    stored_plan,
    text_of,
)

# --- the watch: a durable job that follows every refresh of a rollout to its end --------------------------

def _read_status(ctx, group: GroupPlan, refresh_id: str) -> dict[str, Any]:
    handle = ctx.aws.of(group.account or None)
    item = next((item for item in refreshes(handle, group.region, group.group)
                 if item.get("InstanceRefreshId") == refresh_id), None)
    if item is None:
        return {"status": "Unknown", "reason": f"AWS no longer lists refresh {refresh_id}"}
    return {"status": text_of(item.get("Status")), "percent": item.get("PercentageComplete"),
            "to_update": item.get("InstancesToUpdate"), "reason": text_of(item.get("StatusReason"))}


def progress_of(ctx, request, found: RolloutPlan, steps: Steps) -> tuple[dict[str, dict], list[str]]:
    """Each group's refresh as AWS says it now (recorded on its step), and the changes worth a thread line."""
    changes = []
    progress: dict[str, dict] = {}
    groups = {group_key(group): group for group in found.to_roll}
    for step in steps.all():
        if step.action != REFRESH_STEP or step.target not in groups:
            continue
        group = groups[step.target]
        if step.state == FAILED:
            progress[step.target] = {"status": "NotStarted", "reason": step.result or ""}
            continue
        if step.state == NOT_STARTED:  # its turn never came: the rollout was cancelled or rolled back first
            progress[step.target] = {"status": "Cancelled", "reason": step.result or NEVER_STARTED}
            continue
        if step.state == PLANNED:
            progress[step.target] = {"status": "Starting" if step.data.get("attempted") else WAITING}
            continue
        known = {key: step.data.get(key) for key in ("status", "percent", "to_update", "reason")}
        if known.get("status") not in TERMINAL:
            try:
                now = _read_status(ctx, group, step.data["refresh_id"])
            except AwsError as error:
                now = {**known, "reason": f"could not be read: {error.message}"}
            with STARTERS:  # two watchers (a restart's and the old one's) say a change once
                stored = next((item for item in steps.all() if item.seq == step.seq), step)
                if now.get("status") != stored.data.get("status"):
                    line = f"*{escape(group.group)}*: {escape(now.get('status') or '?')}"
                    if now.get("percent") is not None:
                        line += f" ({now['percent']} %)"
                    if now.get("reason") and now.get("status") not in SUCCEEDED_REFRESH:
                        line += f" — {escape(now['reason'])}"
                    changes.append(line)
                steps.mark(step, DONE, step.result, **now)
            known = now
        progress[step.target] = {**known, "refresh_id": step.data.get("refresh_id")}
    running = sum(1 for item in progress.values() if item.get("status") not in (*TERMINAL, "NotStarted", WAITING))
    for item in progress.values():
        if item.get("status") == WAITING:  # a group not started yet: never shown as failed
            item.update(running=running, limit=parallel_limit(ctx))
    return progress, changes


def _minutes(seconds: Any) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"


def _claim_checkpoints(steps: Steps, progress: dict[str, dict], default: list[int]) -> list[tuple[Step, list[int]]]:
    """The checkpoints each refresh has newly reached, recorded as reported in the same breath (under the starters'
    lock: two watchers, a restart's and the old one's, claim each once)."""
    claimed = []
    with STARTERS:
        for step in steps.all():
            percent = (progress.get(step.target) or {}).get("percent")
            if step.action != REFRESH_STEP or step.state != DONE or not isinstance(percent, int | float):
                continue
            points = step.data.get("checkpoints", default) or []
            reported = list(step.data.get("checkpoints_reported") or [])
            reached = [point for point in points if point < 100 and point <= percent and point not in reported]
            if reached:
                steps.mark(step, step.state, step.result, checkpoints_reported=reported + reached)
                claimed.append((step, reached))
    return claimed


def _checkpoints(ctx, request, found: RolloutPlan, steps: Steps, progress: dict[str, dict]) -> list[str]:
    """Each group's checkpoints its refresh has reached since the last look: recorded on its step first (so each is
    reported once per group, across restarts too), audited (``rollout.checkpoint``), and a thread line each.
    AWS pauses there for CheckpointDelay by itself and goes on."""
    groups = {group_key(group): group for group in found.to_roll}
    options = request.params.get("options") or {}
    default = ctx.policy.rollout.checkpoints if options.get("checkpoints") is None else options["checkpoints"]
    lines = []
    for step, reached in _claim_checkpoints(steps, progress, default):
        item = progress[step.target]
        percent = item.get("percent")
        group = groups[step.target]
        delay = step.data.get("checkpoint_delay", ctx.policy.rollout.checkpoint_delay_seconds)
        pausing = item.get("status") == "InProgress" and "checkpoint" in (item.get("reason") or "").lower()
        for point in reached:
            audit_row(ctx, request, "rollout.checkpoint", f"{point} %", group=group.group, region=group.region,
                      account=group.account, refresh_id=step.data.get("refresh_id"), percent=percent)
            line = f"*{escape(group.group)}* reached the {point} % checkpoint"
            if pausing and point == reached[-1]:
                line += f"; goes on in {_minutes(delay)}"
            lines.append(line)
    return lines


def watch(ctx, payload: dict) -> None:
    """Poll the rollout's refreshes (bounded, backing off while nothing changes), keep the request's message and
    thread up to date, and once every group is terminal say each one's outcome and the family's drift — once."""
    request = approvals.get(ctx, payload["request_id"])
    steps = Steps(ctx.store, f"request:{request.id}")
    found = stored_plan(request)
    first = getattr(ctx.waits, "rollout_poll_seconds", WATCH_POLL_SECONDS)
    poll = first
    deadline = time.monotonic() + WATCH_DEADLINE_SECONDS
    last: dict | None = None
    while True:
        finish = next((step for step in steps.all() if step.action == FINISH_STEP), None)
        if finish is None or finish.state != PLANNED:
            return
        progress, changes = progress_of(ctx, request, found, steps)
        changes += _checkpoints(ctx, request, found, steps, progress)
        if any(item.get("status") == WAITING for item in progress.values()):
            with approvals.acting_for(ctx, request):  # only the accounts it was approved for
                started = start_groups(ctx, request, report_waiting=False)
            if started:
                changes += [escape(phrase) for phrase in started]
                progress, more = progress_of(ctx, request, found, steps)
                changes += more
        if progress != last:
            request = approvals.update_details(ctx, request.id, {**request.details, "progress": progress})
            last = progress
            poll = first
        else:
            poll = min(poll * 1.5, max(first, WATCH_MAX_POLL_SECONDS))
        for line in changes:
            approvals.say(ctx, request.id, ":arrows_counterclockwise: " + line)
        if progress and all(item.get("status") in (*TERMINAL, "NotStarted") for item in progress.values()):
            _finish(ctx, request, found, progress, steps, finish)
            return
        if time.monotonic() > deadline:
            days = WATCH_DEADLINE_SECONDS / 86400
            approvals.say(ctx, request.id, f":hourglass: Stopped watching this rollout after {days:.0f} days.")
            return
        time.sleep(poll)


def _claim(ctx, steps: Steps, finish: Step) -> bool:
    """The finish step, planned → done in one statement: two watchers (a restart's) finish a rollout once."""
    return steps.claim(finish, DONE, "finished")


def _finish(ctx, request, found: RolloutPlan, progress: dict[str, dict], steps: Steps, finish: Step) -> None:
    if not _claim(ctx, steps, finish):
        return
    groups = {group_key(group): group for group in found.to_roll}
    lines, replaced, ok = [], 0, True
    for key, item in progress.items():
        group = groups[key]
        status = item.get("status") or "?"
        good = status in SUCCEEDED_REFRESH
        ok = ok and good
        replaced += (group.behind or 0) if good else 0
        where = f"{group.account_label}, {group.region}" if group.account_label else group.region
        icon = ":white_check_mark:" if good else (":heavy_minus_sign:" if item.get("reason") == NEVER_STARTED
                                                  else ":x:")
        line = f"{icon} *{escape(group.group)}* ({escape(where)}): {escape(status)}"
        if item.get("reason") and not good:
            line += f" — {escape(item['reason'])}"
        lines.append(line)
    family = found.family
    try:
        drift = fleet_drift(ctx.aws, ctx.policy.digest.family_tag, ctx.clock(), family, retired_names(ctx.store))
        mine = [item for item in drift.families if item.family == family]
        behind = sum(item.drifted for item in mine)
        total = behind + sum(item.on_current for item in mine)
        version = ", ".join(sorted({t.get("version") or t.get("image_id", "") for t in found.targets.values()}))
        lines.append(f"Drift after: {escape(family)}: {behind} of {total} instance{'s' if total != 1 else ''} "
                     f"behind {escape(family)}-{escape(version)}.")
    except AmibotError as error:
        lines.append(f"Drift after: unknown ({escape(error.message)}).")
    statuses = {item.get("status") for item in progress.values()}
    outcome = "succeeded" if ok else ("cancelled" if statuses <= {"Cancelled", *SUCCEEDED_REFRESH} else "failed")
    approvals.say(ctx, request.id, f"*Rollout {outcome}.*\n" + "\n".join(lines))
    request = approvals.get(ctx, request.id)
    approvals.update_details(ctx, request.id, {**request.details, "progress": progress, "outcome": outcome})
    metrics.rollout_counted(ctx, outcome, replaced)
    audit_row(ctx, request, "rollout.finish", outcome,
              groups={key: item.get("status") for key, item in progress.items()})


# --- status, cancel, rollback: operators, no approval (they stop or undo a change), audited -------------------

REQUEST_ID = "req-"


def find_rollout(ctx, which: str) -> approvals.Request:
    """A rollout request by its id, or the newest approved one of a family. Raises NotFound."""
    if which.startswith(REQUEST_ID):
        request = approvals.get(ctx, which)
        if request.kind != KIND:
            raise NotFound(f"{which} is not a rollout")
        return request
    mine = [request_id for request_id, params in approvals.params_of(ctx.store, KIND)
            if params.get("family") == which]
    for request_id in reversed(mine):
        request = approvals.get(ctx, request_id)
        if Steps(ctx.store, f"request:{request.id}").all():
            return request
    raise NotFound(f"no rollout of {which} has started")


def running(ctx) -> list[approvals.Request]:
    """Rollouts whose end has not been seen yet, oldest first."""
    owners = [owner.removeprefix("request:") for owner in owners_with_open(ctx.store, FINISH_STEP, "request:")]
    return [approvals.get(ctx, owner) for owner in owners]


@dataclass
class RolloutStatus:
    request_id: str
    family: str
    plan: RolloutPlan
    progress: dict[str, dict]
    finished: bool


def status(ctx, which: str | None = None) -> list[RolloutStatus]:
    """The named rollout (id or family), or every one still running: each group's refresh as AWS says it now."""
    chosen = [find_rollout(ctx, which)] if which else running(ctx)
    found = []
    for request in chosen:
        steps = Steps(ctx.store, f"request:{request.id}")
        progress, _ = progress_of(ctx, request, stored_plan(request), steps)
        done = any(step.action == FINISH_STEP and step.state != PLANNED for step in steps.all())
        found.append(RolloutStatus(request.id, request.params.get("family", ""), stored_plan(request), progress,
                                   done))
    return found


def stop(ctx, which: str, user: str, undo: bool) -> tuple[approvals.Request, list[str]]:
    """Cancel (or, `undo`, roll back) the rollout's refreshes still in progress, in each group's account once its
    operators allow `user` (bot.core.authority). What was done per group, as phrases; audited and said in the
    request's thread."""
    request = find_rollout(ctx, which)
    steps = Steps(ctx.store, f"request:{request.id}")
    found = stored_plan(request)
    groups = {group_key(group): group for group in found.to_roll}
    verb = "rollback" if undo else "cancel"
    said = []
    stopped = stop_waiting(ctx, request)  # first: a slot freed by the cancel below must not start them
    for group in stopped:
        said.append(f"{group.group}: waiting, will not be started")
        audit.record(ctx.store, actor=user, action=f"rollout.{verb}", channel=request.channel, target=request.id,
                     outcome="not started", detail={"family": found.family, "group": group.group,
                                                    "region": group.region, "account": group.account})
    waited = {group_key(group) for group in stopped}
    progress, _ = progress_of(ctx, request, found, steps)
    for key, item in progress.items():
        group = groups[key]
        if key in waited:
            continue
        if item.get("status") in (*TERMINAL, "NotStarted", "Starting"):
            said.append(f"{group.group}: {item.get('status')}, nothing to {verb}")
            continue
        handle = authority.authorize(ctx, group.account or None, f"/ami rollout {verb}")
        try:
            refresh_id = (rollback_refresh if undo else cancel_refresh)(handle, group.region, group.group)
        except AwsError as error:
            said.append(f"{group.group}: could not {verb} ({error.message})")
            continue
        said.append(f"{group.group}: {'rolling back' if undo else 'cancelling'} refresh {refresh_id}")
        audit.record(ctx.store, actor=user, action=f"rollout.{verb}", channel=request.channel, target=request.id,
                     outcome=f"{verb} {refresh_id}", detail={"family": found.family, "group": group.group,
                                                             "region": group.region, "account": group.account})
    approvals.say(ctx, request.id, f":octagonal_sign: <@{user}> asked to {verb} this rollout: "
                                   + escape("; ".join(said)) + ".")
    watching = jobs.is_active(ctx.store, WATCH_JOB, {"request_id": request.id})
    if not watching and not any(step.action == FINISH_STEP and step.state != PLANNED for step in steps.all()):
        ctx.jobs.submit(WATCH_JOB, {"request_id": request.id})  # the end is reported once, as always
    return request, said
