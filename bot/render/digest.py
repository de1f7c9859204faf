"""The digest as a Slack message, a CSV file, JSON and a terminal table: pure, findings in, text out.

The Slack message always fits (≤ 50 blocks, ≤ 3,000 characters a section, button values ≤ 2,000):
totals per region first, then the costliest stale images (each with "Request deregistration" and
"Snooze 30 days"), then per region the costliest orphaned snapshots with one "Request cleanup" for
the listed set, then "and N more" — the full list goes into the CSV attached to the message.

With many accounts it is the organisation's digest: totals per account (a failed account or region is a
warning line naming it), the costliest items across the organisation with their account, the costliest
orphan groups; button values carry the account ("<account id>:<region>:<ids>") so a click acts there, and
the CSV, JSON and table have an account column.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from bot.core import csvfile
from bot.core.accounts import Account
from bot.render.blocks import (
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
    mrkdwn_message,
    plural,
    section,
    table,
    when,
)
from bot.render.fleet_health import health_blocks
from bot.render.unchecked import unchecked_names
from bot.services.digest import snapshots_undo_sentence
from bot.services.staleness import (
    SNOOZE_DAYS,
    AccountTotals,
    Findings,
    OrphanSnapshot,
    RegionFindings,
    StaleImage,
)

DEREGISTER = "digest.deregister"
SNOOZE = "digest.snooze"
CLEANUP = "digest.cleanup"

MAX_IMAGES = 20  # listed images; each takes two blocks (the line and its buttons)
MAX_ORPHANS_PER_REGION = 25  # listed orphaned snapshots per region (and in its cleanup button's value)
MAX_BUTTON_VALUE = 2000
MAX_ACCOUNT_LINES = 40  # accounts listed by name in the totals (failed ones and the costliest first)
MAX_UNBAKED = 8  # families without a bake listed by name (one short section: advice)
MIN_IMAGES = 5  # images still listed when many account-regions have orphans (their groups yield)
CSV_FIELDS = ["kind", "region", "id", "name", "family", "state", "created", "age_days", "size_gb",
              "monthly_cost_usd", "image_id", "note"]
ACCOUNT_FIELDS = ["account", "account_name"]  # first, with many accounts


@dataclass
class Rendered:
    message: Message
    more: int  # items not listed in the message (they are in the CSV)
    shown_images: list[StaleImage]
    shown_orphans: dict[str, list[OrphanSnapshot]]


# --- Slack --------------------------------------------------------------------------------------------

def button_value(account: str, region: str, ids: list[str]) -> str:
    """What a digest button acts on: "<region>:<ids>", and "<account id>:<region>:<ids>" in a managed account."""
    return ":".join([*([account] if account else []), region, ",".join(ids)])


def cleanup_block_id(account: str, region: str) -> str:
    """The block of one account-region's cleanup button (unique in the message: regions repeat across accounts)."""
    return f"digest:cleanup:{account}:{region}" if account else f"digest:cleanup:{region}"


def gib(size: int | None) -> str:
    """One item's size; one AWS sent in a form that cannot be read is said so, never 0."""
    return "size unknown" if size is None else f"{size:,} GiB"


def gib_total(sizes) -> str:
    """A total of sizes, naming the items whose size is unknown (left out of it): "30 GiB + 1 of unknown size"."""
    sizes = list(sizes)
    unknown = sum(size is None for size in sizes)
    known = f"{sum(size for size in sizes if size is not None):,} GiB"
    return f"{known} + {unknown} of unknown size" if unknown else known


def image_line(item: StaleImage, critical: int = 0, account: Account | None = None) -> str:
    """`account`: named when the digest spans several."""
    image = item.image
    family = f" · family *{escape(image.family)}*" if image.family and image.family != image.name else ""
    disabled = " · :no_entry_sign: _disabled, ready to deregister_" if item.disabled else ""
    vulnerable = f" · :red_circle: {critical} critical finding{'s' if critical != 1 else ''}" if critical else ""
    owner = f" · account *{escape(account.short)}*" if account is not None and account.id else ""
    return (f"*{escape(image.name or '(no name)')}* {code(image.id)}{owner} · {image.region} · "
            f"{item.age_days:,} days old · "
            f"{gib(item.size_gb)} · *{money(item.monthly_cost)}/month*{family}{disabled}{vulnerable}")


