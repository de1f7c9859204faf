"""A bake's message (updated in place while the run goes on), `/ami bakes`, and the promotion request's details.

Pure: data from bot/services/bake.py in, Block Kit out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.render.blocks import Message, actions, age, button, code, context, escape, header, message, section

PROMOTE_ACTION = "bake.promote"  # the Promote button of a bake with promote = "manual"
ICONS = {"starting": ":hourglass_flowing_sand:", "running": ":gear:", "succeeded": ":white_check_mark:",
         "failed": ":x:", "cancelled": ":no_entry_sign:", "cancelling": ":no_entry_sign:", "overdue": ":hourglass:"}


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def bake_message(view: dict[str, Any]) -> Message:
    """The one message of a bake. `view`: the bake's record plus state, status, history (AWS's statuses in order),
    steps (Automation's (name, state)), elapsed, link, and the outcome (images, failure, request, note)."""
    state = view.get("state", "running")
    family, bake_id = view["family"], view["id"]
    title = {"starting": "starting", "running": "running", "succeeded": "done", "failed": "FAILED",
             "cancelled": "cancelled", "cancelling": "cancelling", "overdue": "still running"}.get(state, state)
    who = "the schedule" if view.get("scheduled") else f"<@{view['user']}>"
    lines = [f"{ICONS.get(state, ':gear:')} *Bake of {escape(family)} {escape(view.get('version') or '')}* — "
             f"{title}", f"*What runs:* {escape(view.get('what') or '')}",
             f"*Where:* {escape(view.get('account_label') or '')}{', ' if view.get('account_label') else ''}"
             f"{escape(view['region'])} · started by {who}"]
    history = view.get("history") or []
    if history:
        lines.append("*Stages:* " + " → ".join(escape(status) for status in history))
    for name, step_state in view.get("steps") or []:
        lines.append(f"• {escape(name)}: {escape(step_state)}")
    blocks = [section("\n".join(lines))]
    if state == "failed":
        failed = view.get("failed_step") or (history[-2] if len(history) > 1 else view.get("status") or "")
        said = view.get("failure") or "AWS gave no reason"
        text = f":x: Failed at *{escape(failed)}*: {escape(said)}" if failed else f":x: Failed: {escape(said)}"
        text += "\nNothing joined the family."
        for partial in view.get("partial") or []:
            text += f"\nAWS left {code(partial)} behind; `/ami deregister {escape(partial)}` cleans it up."
        blocks.append(section(text))
    if state == "cancelled":
        blocks.append(section(f":no_entry_sign: Cancelled by <@{view.get('cancelled_by', '')}>: stopped "
                              f"{escape(view.get('stopped') or 'the run')}. Nothing joined the family."))
    if state == "overdue":
        blocks.append(section(f":hourglass: Still running after {_elapsed(view.get('elapsed'))}; amibot stopped "
                              "watching it (the run goes on in AWS). `/ami bakes` lists it; check the console."))
    images = view.get("images") or {}
    if images:
        made = ", ".join(f"{code(image)} ({escape(region)})" for region, image in sorted(images.items()))
        blocks.append(section(f":package: {escape(family)} *{escape(view.get('version') or '')}*: {made}"))
    for note in view.get("notes") or []:
        blocks.append(context(f":warning: {escape(note)}"))
    if view.get("request"):
        blocks.append(context(f"Promotion request `{escape(view['request'])}` asks for approval."))
    if view.get("manual") and images:
        blocks.append(context(f"promote = \"manual\": an operator makes {escape(view.get('version') or '')} current "
                              "with the button (as `/ami promote` does, in every region above)."))
        blocks.append(actions(button("Promote", PROMOTE_ACTION, bake_id, style="primary")))
    foot = [f"`{escape(bake_id)}`"]
    if view.get("elapsed") is not None:
        foot.append(f"elapsed {_elapsed(view.get('elapsed'))}")
    if view.get("link"):
        foot.append(f"<{view['link']}|AWS console>")
    if state in ("starting", "running"):
        foot.append(f"`/ami bake cancel {escape(bake_id)}` stops it")
    blocks.append(context(" · ".join(foot)))
    return message(f"Bake of {family} {view.get('version') or ''}: {title}", blocks)


def bakes_list(runs: list[dict[str, Any]], scheduled: list[dict[str, Any]], now: datetime,
               family: str | None = None) -> Message:
    """`/ami bakes`: running and recent bakes, then each configured bake's next scheduled run."""
    blocks = [header(f"Bakes{' of ' + family if family else ''}")]
    if runs:
        lines = []
        for run in runs:
            started = datetime.fromisoformat(run["started_at"]) if run.get("started_at") else None
            who = "schedule" if run.get("scheduled") else f"<@{run.get('user', '')}>"
            result = f" → {escape(run['result'])}" if run.get("result") else ""
            lines.append(f"{ICONS.get(run['state'], ':gear:')} `{escape(run['id'])}` {escape(run['family'])} "
                         f"*{escape(run['state'])}* · {escape(run.get('what') or '')}{result} · {who}, "
                         f"{age(started, now)}")
        blocks.append(section("\n".join(lines)[:2900]))
    else:
        blocks.append(section("No bakes yet. `/ami bake <family>` starts one."))
    if scheduled:
        lines = []
        for entry in scheduled:
            when = entry.get("next")
            lines.append(f"• {escape(entry['family'])} ({escape(entry['mechanism'])}, {escape(entry['region'])}): "
                         + (f"next {escape(when)}" if when else "on demand only"))
        blocks.append(section("*Configured:*\n" + "\n".join(lines)))
    else:
        blocks.append(context("No [[bakes]] are configured (docs/baking.md)."))
    return message("Bakes", blocks)


def _findings(found: dict | None) -> str:
    """Inspector's verdict in one line: counts, "scan pending" until it has scanned the image, or unknown."""
    if not found:
        return "Inspector: not checked"
    if found.get("state") == "pending":
        return "Inspector: scan pending"
    if found.get("state") == "unknown":
        return "Inspector: unknown"
    if found.get("state") == "none reported":
        return "Inspector: no findings reported"
    return f"Inspector: {found.get('critical', 0)} critical, {found.get('high', 0)} high"


def promotion_details(details: dict[str, Any]) -> list[dict]:
    """The promotion request's body: the new version beside the current one."""
    now = datetime.fromisoformat(details["now"]) if details.get("now") else None

    def column(title: str, image: dict | None) -> str:
        if not image:
            return f"*{title}*\n(none promoted yet)"
        created = datetime.fromisoformat(image["created"]) if image.get("created") else None
        size = f"{image['size_gb']} GB" if image.get("size_gb") else "size unknown"
        return (f"*{title}*\n{escape(image.get('version') or '(no version)')} · {code(image.get('id', ''))}\n"
                f"{age(created, now) if now else ''} old · {size}\n{_findings(image.get('findings'))}")

    blocks = [section(f"*Baked by* `{escape(details.get('bake', ''))}` from {escape(details.get('what', ''))}",
                      fields=[column("New", details.get("new")), column("Current", details.get("current"))])]
    blocks.append(context(f"Allowed AMIs: {escape(details.get('allowed') or 'not checked')}"))
    lineage = f"source image {code(details['source_image'])}" if details.get("source_image") else "no source image"
    blocks.append(context(f"Exists in {escape(', '.join(details.get('regions') or []))} · {lineage}"))
    for note in details.get("notes") or []:
        blocks.append(context(f":warning: {escape(note)}"))
    return blocks
