"""The digest's fleet-health blocks: leaving the Recycle Bin soon, drift, vulnerable and in use, Allowed AMIs
warnings, and the 30-day trend (pure builders)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from bot.render.blocks import code, context, escape, section, when
from bot.render.drift import rollout_hint
from bot.render.trend import trend_lines

if TYPE_CHECKING:  # annotations only (the command-line digest imports this; keep it light)
    from bot.services.dashboard import DayTotals
    from bot.services.fleet_health import FleetHealth

SHOWN = 8


def _expiring_lines(health: FleetHealth, now: datetime) -> list[str]:
    soon = [(region.label, item) for region in health.regions for item in region.expiring or []]
    if not soon:
        return []
    soon.sort(key=lambda pair: pair[1].expires)
    lines = [f":recycle: *Leaving the Recycle Bin for good within 7 days* ({len(soon)}):"]
    for region, item in soon[:SHOWN]:
        days = max(0, math.ceil((item.expires - now).total_seconds() / 86400))
        lines.append(f"• {escape(item.name or item.id)} {code(item.id)} · {region} · {when(item.expires)} "
                     f"(in {days} day{'s' if days != 1 else ''}) — `/ami restore {item.id}` to keep it")
    if len(soon) > SHOWN:
        lines.append(f"…and {len(soon) - SHOWN} more: `/ami recycle-bin`")
    return lines


def _drift_lines(health: FleetHealth) -> list[str]:
    families = [(family.region, family) for family in (health.drift.families if health.drift else [])
                if family.drifted]
    if not families:
        return [":white_check_mark: *Drift:* every instance runs its family's current version."] \
            if health.drifted == 0 else []
    families.sort(key=lambda pair: -pair[1].drifted)
    lines = [f":twisted_rightwards_arrows: *Drift:* {health.drifted} instance(s) not on their family's current "
             "version, the worst first:"]
    for region, family in families[:SHOWN]:
        on = family.current.name or family.current.id if family.current else "no current version"
        hint = rollout_hint(family.family, family.groups_behind)  # Auto Scaling groups run another version
        lines.append(f"• *{escape(family.family)}* ({region}): {family.drifted} behind current {escape(on)}, "
                     f"{family.on_current} on it" + (f" — {hint}" if hint else ""))
    if len(families) > SHOWN:
        lines.append(f"…and {len(families) - SHOWN} more families: `/ami drift`")
    return lines


def _vulnerable_lines(health: FleetHealth) -> list[str]:
    items = [(region.label, item) for region in health.regions for item in region.vulnerable_in_use or []]
    if not items:
        return []
    lines = [f":red_circle: *Vulnerable and in use* ({len(items)}): images with critical findings that instances "
             "run or that are a family's current version:"]
    for region, item in items[:SHOWN]:
        current = " · *current version*" if item.current else ""
        lines.append(f"• {escape(item.name or item.image_id)} {code(item.image_id)} · {region} · {item.critical} "
                     f"critical · {item.instances} instance(s){current}")
    if len(items) > SHOWN:
        lines.append(f"…and {len(items) - SHOWN} more: `/ami show <ami-id>` for each")
    return lines


def _blocked_lines(health: FleetHealth) -> list[str]:
    blocked = [(region.label, item) for region in health.regions for item in region.blocked_currents or []]
    return [f":no_entry: *Allowed AMIs would block* {escape(item.family)}'s current version "
            f"{escape(item.name or item.image_id)} {code(item.image_id)} in {region}: {escape(item.reason)}"
            for region, item in blocked[:SHOWN]]


def _notes(health: FleetHealth) -> list[str]:
    """What could not be checked, per region; across many accounts the same note (an endpoint without Inspector,
    say) is said once with where it applies, so a hundred account-regions still fit one line."""
    if len({region.account.id for region in health.regions}) <= 1:
        return [f"{escape(region.label)}: {escape(note)}" for region in health.regions for note in region.notes]
    where: dict[str, list[str]] = {}
    for region in health.regions:
        for note in region.notes:
            where.setdefault(note, []).append(region.label)
    return [f"{escape(note)} ({escape('; '.join(labels)) if len(labels) <= 3 else f'{len(labels)} account-regions'})"
            for note, labels in where.items()]


def health_blocks(health: FleetHealth | None, trend: list[DayTotals], now: datetime) -> list[dict]:
    """At most four blocks, each within Slack's section limit."""
    if health is None:
        return []
    blocks = []
    parts = (_expiring_lines(health, now), _drift_lines(health), _vulnerable_lines(health) + _blocked_lines(health))
    for lines in parts:
        if lines:
            blocks.append(section("\n".join(lines)[:2900]))
    trend_text = trend_lines(trend)
    if len(trend) >= 2:
        blocks.append(section("*Trend*\n" + "\n".join(trend_text)[:2900]))
    held = sum(region.held_snapshots for region in health.regions)
    if held:
        blocks.append(context(f":recycle: {held} snapshot(s) of images now in the Recycle Bin are not listed as "
                              "orphaned: restoring those images needs them."))
    notes = _notes(health)
    if notes:
        blocks.append(context(("Not fully checked — " + "; ".join(notes))[:2900]))
    return blocks
