"""The digest's daily totals as text sparklines (pure): the Home tab and the daily digest show the same trend."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.services.dashboard import DayTotals

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """'▁▃▅█' scaled from the smallest to the largest value; a gap (unknown day) is '·'."""
    known = [value for value in values if value is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1
    return "".join("·" if value is None else SPARKS[round((value - low) / span * (len(SPARKS) - 1))]
                   for value in values)


def trend_lines(days: list[DayTotals]) -> list[str]:
    if not days:
        return []
    first, last = days[0].date, days[-1].date

    def row(label: str, values: list, fmt) -> str:
        known = [v for v in values if v is not None]
        latest = fmt(known[-1]) if known else "unknown"
        return f"`{sparkline(values) or '—':<30}` {label}: {latest}"

    return [f"Last {len(days)} digest(s), {first} → {last}:",
            row("stale images", [d.stale_images for d in days], str),
            row("orphaned snapshots", [d.orphaned_snapshots for d in days], str),
            row("monthly waste", [d.monthly_waste for d in days], lambda v: f"${v:,.2f}"),
            row("drifted instances", [d.drifted_instances for d in days], str)]

