"""The blast radius of a deregistration, as shown in the request and the approval message."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bot.blocks import age, code, context, escape, fields_section, section
from bot.services.references import (
    AMIBOT,
    FleetRef,
    GroupRef,
    InstanceRef,
    LaunchConfigRef,
    OtherRef,
    ParameterRef,
    RecipeRef,
    TemplateRef,
    Usage,
    version_phrase,
)
from bot.services.usage_reports import AVAILABLE, PENDING, RESOURCE_NAMES, UNSUPPORTED, OtherAccounts

if TYPE_CHECKING:
    from bot.services.deregister import Preflight

ACCOUNTS_BLOCK = "deregister.accounts"  # the block the usage-report job replaces when the report is ready


def reference_line(ref) -> str:
    """One reference, as Slack text: what it is and, when not amibot's scan alone, who found it."""
    via = f" (via SSM {escape(ref.via)})" if getattr(ref, "via", "") else ""
    if isinstance(ref, InstanceRef):
        text = f"instance {code(ref.id)} ({escape(ref.state)}{', ' + escape(ref.name) if ref.name else ''})"
    elif isinstance(ref, TemplateRef):
        which = f" version {ref.version}" if ref.version is not None else ""
        text = f"launch template *{escape(ref.name)}*{which}" + (f" ({ref.which})" if ref.which else "") + via
    elif isinstance(ref, LaunchConfigRef):
        text = f"launch configuration *{escape(ref.name)}*" + (
            f" (ASG {', '.join(escape(g) for g in ref.groups)})" if ref.groups else "")
    elif isinstance(ref, GroupRef):
        text = (f"Auto Scaling group *{escape(ref.name)}* ({escape(ref.path)} *{escape(ref.template)}* "
                f"{escape(version_phrase(ref.version, ref.number))}){via}")
    elif isinstance(ref, FleetRef):
        what = (f"template *{escape(ref.template)}* {escape(version_phrase(ref.version, ref.number))}"
                if ref.template else "names the image")
        text = f"{ref.kind} {code(ref.id)} ({escape(ref.state)}, {what}){via}"
    elif isinstance(ref, ParameterRef):
        text = f"SSM parameter {code(ref.name)}" + (
            f" (resolved by template {', '.join(escape(t) for t in ref.resolved_by)})" if ref.resolved_by else "")
    elif isinstance(ref, RecipeRef):
        text = f"Image Builder {ref.kind} *{escape(ref.name)}* {escape(ref.version)}".rstrip() + \
            " (a warning: builds from it fail; it does not block)"
    elif isinstance(ref, OtherRef):
        text = f"{escape(ref.resource_type)} {code(ref.arn)}"
    else:
        text = escape(ref)
    found_by = getattr(ref, "found_by", AMIBOT)
    return text + ("" if found_by == AMIBOT else f" — found by {found_by}")


def usage_lines(usage: Usage, limit: int = 10) -> str:
    """Every reference, instances first (at most `limit` of each kind), then the sources not checked."""
    lines = [f"• {reference_line(i)}" for i in usage.instances[:limit]]
    if len(usage.instances) > limit:
        lines.append(f"• …and {len(usage.instances) - limit} more instances")
    for kind in ("templates", "launch_configs", "groups", "fleets", "parameters", "recipes", "others"):
        refs = getattr(usage, kind)
        lines += [f"• {reference_line(ref)}" for ref in refs[:limit]]
        if len(refs) > limit:
            lines.append(f"• …and {len(refs) - limit} more")
    return "\n".join(lines) or "• nothing"


def unknown_lines(usage: Usage) -> str:
    return "\n".join(f"• {escape(source)}: *unknown* — {escape(why)}" for source, why in usage.unknown.items())


def refusal(check: Preflight) -> str:
    """Why a deregistration was refused because of use (for the InUse error)."""
    usage = check.usage
    if usage.blocking:
        text = f"{code(check.image.id)} is in use, so it was not put up for deregistration:\n{usage_lines(usage, 10)}"
    else:
        text = f"{code(check.image.id)} was not put up for deregistration: its use could not be fully checked."
    if usage.blocking_unknown:
        text += "\nCould not be checked, so it may be in use:\n" + "\n".join(
            f"• {escape(source)}: {escape(why)}" for source, why in usage.blocking_unknown.items())
    return text + "\nMove those off it first, or ask again with `--force`."


