"""A rollout's plan and progress (issue 23), as Block Kit: pure, from the data bot.services.rollout returns/stores.

The request's message shows the plan grouped by account with its totals ("12 groups, 140 instances, 5 accounts;
3 groups already current"), and once it runs each group's refresh: status, PercentageComplete, InstancesToUpdate,
and the status reason on failure. Sections only (no table block): a request message may carry other tables."""

from __future__ import annotations

from typing import Any

from bot.core.text import escape
from bot.render import blocks
from bot.services import rollout

MAX_LINES = 12  # per account section; the rest summed up
WORDS = {rollout.PINNED: "new template version, then a refresh", rollout.SSM: "refresh (its template resolves "
         "the SSM parameter; skip matching off)", rollout.MIXED: "new template versions (overrides kept), then a "
         "refresh", rollout.CURRENT: "already current", rollout.IN_PROGRESS: "skipped: a refresh is in progress",
         rollout.LAUNCH_CONFIGURATION: "not rolled", rollout.SKIPPED: "skipped by [rollout].skip_groups",
         rollout.NOT_SHARED: "not rolled: the new version is not shared with its account",
         rollout.UNKNOWN: "not rolled: unknown"}


def _progress_text(item: dict[str, Any]) -> str:
    status = item.get("status") or "?"
    if status == rollout.WAITING:  # not started yet: its turn comes as running groups end
        return f"Waiting ({item.get('running', '?')} of {item.get('limit', '?')} running)"
    text = escape(status)
    if item.get("percent") is not None:
        text += f" {item['percent']} %"
    if item.get("to_update") is not None:
        text += f", {item['to_update']} to update"
    if item.get("reason") and status not in ("Successful", "InProgress", "Pending"):
        text += f" — {escape(item['reason'])}"
    return text


def group_line(group: rollout.GroupPlan, progress: dict[str, Any] | None = None) -> str:
    counts = "?" if group.instances is None else str(group.instances)
    behind = "" if group.behind is None else f", {group.behind} behind"
    line = f"• `{escape(group.group)}` ({group.region}, {counts} instance{'s' if group.instances != 1 else ''}" \
           f"{behind}): {WORDS.get(group.method, escape(group.method))}"
    if group.reason:
        line += f" — {escape(group.reason)}"
    if progress:
        line += f"\n    ↳ {_progress_text(progress)}"
    return line


def plan_blocks(found: rollout.RolloutPlan, progress: dict[str, dict] | None = None) -> list[dict]:
    progress = progress or {}
    targets = ", ".join(f"{region}: {escape(t.get('name') or t['image_id'])} ({t['image_id']})"
                        for region, t in sorted(found.targets.items()))
    out = [blocks.section(f"*{escape(found.family)}* → {targets or 'no current version'}\n{found.totals()}")]
    for account, groups in found.by_account().items():
        lines = [group_line(group, progress.get(rollout.group_key(group))) for group in groups]
        shown = lines[:MAX_LINES]
        if len(lines) > MAX_LINES:
            shown.append(f"… and {len(lines) - MAX_LINES} more")
        title = f"*{escape(account)}*\n" if account else ""
        out.append(blocks.section(blocks.clip(title + "\n".join(shown), 2900)))
    for where, why in found.failures.items():
        out.append(blocks.context(f":warning: {escape(where)}: {escape(why)}"))
    return out


def rollout_details(details: dict[str, Any]) -> list[dict]:
    """A rollout request's details (bot/render/approvals.py's DETAIL_VIEWS)."""
    found = rollout.RolloutPlan.from_data(details["plan"])
    out = plan_blocks(found, details.get("progress") or {})
    options = details.get("options") or {}
    chosen = [f"{name} {value}" for name, value in (("--min-healthy", options.get("min_healthy")),
                                                    ("--warmup", options.get("warmup")),
                                                    ("--checkpoints", options.get("checkpoints"))) if value]
    if chosen:
        out.append(blocks.context("Options: " + ", ".join(escape(str(item)) for item in chosen)))
    if details.get("outcome"):
        out.append(blocks.context(f"Rollout {escape(details['outcome'])}."))
    return out


def status_message(found: list) -> dict:
    """`/ami rollout status`: each rollout (bot.services.rollout_watch.RolloutStatus) with its groups' refreshes."""
    if not found:
        return blocks.info("No rollout is running. `/ami rollout <family>` plans one.")
    out = []
    for item in found[:10]:
        state = "finished" if item.finished else "running"
        out.append(blocks.section(f"*{escape(item.family)}* — `{item.request_id}` ({state})"))
        lines = []
        for group in item.plan.to_roll:
            progress = item.progress.get(rollout.group_key(group)) or {}
            lines.append(f"• `{escape(group.group)}` ({escape(group.region)}): {_progress_text(progress)}")
        out.append(blocks.section(blocks.clip("\n".join(lines) or "no groups", 2900)))
    return blocks.fit(blocks.message("Rollouts", out))
