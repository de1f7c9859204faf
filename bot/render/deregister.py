"""The blast radius of a deregistration, as shown in the request and the approval message."""

from __future__ import annotations

from datetime import datetime

from bot.render.blocks import age, code, context, escape, fields_section, section
from bot.services.blast_radius import AccountUsage
from bot.services.deregister import Preflight, undo_of
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
    kinds_phrase,
    nothing_found,
    version_phrase,
)
from bot.services.usage_reports import AVAILABLE, PENDING, RESOURCE_NAMES, UNSUPPORTED, OtherAccounts

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
    return "\n".join(lines) or f"• {nothing_found(usage)}"


def unknown_lines(usage: Usage) -> str:
    return "\n".join(f"• {escape(source)}: *unknown* — {escape(why)}" for source, why in usage.unknown.items())


def refusal(check: Preflight) -> str:
    """Why a deregistration was refused because of use (for the InUse error), naming the account of each use."""
    if check.blocking_elsewhere:
        return _refusal_by_account(check)
    usage = check.usage
    if usage.blocking:
        text = f"{code(check.image.id)} is in use, so it was not put up for deregistration:\n{usage_lines(usage, 10)}"
    else:
        text = f"{code(check.image.id)} was not put up for deregistration: its use could not be fully checked."
    if usage.blocking_unknown:
        text += "\nCould not be checked, so it may be in use:\n" + "\n".join(
            f"• {escape(source)}: {escape(why)}" for source, why in usage.blocking_unknown.items())
    return text + "\nMove those off it first, or ask again with `--force`."


def _refusal_by_account(check: Preflight) -> str:
    """The refusal when the image is used (or unknown) in accounts it is shared with: each account in turn."""
    accounts = [other for other in check.by_account() if other.blocking]
    used = [other for other in accounts if other.usage is not None and other.usage.blocking]
    if used:
        text = f"{code(check.image.id)} is in use, so it was not put up for deregistration:"
    else:
        text = f"{code(check.image.id)} was not put up for deregistration: its use could not be fully checked."
    for other in accounts:
        text += "\n" + account_section(other, 10, blocking_only=True)
    return text + "\nMove those off it first, or ask again with `--force`."


def account_heading(other: AccountUsage) -> str:
    """ "*prod (111111111111)*: 3 instances, ASG web-asg" — or unknown, with why, never "nothing"."""
    label = f"*{escape(other.account.label)}*"
    if other.usage is None:
        return f":rotating_light: {label}: *unknown* — {escape(other.reason)}"
    usage = other.usage
    if usage.in_use:
        return f"{label}: {escape(kinds_phrase(usage))}"
    if usage.blocking_unknown:
        return f":rotating_light: {label}: *unknown* — " + ", ".join(escape(s) for s in usage.blocking_unknown)
    return f"{label}: nothing found"


def account_section(other: AccountUsage, limit: int = 5, blocking_only: bool = False) -> str:
    """One account's heading, then its references (indented) and the sources that could not be read there."""
    lines = [account_heading(other)]
    usage = other.usage
    if usage is None:
        return lines[0]
    if usage.in_use:
        lines += ["    " + line for line in usage_lines(usage, limit).splitlines()]
    if usage.in_use and usage.blocking_unknown:
        lines += [f"    • {escape(source)}: *unknown* — {escape(why)}"
                  for source, why in usage.blocking_unknown.items()]
    quiet = [source for source in usage.unknown if source not in usage.blocking_unknown]
    if quiet and not blocking_only:
        lines.append("    _not checked there: " + ", ".join(escape(source) for source in quiet) + "_")
    return "\n".join(lines)


def accounts_block(check: Preflight, force: bool) -> dict | None:
    """The blast radius grouped by account, when the image is shared with managed accounts."""
    if not check.elsewhere:
        return None
    owner, *others = check.by_account()
    # the owning account's heading only: its references and unchecked sources have their own sections below
    body = "\n".join([account_heading(owner)] + [account_section(other) for other in others])
    if check.blocking_elsewhere:
        used = any(other.usage is not None and other.usage.blocking for other in others)
        what = "IN USE IN OTHER ACCOUNTS" if used else "USE IN OTHER ACCOUNTS UNKNOWN"
        title = (f":rotating_light: *{what} — deregistering anyway (--force)*" if force
                 else ":rotating_light: *In use by account*")
    else:
        title = "*In use by account* (each managed account it is or may be shared with was checked)"
    return section(f"{title}\n{body}")


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


def _account_name(check: Preflight, account_id: str) -> str:
    managed = next((other.account for other in check.elsewhere if other.account.id == account_id), None)
    return f"{escape(managed.label)}" if managed else f"account {code(account_id)}"


def deregister_details(details: dict) -> list[dict]:
    """A deregistration request's details from its data (bot.services.deregister.approval_details)."""
    return preflight_blocks(Preflight.from_data(details["preflight"]), bool(details.get("force")),
                            bool(details.get("keep_snapshots")), datetime.fromisoformat(details["at"]))


def preflight_blocks(check: Preflight, force: bool, keep_snapshots: bool, now: datetime) -> list[dict]:
    image = check.image
    facts = [f"*Image*\n{code(image.id)} {escape(image.name)}", f"*Region*\n{image.region}",
             f"*Age*\n{age(image.created, now)}", f"*State*\n{image.state}"]
    if check.many:
        facts.insert(1, f"*Account*\n{escape(check.owner.label)}")
    blocks = [fields_section(facts)]
    by_account = accounts_block(check, force)
    if by_account:
        blocks.append(by_account)
    usage = check.usage
    if check.many and (usage.blocking or usage.blocking_unknown):
        blocks.append(section((":rotating_light: *IN USE — deregistering anyway (--force)*" if force else
                               "*In use by*") + f" (in {escape(check.owner.label)})\n" + usage_lines(usage)))
    elif check.many and usage.in_use:
        blocks.append(section(f"*In use by* (in {escape(check.owner.label)}; nothing that launches instances)\n"
                              + usage_lines(usage)))
    elif check.many:
        blocks.append(section(f"*In use by* (in {escape(check.owner.label)})\n{nothing_found(usage)}"))
    elif check.blocking_use:
        blocks.append(section(":rotating_light: *IN USE — deregistering anyway (--force)*\n" + usage_lines(usage)
                              if force else "*In use by*\n" + usage_lines(usage)))
    elif usage.in_use:  # only what does not block: recipes
        blocks.append(section("*In use by* (nothing that launches instances)\n" + usage_lines(usage)))
    else:
        blocks.append(section(f"*In use by*\n{nothing_found(usage)}"))
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
            [_account_name(check, a) for a in shares.accounts[:10]] + \
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
    recovery = escape(undo_of(check, now, keep_snapshots).before())  # the story the confirmation tells too
    blocks.append(context(f"Deregistration protection: {protection} · {recovery}"))
    blocks += [context(f":warning: {escape(note)}") for note in check.notes]
    return blocks