def image_blocks(item: StaleImage, critical: int = 0, account: Account | None = None) -> list[dict]:
    value = button_value(item.image.account, item.image.region, [item.image.id])
    return [section(image_line(item, critical, account)),
            actions(button("Request deregistration", DEREGISTER, value),
                    button(f"Snooze {SNOOZE_DAYS} days", SNOOZE, value),
                    block_id=f"digest:{item.image.id}")]


def orphan_line(item: OrphanSnapshot) -> str:
    age = f" · {item.age_days:,} days old" if item.age_days is not None else ""
    return (f"{code(item.snapshot.id)} · {gib(item.snapshot.size_gb)} · {money(item.monthly_cost)}/month{age}"
            f" · made for {code(item.snapshot.ami_id)}, which is gone")


def listed_orphans(region: RegionFindings) -> list[OrphanSnapshot]:
    """The costliest orphans that fit one section and one button value."""
    listed: list[OrphanSnapshot] = []
    length = len(orphans_title(region)) + 1
    value = len(button_value(region.account.id, region.region, []))
    for item in region.orphans[:MAX_ORPHANS_PER_REGION]:
        line = len(orphan_line(item)) + 1
        if length + line > MAX_SECTION or value + len(item.snapshot.id) + 1 > MAX_BUTTON_VALUE:
            break
        listed.append(item)
        length += line
        value += len(item.snapshot.id) + 1
    return listed


def orphans_title(region: RegionFindings) -> str:
    return (f"*Orphaned snapshots in {escape(region.label)}* — {plural(len(region.orphans), 'snapshot')}, "
            f"{gib_total(o.snapshot.size_gb for o in region.orphans)}, "
            f"{money(sum(o.monthly_cost for o in region.orphans))}/month:")


def orphan_blocks(region: RegionFindings, listed: list[OrphanSnapshot]) -> list[dict]:
    ids = [item.snapshot.id for item in listed]
    size = gib_total(item.snapshot.size_gb for item in listed)
    label = "Request cleanup" if len(listed) == len(region.orphans) else f"Request cleanup of these {len(listed)}"
    confirm = confirm_dialog("Request snapshot cleanup",
                             f"Ask for approval to delete {plural(len(ids), 'snapshot')} ({size}) in "
                             f"{region.label}?", confirm="Request")
    return [section("\n".join([orphans_title(region), *(orphan_line(item) for item in listed)])),
            actions(button(label, CLEANUP, button_value(region.account.id, region.region, ids), confirm=confirm),
                    block_id=cleanup_block_id(region.account.id, region.region))]


def _unnamed(error: str, account: Account) -> str:
    """An error without the "prod (111111111111): " its line already starts with."""
    prefix = f"{account.label}: "
    return error[len(prefix):] if account.id and error.startswith(prefix) else error


