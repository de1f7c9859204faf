"""The digest as a Slack message, a CSV file, JSON and a terminal table: pure, findings in, text out.

The Slack message always fits (≤ 50 blocks, ≤ 3,000 characters a section, button values ≤ 2,000):
totals per region first, then the costliest stale images (each with "Request deregistration" and
"Snooze 30 days"), then per region the costliest orphaned snapshots with one "Request cleanup" for
the listed set, then "and N more" — the full list goes into the CSV attached to the message.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from bot.blocks import (
    MAX_BLOCKS,
    MAX_SECTION,
    Message,
    actions,
    button,
    code,
    confirm_dialog,
    context,
    divider,
    escape,
    header,
    message,
    money,
    plural,
    section,
    when,
)
from bot.render.fleet_health import health_blocks
from bot.services.staleness import SNOOZE_DAYS, Findings, OrphanSnapshot, RegionFindings, StaleImage

DEREGISTER = "digest.deregister"
SNOOZE = "digest.snooze"
CLEANUP = "digest.cleanup"

MAX_IMAGES = 20  # listed images; each takes two blocks (the line and its buttons)
MAX_ORPHANS_PER_REGION = 25  # listed orphaned snapshots per region (and in its cleanup button's value)
MAX_BUTTON_VALUE = 2000
CSV_FIELDS = ["kind", "region", "id", "name", "family", "state", "created", "age_days", "size_gb",
              "monthly_cost_usd", "image_id", "note"]


@dataclass
class Rendered:
    message: Message
    more: int  # items not listed in the message (they are in the CSV)
    shown_images: list[StaleImage]
    shown_orphans: dict[str, list[OrphanSnapshot]]


# --- Slack --------------------------------------------------------------------------------------------

def image_line(item: StaleImage, critical: int = 0) -> str:
    image = item.image
    family = f" · family *{escape(image.family)}*" if image.family and image.family != image.name else ""
    disabled = " · :no_entry_sign: _disabled, ready to deregister_" if item.disabled else ""
    vulnerable = f" · :red_circle: {critical} critical finding{'s' if critical != 1 else ''}" if critical else ""
    return (f"*{escape(image.name or '(no name)')}* {code(image.id)} · {image.region} · {item.age_days:,} days old · "
            f"{item.size_gb:,} GiB · *{money(item.monthly_cost)}/month*{family}{disabled}{vulnerable}")


def image_blocks(item: StaleImage, critical: int = 0) -> list[dict]:
    value = f"{item.image.region}:{item.image.id}"
    return [section(image_line(item, critical)),
            actions(button("Request deregistration", DEREGISTER, value),
                    button(f"Snooze {SNOOZE_DAYS} days", SNOOZE, value),
                    block_id=f"digest:{item.image.id}")]


def orphan_line(item: OrphanSnapshot) -> str:
    age = f" · {item.age_days:,} days old" if item.age_days is not None else ""
    return (f"{code(item.snapshot.id)} · {item.snapshot.size_gb:,} GiB · {money(item.monthly_cost)}/month{age}"
            f" · made for {code(item.snapshot.ami_id)}, which is gone")


def listed_orphans(region: RegionFindings) -> list[OrphanSnapshot]:
    """The costliest orphans that fit one section and one button value."""
    listed: list[OrphanSnapshot] = []
    length = len(orphans_title(region)) + 1
    value = len(region.region) + 1
    for item in region.orphans[:MAX_ORPHANS_PER_REGION]:
        line = len(orphan_line(item)) + 1
        if length + line > MAX_SECTION or value + len(item.snapshot.id) + 1 > MAX_BUTTON_VALUE:
            break
        listed.append(item)
        length += line
        value += len(item.snapshot.id) + 1
    return listed


def orphans_title(region: RegionFindings) -> str:
    return (f"*Orphaned snapshots in {region.region}* — {plural(len(region.orphans), 'snapshot')}, "
            f"{region.orphan_gb:,} GiB, {money(sum(o.monthly_cost for o in region.orphans))}/month:")


def orphan_blocks(region: RegionFindings, listed: list[OrphanSnapshot]) -> list[dict]:
    ids = [item.snapshot.id for item in listed]
    size = sum(item.snapshot.size_gb for item in listed)
    label = "Request cleanup" if len(listed) == len(region.orphans) else f"Request cleanup of these {len(listed)}"
    confirm = confirm_dialog("Request snapshot cleanup",
                             f"Ask for approval to delete {plural(len(ids), 'snapshot')} ({size:,} GiB) in "
                             f"{region.region}?", confirm="Request")
    return [section("\n".join([orphans_title(region), *(orphan_line(item) for item in listed)])),
            actions(button(label, CLEANUP, f"{region.region}:{','.join(ids)}", confirm=confirm),
                    block_id=f"digest:cleanup:{region.region}")]


def region_line(region: RegionFindings) -> str:
    if region.error:
        return f":warning: *{region.region}*: not checked — {escape(region.error)}"
    if not (region.stale or region.orphans):
        return f":white_check_mark: *{region.region}*: all clean ({plural(region.images_seen, 'image')} checked)"
    return (f"• *{region.region}*: {plural(len(region.stale), 'stale image')} ({region.stale_gb:,} GiB), "
            f"{plural(len(region.orphans), 'orphaned snapshot')} ({region.orphan_gb:,} GiB) — "
            f"*{money(region.monthly_cost)}/month*")


def rules_line(findings: Findings) -> str:
    rules = findings.rules
    return (f"Stale: older than {rules.stale_after_days} days, not among the {rules.keep_latest} newest of its family, "
            f"not used by an instance, launch template or launch configuration, not snoozed. "
            f"Priced at {money(rules.price_per_gb_month)} per GB-month (an upper bound: EBS bills stored blocks).")


def chunked_sections(lines: list[str]) -> list[dict]:
    sections, chunk = [], []
    for line in lines:
        if chunk and sum(len(item) + 1 for item in chunk) + len(line) > MAX_SECTION:
            sections.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        sections.append(section("\n".join(chunk)))
    return sections


def digest_message(findings: Findings, day: str) -> Rendered:
    title = f"AMI digest for {day}"
    checked = [region for region in findings.regions if not region.error]
    if not checked:
        lines = [f"*{title}* — :warning: no region could be checked, so nothing is known to be clean:"]
        lines += [region_line(region) for region in findings.regions]
        return Rendered(message(f"{title}: no region could be checked", chunked_sections(lines)), 0, [], {})
    health = health_blocks(findings.health, findings.trend, findings.generated_at)
    if findings.clean:
        seen = sum(region.images_seen for region in checked)
        where = ", ".join(region.region for region in checked) or "no region"
        text = (f":sparkles: All clean: no stale images and no orphaned snapshots in {where} "
                f"({plural(seen, 'image')} checked).")
        blocks = [section(f"*{title}* — {text}")]
        blocks += [context(region_line(region)) for region in findings.failures[:5]]
        blocks += health
        return Rendered(message(f"{title}: all clean", blocks), 0, [], {})
    stale, orphans = findings.stale, findings.orphans
    critical = findings.health.critical_stale if findings.health is not None else {}
    if critical:  # images with critical findings first, then as before (costliest first)
        stale = sorted(stale, key=lambda item: item.image.id not in critical)
    summary = (f"*{plural(len(stale), 'stale image')}* ({sum(i.size_gb for i in stale):,} GiB) and "
               f"*{plural(len(orphans), 'orphaned snapshot')}* ({sum(o.snapshot.size_gb for o in orphans):,} GiB). "
               f"Retiring all of it would save about *{money(findings.monthly_cost)} a month*.")
    head = [header(title), section(summary), *chunked_sections([region_line(r) for r in findings.regions]),
            context(rules_line(findings))]
    orphan_regions = [region for region in findings.regions if region.orphans]
    shown_orphans = {region.region: listed_orphans(region) for region in orphan_regions}
    tail_blocks = 2 * len(orphan_regions) + 2 + len(health)  # orphans (section + button), divider, "and N more"
    room = max(0, (MAX_BLOCKS - len(head) - tail_blocks) // 2)
    shown_images = stale[:min(MAX_IMAGES, room)]
    blocks = [*head, divider()]
    for item in shown_images:
        blocks += image_blocks(item, critical.get(item.image.id, 0))
    for region in orphan_regions:
        blocks += orphan_blocks(region, shown_orphans[region.region])
    more = len(stale) - len(shown_images) + sum(len(r.orphans) - len(shown_orphans[r.region]) for r in orphan_regions)
    if more:
        blocks.append(context(f"…and {more:,} more not listed here: the full list is in the attached CSV."))
    blocks += health
    text = (f"{title}: {plural(len(stale), 'stale image')}, {plural(len(orphans), 'orphaned snapshot')}, "
            f"{money(findings.monthly_cost)}/month to save")
    return Rendered(message(text, blocks), more, shown_images, shown_orphans)


def csv_comment(findings: Findings, day: str) -> str:
    return (f"The full digest for {day}: {plural(len(findings.stale), 'stale image')} and "
            f"{plural(len(findings.orphans), 'orphaned snapshot')}, {money(findings.monthly_cost)}/month.")


def digest_failed(day: str, reason: str) -> Message:
    text = f":warning: The AMI digest for {day} could not be made: {escape(reason)}"
    return message(text, [section(text)])


# --- files and terminal ---------------------------------------------------------------------------------

def rows(findings: Findings) -> Iterator[dict[str, Any]]:
    """Every item, costliest first: stale images, then orphaned snapshots (generated: there may be thousands)."""
    for item in findings.stale:
        image = item.image
        yield {"kind": "image", "region": image.region, "id": image.id, "name": image.name,
               "family": image.family, "state": image.state, "created": _iso(image.created),
               "age_days": item.age_days, "size_gb": item.size_gb,
               "monthly_cost_usd": round(item.monthly_cost, 2), "image_id": image.id, "note": item.note}
    for item in findings.orphans:
        snapshot = item.snapshot
        yield {"kind": "snapshot", "region": snapshot.region, "id": snapshot.id, "name": "",
               "family": "", "state": "orphaned", "created": _iso(snapshot.started),
               "age_days": item.age_days, "size_gb": snapshot.size_gb,
               "monthly_cost_usd": round(item.monthly_cost, 2), "image_id": snapshot.ami_id,
               "note": f"made for {snapshot.ami_id}, which no longer exists"}


def _iso(moment) -> str:
    return moment.isoformat() if moment else ""


def _cell(value: Any) -> Any:
    """Keep spreadsheets from running AMI names as formulas (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(findings: Findings, stream: TextIO) -> None:
    writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows(findings):
        writer.writerow({key: _cell(value) for key, value in row.items()})


def as_csv(findings: Findings) -> str:
    out = io.StringIO()
    write_csv(findings, out)
    return out.getvalue()


def region_summary(region: RegionFindings, calls: dict[str, int] | None = None) -> dict[str, Any]:
    summary = {"region": region.region, "stale_images": len(region.stale), "orphaned_snapshots": len(region.orphans),
               "stale_gb": region.stale_gb, "orphan_gb": region.orphan_gb, "saving_gb": region.saving_gb,
               "monthly_cost_usd": round(region.monthly_cost, 2), "images_checked": region.images_seen,
               "image_snapshots_checked": region.snapshots_seen, "kept": dict(region.kept), "error": region.error}
    if calls is not None:
        summary["aws_calls"] = calls.get(region.region, 0)
    return summary


def write_json(findings: Findings, day: str, stream: TextIO, calls: dict[str, int] | None = None) -> None:
    """The digest as one JSON document, the items streamed one per line rather than built in memory."""
    document: dict[str, Any] = {
        "date": day, "generated_at": _iso(findings.generated_at),
        "rules": {"stale_after_days": findings.rules.stale_after_days, "keep_latest": findings.rules.keep_latest,
                  "snapshot_price_per_gb_month": findings.rules.price_per_gb_month},
        "regions": [region_summary(region, calls) for region in findings.regions],
        "totals": {"stale_images": len(findings.stale), "orphaned_snapshots": len(findings.orphans),
                   "saving_gb": findings.saving_gb, "monthly_cost_usd": round(findings.monthly_cost, 2)}}
    if calls is not None:
        document["aws_calls"] = calls
    stream.write(json.dumps(document, indent=1)[:-2] + ',\n "items": [')
    for number, row in enumerate(rows(findings)):
        stream.write(("," if number else "") + "\n  " + json.dumps(row))
    stream.write("\n ]\n}\n")


def as_json(findings: Findings, day: str, calls: dict[str, int] | None = None) -> str:
    out = io.StringIO()
    write_json(findings, day, out, calls)
    return out.getvalue()


def write_table(findings: Findings, day: str, stream: TextIO) -> None:
    stream.write(f"AMI digest for {day} (generated {when(findings.generated_at)})\n\n"
                 f"{'REGION':<16}{'STALE':>8}{'GiB':>10}{'ORPHANS':>9}{'GiB':>10}{'$/MONTH':>12}\n")
    for region in findings.regions:
        if region.error:
            stream.write(f"{region.region:<16}  not checked: {region.error}\n")
            continue
        stream.write(f"{region.region:<16}{len(region.stale):>8,}{region.stale_gb:>10,}{len(region.orphans):>9,}"
                     f"{region.orphan_gb:>10,}{region.monthly_cost:>12,.2f}\n")
    stream.write(f"{'TOTAL':<16}{sum(len(r.stale) for r in findings.regions):>8,}"
                 f"{sum(r.stale_gb for r in findings.regions):>10,}{sum(len(r.orphans) for r in findings.regions):>9,}"
                 f"{sum(r.orphan_gb for r in findings.regions):>10,}{findings.monthly_cost:>12,.2f}\n")
    if findings.clean:
        stream.write("\nAll clean: nothing stale, nothing orphaned.\n")
        return
    stream.write(f"\n{'KIND':<9}{'REGION':<16}{'ID':<24}{'GiB':>6}{'$/MONTH':>10}{'AGE':>7}  NAME / NOTE\n")
    for row in rows(findings):
        label = " — ".join(part for part in (row["name"], row["note"]) if part)
        age = f"{row['age_days']}d" if row["age_days"] is not None else "?"
        stream.write(f"{row['kind']:<9}{row['region']:<16}{row['id']:<24}{row['size_gb']:>6,}"
                     f"{row['monthly_cost_usd']:>10,.2f}{age:>7}  {label}\n")


def as_table(findings: Findings, day: str) -> str:
    out = io.StringIO()
    write_table(findings, day, out)
    return out.getvalue()