def other_accounts_block(other: OtherAccounts | None) -> dict | None:
    """Use by the accounts the image is shared with: a danger line until AWS's usage report says."""
    if other is None:
        return None
    if other.state == AVAILABLE:
        if not other.accounts:
            text = (f"*Use by other accounts* (AWS usage report {code(other.report_id)})\n"
                    f"none of {escape(other.shared_with)} uses it")
        else:
            lines = [f"• account {code(account)}: " + ", ".join(
                f"{count} {RESOURCE_NAMES.get(kind, kind)}{'s' if count != 1 else ''}"
                for kind, count in sorted(kinds.items())) for account, kinds in sorted(other.accounts.items())[:15]]
            if len(other.accounts) > 15:
                lines.append(f"• …and {len(other.accounts) - 15} more accounts")
            text = (f":rotating_light: *Used by {len(other.accounts)} other account"
                    f"{'s' if len(other.accounts) != 1 else ''}* (AWS usage report {code(other.report_id)}) — "
                    "they lose it too:\n" + "\n".join(lines))
    else:
        if other.state == PENDING and not other.timed_out:
            why = "AWS is preparing a usage report; this message updates when it is ready"
        elif other.state == PENDING:
            why = f"AWS's usage report {code(other.report_id)} was still not ready when amibot stopped waiting"
        elif other.state == UNSUPPORTED:
            why = "this AWS endpoint has no image usage reports"
        else:
            why = f"the usage report failed: {escape(other.reason)}"
        text = f":rotating_light: *Use by {escape(other.shared_with)}: unknown* — {why}"
    block = section(text)
    block["block_id"] = ACCOUNTS_BLOCK
    return block


def with_other_accounts(details: list[dict], other: OtherAccounts) -> list[dict]:
    """The request's details with the other-accounts block replaced (or added) — for the usage-report job."""
    block = other_accounts_block(other)
    replaced = [block if item.get("block_id") == ACCOUNTS_BLOCK else item for item in details]
    if not any(item.get("block_id") == ACCOUNTS_BLOCK for item in details):
        replaced.append(block)
    return replaced


def preflight_blocks(check: Preflight, force: bool, keep_snapshots: bool, now: datetime) -> list[dict]:
    image = check.image
    blocks = [fields_section([
        f"*Image*\n{code(image.id)} {escape(image.name)}", f"*Region*\n{image.region}",
        f"*Age*\n{age(image.created, now)}", f"*State*\n{image.state}"])]
    usage = check.usage
    if check.blocking_use:
        blocks.append(section(":rotating_light: *IN USE — deregistering anyway (--force)*\n" + usage_lines(usage)
                              if force else "*In use by*\n" + usage_lines(usage)))
    elif usage.in_use:  # only what does not block: recipes
        blocks.append(section("*In use by* (nothing that launches instances)\n" + usage_lines(usage)))
    else:
        blocks.append(section("*In use by*\nnothing found: no instances, launch templates, launch configurations, "
                              "Auto Scaling groups, fleets, SSM parameters or Image Builder recipes"))
    if usage.unknown:
        blocks.append(section("*Could not be checked*\n" + unknown_lines(usage)))
    accounts = other_accounts_block(check.other_accounts)
    if accounts:
        blocks.append(accounts)
    shares = check.shares
    if shares is None:
        blocks.append(section("*Shared with*\nunknown (could not read launch permissions)"))
    elif shares.any:
        parts = ([":globe_with_meridians: *public*"] if shares.public else []) + \
            [f"account {code(a)}" for a in shares.accounts[:10]] + \
            [f"organisation {code(o)}" for o in shares.organizations[:5]] + \
            [f"OU {code(u)}" for u in shares.organizational_units[:5]]
        blocks.append(section("*Shared with — they lose access too*\n" + ", ".join(parts)))
    else:
        blocks.append(section("*Shared with*\nnobody outside this account"))
    if keep_snapshots:
        cost = sum(s.monthly_cost for s in check.snapshots)
        blocks.append(section(f"*Snapshots kept (--keep-snapshots)*: {len(check.snapshots)}, "
                              f"still costing ${cost:.2f}/month"))
    else:
        lines = [f"• {code(s.id)} {s.size_gb} GiB, ${s.monthly_cost:.2f}/month"
                 + (f" — *kept*, used by {', '.join(s.kept_for)}" if s.kept_for else "")
                 for s in check.snapshots[:15]]
        blocks.append(section(f"*Snapshots to delete* (saves ${check.monthly_cost:.2f}/month)\n"
                              + ("\n".join(lines) or "none")))
    protection = {"enabled": "on", "disabled": "off", None: "unknown (this endpoint cannot tell)"}[check.protection]
    if not check.recycle_known:
        recovery = "unknown (the Recycle Bin could not be read) — assume *irreversible*"
    elif check.recycle_days:
        recovery = f"recoverable from the Recycle Bin for {check.recycle_days} days"
    else:
        recovery = "*irreversible* (no Recycle Bin rule covers it)"
    blocks.append(context(f"Deregistration protection: {protection} · {recovery}"))
    blocks += [context(f":warning: {escape(note)}") for note in check.notes]
    return blocks
