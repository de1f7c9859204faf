"""Messages for `/ami recycle-bin` and `/ami restore`: pure builders, data in, Block Kit out."""

from __future__ import annotations

import math
from datetime import datetime

from bot.render.blocks import Message, code, context, escape, header, message, mrkdwn_message, section, when
from bot.services.recycle_bin import IMAGE, SNAPSHOT, BinItem, RegionBin, Restored, RetentionRule

SHOWN_PER_REGION = 10


def _days_left(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "leaves the bin: unknown"
    days = math.ceil((moment - now).total_seconds() / 86400)  # 13.5 days left reads "in 14 days"
    left = "today" if days <= 0 else f"in {days} day{'s' if days != 1 else ''}"
    return f"leaves the bin {when(moment)} ({left})"


def _rule_line(rule: RetentionRule) -> str:
    what = "images" if rule.resource_type == IMAGE else "snapshots"
    days = f"{rule.days} days" if rule.days is not None else "retention unknown"
    lock = {"locked": ":lock: locked", "pending_unlock": "unlocking"}.get(rule.lock_state, "unlocked")
    status = "" if rule.status == "available" else f" · {escape(rule.status)}"
    return f"• {what}: {days} · {escape(rule.scope)} · {lock}{status} · {code(rule.id)}"


def _item_line(item: BinItem, now: datetime) -> str:
    name = f"*{escape(item.name)}* " if item.name and item.name != item.id else ""
    return f"• {name}{code(item.id)} · {_days_left(item.expires, now)}"


def region_blocks(found: RegionBin, now: datetime) -> list[dict]:
    lines = [f"*{found.region}*"]
    if found.rules is None:
        lines.append(f":grey_question: retention rules unknown: {escape(found.errors.get('rules', 'not read'))}")
    else:
        lines += [_rule_line(rule) for rule in found.rules] or ["no retention rules"]
        types = {rule.resource_type for rule in found.rules if rule.status == "available"}
        if IMAGE not in types:
            lines.append(":warning: no rule keeps images: deregistration is *irreversible* here "
                         "(`/ami recycle-bin enable` adds one, with approval).")
        elif SNAPSHOT not in types:
            lines.append(":warning: images are kept but their snapshots are not: a restored image could not "
                         "launch. `/ami recycle-bin enable` adds both.")
    if found.images is None:
        lines.append(f":grey_question: images in the bin unknown: {escape(found.errors.get('images', 'not read'))}")
    elif not found.images:
        lines.append("no images in the bin")
    else:
        lines.append(f"{len(found.images)} image{'s' if len(found.images) != 1 else ''} in the bin, "
                     "soonest to leave first:")
        lines += [_item_line(item, now) for item in found.images[:SHOWN_PER_REGION]]
        if len(found.images) > SHOWN_PER_REGION:
            lines.append(f"…and {len(found.images) - SHOWN_PER_REGION} more "
                         f"(`/ami recycle-bin --region {found.region}`)")
    if found.snapshots is None and "snapshots" in found.errors:
        lines.append(f":grey_question: snapshots in the bin unknown: {escape(found.errors['snapshots'])}")
    elif found.snapshots:
        lines.append(f"{len(found.snapshots)} snapshot(s) in the bin")
    return [section("\n".join(lines))]


def recycle_bin(bins: list[RegionBin], now: datetime) -> Message:
    blocks = [header("Recycle Bin")]
    for found in bins[:20]:
        blocks += region_blocks(found, now)
    blocks.append(context("Restore a deregistered image with `/ami restore <ami-id>` (its snapshots come back "
                          "too). Once an image leaves the bin it is gone for good."))
    images = sum(len(found.images or []) for found in bins)
    return message(f"Recycle Bin: {images} image(s) in {len(bins)} region(s)", blocks)


def enable_requested(request_id: str, channel: str, days: int, regions: list[str]) -> Message:
    body = (f"Asked for approval to keep deregistered images and their snapshots {days} days in "
            f"{', '.join(regions)}: `{request_id}` is in <#{channel}>.")
    return mrkdwn_message(body, [section(body)])


def enable_details(params: dict) -> list[dict]:
    scope = f"images tagged `{escape(params['tag'][0])}={escape(params['tag'][1])}`" if params.get("tag") \
        else "*every* image"
    return [section(f"Creates two Recycle Bin retention rules in each of {', '.join(params['regions'])}: "
                    f"{scope} and EBS snapshots{' with that tag' if params.get('tag') else ''} stay "
                    f"{params['days']} days after deregistration or deletion, restorable with `/ami restore`."),
            context("Kept snapshots are billed as usual for the retention period.")]


def enable_view(details: dict) -> list[dict]:
    """An enable request's details from its data (bot.services.recycle_bin.enable_details)."""
    return enable_details(details["params"])


def restored(result: Restored, user: str) -> Message:
    icon = ":recycle:" if result.ok else ":warning:"
    lines = [f"{icon} <@{user}> restored {code(result.image_id)} in {result.region}: image {escape(result.image)}."]
    if result.snapshots:
        lines += [f"• snapshot {code(snapshot)}: {escape(state)}" for snapshot, state in result.snapshots.items()]
    else:
        lines.append("No snapshots of it were in the bin (it had none, or they were kept or not covered).")
    if not result.ok:
        lines.append("Some parts were not restored; run `/ami restore` again, or restore them in the console.")
    text = f"Restored {result.image_id}" if result.ok else f"Restore of {result.image_id} was incomplete"
    return message(text, [section("\n".join(lines))])
