"""`/ami drift` and the drift lines after `/ami promote` / `rollback` (pure builders)."""

from __future__ import annotations

from bot.render.blocks import Message, code, context, escape, header, message, section, table
from bot.render.unchecked import headline, unchecked_lines
from bot.services.drift import (
    BEHIND,
    GONE,
    INSTANCES,
    METADATA,
    WORST_FIRST,
    Drift,
    DriftGroup,
    FamilyDrift,
    rollout_words,
)

SHOWN_FAMILIES = 20
SHOWN_GROUPS = 8
SHOWN_INSTANCES = 10


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def group_line(group: DriftGroup, current_name: str | None) -> str:
    what = f"*{escape(group.image_name)}* {code(group.image_id)}" if group.image_name else code(group.image_id)
    count = _plural(len(group.instances), "instance")
    if group.status == GONE:
        return f"• {count} on a *deregistered* image {what}" + _accounts(group)
    if group.status != BEHIND:
        return f"• {count} on a *{group.status}* image {what}" + _accounts(group)
    details = []
    if group.behind is not None and group.behind > 0:
        details.append(f"{_plural(group.behind, 'version')} behind current {escape(current_name or '?')}")
    elif group.behind is not None and group.behind < 0:
        details.append(f"{_plural(-group.behind, 'version')} *ahead of* current {escape(current_name or '?')}")
    elif current_name:
        details.append(f"not current {escape(current_name)}")
    if group.days_older and group.days_older > 0:
        details.append(f"{group.days_older} days older")
    elif group.days_older:
        details.append(f"{-group.days_older} days newer")
    return f"• {count} on {what}" + (f" ({', '.join(details)})" if details else "") + _accounts(group)


def _accounts(group: DriftGroup) -> str:
    """With many accounts: where they run, e.g. " — prod 2, staging 1"."""
    if not group.by_account:
        return ""
    return " — " + ", ".join(f"{escape(name)} {count}" for name, count in
                             sorted(group.by_account.items(), key=lambda item: (-item[1], item[0])))


def how_far(group: DriftGroup) -> str:
    """One cell: how far behind the instance's image is."""
    if group.status != BEHIND:
        return f"{group.status} image"
    if group.behind is not None and group.behind > 0:
        return f"{_plural(group.behind, 'version')} behind"
    if group.behind is not None and group.behind < 0:
        return f"{_plural(-group.behind, 'version')} ahead"
    return "not current"


def instances_table(found: Drift, shown: int = SHOWN_INSTANCES) -> list[dict]:
    """The instances behind, named, the worst first (one table: a message holds one), then "…and N more"."""
    behind = found.instances_worst_first()
    if not behind:
        return []
    many = any(instance.account for instance, _group in behind)
    columns = ["Instance", "Name", "Auto Scaling group", *(["Account"] if many else []), "Region", "Image", "Behind"]
    rows = [[instance.instance_id, instance.name or "—", instance.group or "—",
             *([instance.account or "—"] if many else []), instance.region or "?",
             group.image_name or group.image_id, how_far(group)] for instance, group in behind[:shown]]
    blocks = [section(f"*The instances behind*, {escape(WORST_FIRST)}:"), table(columns, rows)]
    if len(behind) > shown:
        blocks.append(context(f"…and {len(behind) - shown} more instances behind."))
    return blocks


def family_text(family: FamilyDrift) -> str:
    current = family.current.name or family.current.id if family.current else None
    head = f"*{escape(family.family)}* ({family.region}): "
    head += (f"{_plural(family.on_current, 'instance')} on current {escape(current)}" if current
             else "no current version")
    lines = [head]
    lines += [group_line(group, current) for group in family.groups[:SHOWN_GROUPS]]
    if len(family.groups) > SHOWN_GROUPS:
        lines.append(f"…and {len(family.groups) - SHOWN_GROUPS} more images")
    return "\n".join(lines)


def drift_report(found: Drift, family: str | None = None) -> Message:
    """What could not be checked comes first; what was found is said only where checked (never "0 behind" about
    a region that could not be read)."""
    drifted = found.worst_first()
    checked_any = bool(found.sources)  # the regions whose instances were read
    where_checked = " where checked" if found.failures else ""
    subject, behind = f"Drift{' of ' + family if family else ''}", f"{_plural(found.drifted, 'instance')} behind"
    title = headline(subject, found.failures, checked_any, behind) if found.failures else f"{subject}: {behind}"
    blocks = [header(title[:150])]
    if found.failures:
        blocks.append(section("\n".join(unchecked_lines(found.failures, shown=10))))
    if not drifted and checked_any:
        blocks.append(section(f"Every instance{' of ' + escape(family) if family else ''}{where_checked} runs its "
                              "family's current version." if found.families else "No instance"
                              f"{where_checked} runs an image of {'that family' if family else 'a known family'}."))
    for item in drifted[:SHOWN_FAMILIES]:
        blocks.append(section(family_text(item)))
    if len(drifted) > SHOWN_FAMILIES:
        blocks.append(context(f"…and {len(drifted) - SHOWN_FAMILIES} more families: `/ami drift <family>`."))
    blocks += instances_table(found)
    if found.unknown_family:
        verb = "runs an image" if found.unknown_family == 1 else "run images"
        blocks.append(context(f"{_plural(found.unknown_family, 'instance')} {verb} whose family amibot cannot "
                              "tell (other accounts' images, or gone images without a name); counted apart."))
    sources = set(found.sources.values())
    if INSTANCES in sources:
        blocks.append(context("Where the endpoint lacks DescribeInstanceImageMetadata, an image DescribeImages no "
                              "longer returns reads *deregistered* (it may only be no longer visible)."))
    elif METADATA in sources:
        blocks.append(context("From EC2 instance image metadata: an instance's image is known even after it "
                              "was deregistered."))
    return message(title, blocks)


def rollout_hint(family: str, groups: list[str]) -> str:
    """ "roll it out: `/ami rollout web` (1 Auto Scaling group: web-asg)", escaped; "" when no group runs another
    version (`groups`: bot.services.drift's groups_behind)."""
    return escape(rollout_words(family, groups))


def drift_line(found: Drift, family: str, region: str, after: str) -> str:
    """One line for the end of a promote/rollback reply: the drift that the change creates."""
    if region in found.failures:
        return f"Drift in {region} unknown: {escape(found.failures[region])}"
    mine = [item for item in found.families if item.family == family and item.region == region]
    drifted = sum(item.drifted for item in mine)
    # with many accounts: the account-regions that could not be read ("prod (1111…), us-east-1")
    unread = f" Not read: {escape('; '.join(sorted(found.failures))[:300])}." if found.failures else ""
    if not drifted:
        return (f"After this {after}, every instance of {escape(family)} in {region}"
                f"{' where read' if unread else ''} runs the current version.{unread}")
    groups = [group for item in mine for group in item.groups]
    parts = ", ".join(f"{len(g.instances)} on {escape(g.image_name or g.image_id)}" for g in groups[:4])
    hint = rollout_hint(family, found.groups_behind(family, region))
    return (f"After this {after}, {_plural(drifted, 'instance')} of {escape(family)} in {region} run another "
            f"version ({parts}{', …' if len(groups) > 4 else ''}): `/ami drift {escape(family)}`"
            + (f"; {hint}." if hint else ".") + unread)