def region_line(region: RegionFindings) -> str:
    if region.error:
        return f":warning: *{escape(region.label)}*: not checked — {escape(_unnamed(region.error, region.account))}"
    if not (region.stale or region.orphans):
        return f":white_check_mark: *{region.label}*: all clean ({plural(region.images_seen, 'image')} checked)"
    return (f"• *{region.label}*: {plural(len(region.stale), 'stale image')} "
            f"({gib_total(i.size_gb for i in region.stale)}), {plural(len(region.orphans), 'orphaned snapshot')} "
            f"({gib_total(o.snapshot.size_gb for o in region.orphans)}) — "
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


def account_line(total: AccountTotals) -> str:
    label = escape(total.account.label)
    if not (total.stale or total.orphans):
        return f":white_check_mark: *{label}*: all clean ({plural(total.images_seen, 'image')} checked)"
    return (f"• *{label}*: {plural(total.stale, 'stale image')} ({total.stale_gb:,} GiB), "
            f"{plural(total.orphans, 'orphaned snapshot')} ({total.orphan_gb:,} GiB) — "
            f"*{money(total.monthly_cost)}/month*")


def failure_lines(total: AccountTotals) -> list[str]:
    """An account that could not be checked at all is one line (its role cannot be assumed: every region fails
    alike); otherwise a line per region that failed."""
    errors = {_unnamed(region.error or "", total.account) for region in total.failures}
    if total.failures and not total.checked and len(errors) == 1:
        return [f":warning: *{escape(total.account.label)}*: not checked — {escape(errors.pop())}"]
    return [region_line(region) for region in total.failures]


def _account_parts(findings: Findings) -> tuple[list[str], list[AccountTotals], list[str]]:
    """Totals per account: what was not checked first (each line naming the account), then the accounts, the
    costliest first; at most MAX_ACCOUNT_LINES of them, the rest summed up in one line."""
    totals = findings.by_account()
    failures = [line for total in totals for line in failure_lines(total)]
    lines = failures[:MAX_ACCOUNT_LINES // 2]
    if len(failures) > len(lines):
        lines.append(f":warning: …and {len(failures) - len(lines)} more not checked (`amibot digest --dry-run` "
                     "names each)")
    ranked = sorted((total for total in totals if total.checked),
                    key=lambda total: (-total.monthly_cost, -(total.stale + total.orphans), total.account.short))
    shown = ranked[:max(MAX_ACCOUNT_LINES - len(lines), MAX_ACCOUNT_LINES // 2)]
    rest = ranked[len(shown):]
    after = []
    if rest:
        with_findings = sum(1 for total in rest if total.stale or total.orphans)
        after.append(f"…and {plural(len(rest), 'more account')}: {with_findings} with findings (all in the CSV), "
                     f"{len(rest) - with_findings} all clean")
    return lines, shown, after


def account_lines(findings: Findings) -> list[str]:
    lines, shown, after = _account_parts(findings)
    return lines + [account_line(total) for total in shown] + after


ACCOUNT_COLUMNS = ["Account", "Stale images", "GiB", "Orphaned snapshots", "GiB", "To save a month"]


def account_row(total: AccountTotals) -> list[str]:
    if not (total.stale or total.orphans):
        return [total.account.label, "0", "0", "0", "0", f"all clean ({plural(total.images_seen, 'image')} checked)"]
    return [total.account.label, f"{total.stale:,}", f"{total.stale_gb:,}", f"{total.orphans:,}",
            f"{total.orphan_gb:,}", money(total.monthly_cost)]


def account_blocks(findings: Findings) -> list[dict]:
    """The totals per account as one table (what was not checked said first, as lines)."""
    lines, shown, after = _account_parts(findings)
    blocks = chunked_sections(lines)
    if shown:
        blocks.append(table(ACCOUNT_COLUMNS, [account_row(total) for total in shown]))
    blocks += [context(line) for line in after]
    return blocks


def _total_lines(findings: Findings) -> list[str]:
    return account_lines(findings) if findings.many else [region_line(region) for region in findings.regions]


def _orphan_groups(findings: Findings, head: int, health: int, stale: int) -> list[RegionFindings]:
    """The account-regions whose orphans are listed: all of them when they fit, else the costliest groups that
    leave room for a few images (the rest is counted in "and N more" and is in the CSV)."""
    groups = [region for region in findings.regions if region.orphans]
    room = max(1, (MAX_BLOCKS - head - health - 2 - 2 * min(MIN_IMAGES, stale)) // 2)
    if len(groups) <= room:
        return groups
    costliest = set(map(id, sorted(groups, key=lambda r: -sum(o.monthly_cost for o in r.orphans))[:room]))
    return [region for region in groups if id(region) in costliest]


def not_checked(findings: Findings) -> list[str]:
    """What the digest could not check, by name: an account none of whose regions could be read, else each
    account-region (or region) that could not be."""
    places = []
    for total in findings.by_account():
        if total.failures and not total.checked and total.account.id:
            places.append(total.account.label)
        else:
            places += [region.label for region in total.failures]
    return places


def _unchecked_lead(places: list[str]) -> str:
    """The digest's first words when something could not be checked: every total after it leaves that out."""
    return (f":rotating_light: *Not checked: {escape(unchecked_names(places))}* — nothing below covers "
            f"{'it' if len(places) == 1 else 'them'}.")


def unbaked_line(item) -> str:
    if not item.version:
        return f"• *{escape(item.family)}* ({escape(item.place)}): current version unknown (none available)"
    age = f"{item.age_days} days old" if item.age_days is not None else "age unknown"
    return f"• *{escape(item.family)}* ({escape(item.place)}): current {escape(item.version)}, {age}"


def unbaked_blocks(findings: Findings) -> list[dict]:
    """Families whose current version is older than stale_after_days and that nothing re-bakes: one short section.
    Advice, not a finding: it does not turn "all clean" into something to clean up."""
    items = findings.unbaked
    if not items:
        return []
    lines = [f"*Families without a bake ({len(items)})*: current version older than "
             f"{findings.rules.stale_after_days} days, no [[bakes]] entry: see docs/baking.md"]
    lines += [unbaked_line(item) for item in items[:MAX_UNBAKED]]
    if len(items) > MAX_UNBAKED:
        lines.append(f"…and {len(items) - MAX_UNBAKED} more")
    return chunked_sections(lines)


def digest_message(findings: Findings, day: str) -> Rendered:
    title = f"AMI digest for {day}"
    many = findings.many
    checked = [region for region in findings.regions if not region.error]
    if not checked:
        lines = [f"*{title}* — :warning: no region could be checked, so nothing is known to be clean:"]
        lines += _total_lines(findings)
        return Rendered(message(f"{title}: no region could be checked", chunked_sections(lines)), 0, [], {})
    health = health_blocks(findings.health, findings.trend, findings.generated_at) + unbaked_blocks(findings)
    unchecked = not_checked(findings)
    # the notification's text too: what was not checked comes first
    unchecked_text = f"not checked: {unchecked_names(unchecked)}; " if unchecked else ""
    if findings.clean:
        seen = sum(region.images_seen for region in checked)
        where = ", ".join(region.region for region in checked) or "no region"
        if many:
            accounts = {region.account.id for region in checked}
            where = f"{plural(len(accounts), 'account')} ({plural(len(checked), 'account-region')})"
        text = (f":sparkles: All clean{' where checked' if unchecked else ''}: no stale images and no orphaned "
                f"snapshots in {where} ({plural(seen, 'image')} checked).")
        if not unchecked:
            blocks = [section(f"*{title}* — {text}")]
        else:
            failures = [line for total in findings.by_account() for line in failure_lines(total)]
            blocks = [section(f"*{title}* — {_unchecked_lead(unchecked)}"),
                      *chunked_sections(failures[:5]), section(text)]
        blocks += health
        clean = "all clean where checked" if unchecked else "all clean"
        return Rendered(message(f"{title}: {unchecked_text}{clean}", blocks), 0, [], {})
    stale, orphans = findings.stale, findings.orphans
    critical = findings.health.critical_stale if findings.health is not None else {}
    if critical:  # images with critical findings first, then as before (costliest first)
        stale = sorted(stale, key=lambda item: item.image.id not in critical)
    across = f" across {plural(len({region.account.id for region in checked}), 'account')}" if many else ""
    summary = (f"*{plural(len(stale), 'stale image')}* ({gib_total(i.size_gb for i in stale)}) and "
               f"*{plural(len(orphans), 'orphaned snapshot')}* ({gib_total(o.snapshot.size_gb for o in orphans)})"
               f"{across}. Retiring all of it would save about *{money(findings.monthly_cost)} a month*.")
    if unchecked:
        summary = f"{_unchecked_lead(unchecked)}\n{summary}"
    totals = account_blocks(findings) if many else chunked_sections(_total_lines(findings))
    head = [header(title), section(summary), *totals, context(rules_line(findings))]
    orphan_regions = _orphan_groups(findings, len(head), len(health), len(stale))
    shown_orphans = {region.label: listed_orphans(region) for region in orphan_regions}
    tail_blocks = 2 * len(orphan_regions) + 2 + len(health)  # orphans (section + button), divider, "and N more"
    room = max(0, (MAX_BLOCKS - len(head) - tail_blocks) // 2)
    shown_images = stale[:min(MAX_IMAGES, room)]
    blocks = [*head, divider()]
    for item in shown_images:
        owner = findings.account_named(item.image.account) if many else None
        blocks += image_blocks(item, critical.get(item.image.id, 0), owner)
    for region in orphan_regions:
        blocks += orphan_blocks(region, shown_orphans[region.label])
    more = len(stale) - len(shown_images) + len(orphans) - sum(len(listed) for listed in shown_orphans.values())
    if more:
        blocks.append(context(f"…and {more:,} more not listed here: the full list is in the attached CSV."))
    blocks += health
    text = (f"{title}: {unchecked_text}{plural(len(stale), 'stale image')}, "
            f"{plural(len(orphans), 'orphaned snapshot')}, {money(findings.monthly_cost)}/month to save")
    return Rendered(message(text, blocks), more, shown_images, shown_orphans)


def cleanup_details(details: dict) -> list[dict]:
    """A snapshot-cleanup request's details (bot.services.digest.request_cleanup's data): what it will delete."""
    sizes = details.get("sizes") or {}
    listed = "\n".join(f"{code(snapshot_id)} · {size:,} GiB" for snapshot_id, size in list(sizes.items())[:40])
    more = f"\n…and {len(sizes) - 40} more" if len(sizes) > 40 else ""
    total = sum(sizes.values())
    blocks = [section(f"*Will delete {plural(len(sizes), 'orphaned snapshot')} in {escape(details.get('place', ''))}* "
                      f"({total:,} GiB, {money(details.get('monthly') or 0)}/month). Each was made for an image that "
                      f"no longer exists and no image uses it:\n{listed}{more}")]
    if details.get("notes"):
        blocks.append(context("Left out: " + escape("; ".join(details["notes"]))[:2900]))
    if "undo" in details:  # requests made before it was recorded say nothing rather than guess
        blocks.append(context(escape(snapshots_undo_sentence(details))))
    return blocks


def csv_comment(findings: Findings, day: str) -> str:
    across = f" across {plural(len(findings.accounts), 'account')}" if findings.many else ""
    return (f"The full digest for {day}: {plural(len(findings.stale), 'stale image')} and "
            f"{plural(len(findings.orphans), 'orphaned snapshot')}{across}, {money(findings.monthly_cost)}/month.")


def digest_failed(day: str, reason: str) -> Message:
    text = f":warning: The AMI digest for {day} could not be made: {escape(reason)}"
    return mrkdwn_message(text, [section(text)])


# --- files and terminal ---------------------------------------------------------------------------------

def rows(findings: Findings) -> Iterator[dict[str, Any]]:
    """Every item, costliest first across the organisation: stale images, then orphaned snapshots (generated:
    there may be thousands). With many accounts each row starts with its account's id and name."""
    if not findings.many:
        yield from _rows(findings)
        return
    names = {account.id: account.name for account in findings.accounts}
    for row in _rows(findings):
        account = row.pop("_account")
        yield {"account": account, "account_name": names.get(account, ""), **row}


def _rows(findings: Findings) -> Iterator[dict[str, Any]]:
    many = findings.many
    for item in findings.stale:
        image = item.image
        yield {**({"_account": image.account} if many else {}), "kind": "image", "region": image.region,
               "id": image.id, "name": image.name,
               "family": image.family, "state": image.state, "created": _iso(image.created),
               "age_days": item.age_days, "size_gb": item.size_gb,
               "monthly_cost_usd": round(item.monthly_cost, 2), "image_id": image.id, "note": item.note}
    for item in findings.orphans:
        snapshot = item.snapshot
        yield {**({"_account": snapshot.account} if many else {}), "kind": "snapshot", "region": snapshot.region,
               "id": snapshot.id, "name": "",
               "family": "", "state": "orphaned", "created": _iso(snapshot.started),
               "age_days": item.age_days, "size_gb": snapshot.size_gb,
               "monthly_cost_usd": round(item.monthly_cost, 2), "image_id": snapshot.ami_id,
               "note": f"made for {snapshot.ami_id}, which no longer exists"}


def _iso(moment) -> str:
    return moment.isoformat() if moment else ""


def csv_fields(findings: Findings) -> list[str]:
    return ACCOUNT_FIELDS + CSV_FIELDS if findings.many else CSV_FIELDS


def write_csv(findings: Findings, stream: TextIO) -> None:
    csvfile.write(stream, csv_fields(findings), rows(findings))  # AMI names defused as spreadsheet formulas


def as_csv(findings: Findings) -> str:
    return csvfile.text(csv_fields(findings), rows(findings))


def region_summary(region: RegionFindings, calls: dict[str, int] | None = None) -> dict[str, Any]:
    summary = {**({"account": region.account.id, "account_name": region.account.name} if region.account.id else {}),
               "region": region.region, "stale_images": len(region.stale), "orphaned_snapshots": len(region.orphans),
               "stale_gb": region.stale_gb, "orphan_gb": region.orphan_gb, "saving_gb": region.saving_gb,
               "monthly_cost_usd": round(region.monthly_cost, 2), "images_checked": region.images_seen,
               "image_snapshots_checked": region.snapshots_seen, "kept": dict(region.kept), "error": region.error}
    if calls is not None:
        summary["aws_calls"] = calls.get(region.label, 0)
    return summary


def account_summary(total: AccountTotals) -> dict[str, Any]:
    return {"account": total.account.id, "account_name": total.account.name, "stale_images": total.stale,
            "orphaned_snapshots": total.orphans, "stale_gb": total.stale_gb, "orphan_gb": total.orphan_gb,
            "monthly_cost_usd": round(total.monthly_cost, 2), "images_checked": total.images_seen,
            "regions_checked": total.checked,
            "not_checked": {region.region: region.error for region in total.failures}}


def write_json(findings: Findings, day: str, stream: TextIO, calls: dict[str, int] | None = None) -> None:
    """The digest as one JSON document, the items streamed one per line rather than built in memory."""
    document: dict[str, Any] = {
        "date": day, "generated_at": _iso(findings.generated_at),
        "rules": {"stale_after_days": findings.rules.stale_after_days, "keep_latest": findings.rules.keep_latest,
                  "snapshot_price_per_gb_month": findings.rules.price_per_gb_month},
        "regions": [region_summary(region, calls) for region in findings.regions],
        "totals": {"stale_images": len(findings.stale), "orphaned_snapshots": len(findings.orphans),
                   "saving_gb": findings.saving_gb, "monthly_cost_usd": round(findings.monthly_cost, 2)}}
    if findings.many:
        document["accounts"] = [account_summary(total) for total in findings.by_account()]
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


def _clean_line(findings: Findings) -> str:
    """Nothing found: "all clean" only where checked, what was not checked named first (as in Slack)."""
    unchecked = not_checked(findings)
    if not unchecked:
        return "All clean: nothing stale, nothing orphaned."
    if all(region.error for region in findings.regions):
        return f"Not checked: {unchecked_names(unchecked)}. No region could be checked: nothing is known to be clean."
    return f"Not checked: {unchecked_names(unchecked)}. All clean where checked: nothing stale, nothing orphaned."


def write_table(findings: Findings, day: str, stream: TextIO) -> None:
    many = findings.many

    def account(name: str) -> str:  # the ACCOUNT column, with many accounts only
        return f"{name[:17]:<18}" if many else ""

    stream.write(f"AMI digest for {day} (generated {when(findings.generated_at)})\n\n"
                 f"{account('ACCOUNT')}{'REGION':<16}{'STALE':>8}{'GiB':>10}{'ORPHANS':>9}{'GiB':>10}{'$/MONTH':>12}\n")
    for region in findings.regions:
        if region.error:
            error = _unnamed(region.error, region.account)
            stream.write(f"{account(region.account.short)}{region.region:<16}  not checked: {error}\n")
            continue
        stream.write(f"{account(region.account.short)}{region.region:<16}{len(region.stale):>8,}{region.stale_gb:>10,}"
                     f"{len(region.orphans):>9,}{region.orphan_gb:>10,}{region.monthly_cost:>12,.2f}\n")
    if many:
        for total in findings.by_account():
            stream.write(f"{account(total.account.short)}{'(account)':<16}{total.stale:>8,}{total.stale_gb:>10,}"
                         f"{total.orphans:>9,}{total.orphan_gb:>10,}{total.monthly_cost:>12,.2f}\n")
    stream.write(f"{account('')}{'TOTAL':<16}{sum(len(r.stale) for r in findings.regions):>8,}"
                 f"{sum(r.stale_gb for r in findings.regions):>10,}{sum(len(r.orphans) for r in findings.regions):>9,}"
                 f"{sum(r.orphan_gb for r in findings.regions):>10,}{findings.monthly_cost:>12,.2f}\n")
    if findings.clean:
        stream.write("\n" + _clean_line(findings) + "\n")
        return
    stream.write(f"\n{account('ACCOUNT')}{'KIND':<9}{'REGION':<16}{'ID':<24}{'GiB':>6}{'$/MONTH':>10}{'AGE':>7}"
                 "  NAME / NOTE\n")
    for row in rows(findings):
        label = " — ".join(part for part in (row["name"], row["note"]) if part)
        age = f"{row['age_days']}d" if row["age_days"] is not None else "?"
        owner = account(row.get("account_name") or row.get("account") or "")
        size = f"{row['size_gb']:,}" if row["size_gb"] is not None else "?"  # unknown, never 0
        stream.write(f"{owner}{row['kind']:<9}{row['region']:<16}{row['id']:<24}{size:>6}"
                     f"{row['monthly_cost_usd']:>10,.2f}{age:>7}  {label}\n")


def as_table(findings: Findings, day: str) -> str:
    out = io.StringIO()
    write_table(findings, day, out)
    return out.getvalue()
