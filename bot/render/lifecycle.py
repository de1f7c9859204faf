"""Messages for the first half of an image's life and its gentle end: create, register, base,
versions, promote, rollback, and the stages (deprecate, disable, protect and their undo)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.render.blocks import (
    Message,
    actions,
    age,
    button,
    code,
    context,
    escape,
    fields_section,
    header,
    message,
    mrkdwn_message,
    section,
    when,
)
from bot.render.deregister import reference_line, unknown_lines, usage_lines
from bot.render.findings import counts_text
from bot.render.unchecked import headline, unchecked_lines
from bot.services.base_images import Alias, BaseImage
from bot.services.images import Image
from bot.services.references import Usage
from bot.services.versions import Families, FamilyVersions, Promotion, Rollback, Version

LAUNCH_ACTION, SHARE_ACTION = "image.launch", "image.share"
NO_REBOOT_NOTE = ("Taken *without a reboot*: the instance kept running, so file systems were not quiesced and "
                  "writes in flight may be missing or inconsistent. Use `--reboot` for a guaranteed-consistent image.")
REBOOT_NOTE = "The instance was *rebooted* for a file-system-consistent image."
STATE_ICONS = {"pending": ":hourglass_flowing_sand:", "available": ":large_green_circle:", "failed": ":red_circle:",
               "disabled": ":no_entry_sign:", "deregistered": ":wastebasket:"}


@dataclass
class NewImage:
    """What the announcement of a new image says; also the payload of the job that watches it."""

    image_id: str
    name: str
    region: str
    source: str  # "instance i-… (web-1)", "snapshot snap-…", "al2023 ami-…"
    user: str
    family: str
    version: str | None = None
    note: str = ""  # e.g. what no-reboot means
    account: str = ""  # the managed account id it is made in ("": the bot's own), where the watch looks
    account_label: str = ""  # "prod (111111111111)" with many accounts, for the message


def new_image(new: NewImage, state: str, reason: str = "", timed_out: bool = False) -> Message:
    """The visible message about an image being made: pending, then available or failed."""
    icon = STATE_ICONS.get(state, ":white_circle:")
    version = f" · version {escape(new.version)}" if new.version else ""
    verb = {"pending": "is making", "available": "made"}.get(state, "asked for")
    where = f"{escape(new.account_label)}, {new.region}" if new.account_label else new.region
    lines = [f"{icon} <@{new.user}> {verb} AMI *{escape(new.name)}* {code(new.image_id)} in {where} "
             f"from {escape(new.source)} — *{state}*",
             f"Family *{escape(new.family)}*{version}"]
    blocks = [section("\n".join(lines))]
    if new.note:
        blocks.append(context(new.note))
    if state == "available":
        blocks.append(actions(button("Launch", LAUNCH_ACTION, new.image_id, style="primary"),
                              button("Share", SHARE_ACTION, new.image_id)))
        text = f"AMI {new.name} ({new.image_id}) is available"
    elif state == "pending" and timed_out:
        blocks.append(context(":hourglass: Still pending after the bot's wait; AWS keeps working on it. "
                              f"Check later with `/ami show {new.image_id}`."))
        text = f"AMI {new.name} ({new.image_id}) is still pending"
    elif state == "pending":
        blocks.append(context("This message updates when the image is available or has failed."))
        text = f"AMI {new.name} ({new.image_id}) is being created"
    elif state == "gone":
        blocks.append(context(":warning: The image no longer exists; AWS may have removed a failed image."))
        text = f"AMI {new.name} ({new.image_id}) is gone"
    else:
        why = f": {escape(reason)}" if reason else ""
        blocks.append(section(f":x: AWS reports the image *{escape(state)}*{why}"))
        text = f"AMI {new.name} ({new.image_id}) is {state}"
    return message(text, blocks)


def button_hint(action: str, image_id: str) -> Message:
    command = f"/ami {action} {image_id}" + (" <account-id>" if action == "share" else "")
    body = f"Run `{escape(command)}` to {action} {code(image_id)}."
    return mrkdwn_message(body, [section(body)])


def alias_table(aliases: dict[str, Alias]) -> Message:
    lines = [f"• `{escape(alias.name)}` — {escape(alias.description)}" for alias in aliases.values()]
    body = "*AWS base images* (`/ami base <alias> [--region R] [--copy <name> --family F]`)\n" + "\n".join(lines)
    return message("AWS base image aliases", [section(body)])


def base_image(base: BaseImage, now: datetime) -> Message:
    name = escape(base.name) if base.name else "_not described by this endpoint_"
    created = f"{when(base.created)} ({age(base.created, now)} ago)" if base.created else "?"
    blocks = [
        header(f"{base.alias.description} in {base.region}"),
        fields_section([f"*ID*\n{code(base.image_id)}", f"*Name*\n{name}", f"*Released*\n{created}",
                        f"*Architecture*\n{escape(base.architecture or '?')}",
                        f"*Owner*\n{escape(base.owner_alias or '?')}"]),
        context(f"Resolved from {code(base.alias.parameter)}. Start a family from it: "
                f"`/ami base {escape(base.alias.name)} --copy <name> --family <family>`."),
    ]
    return message(f"{base.alias.name} in {base.region}: {base.image_id} {base.name}", blocks)


def _usage_summary(usage: Usage | None) -> str:
    if usage is None:
        return "use unknown"
    parts = []
    if usage.instances:
        parts.append(f"{len(usage.instances)} instance{'s' if len(usage.instances) != 1 else ''}")
    if usage.templates:
        names = ", ".join(escape(t.name) for t in usage.templates[:3])
        parts.append(f"template{'s' if len(usage.templates) != 1 else ''} {names}")
    if usage.launch_configs:
        parts.append(f"{len(usage.launch_configs)} launch config(s)")
    if usage.groups:
        names = ", ".join(sorted({escape(g.name) for g in usage.groups})[:3])
        parts.append(f"ASG{'s' if len({g.name for g in usage.groups}) != 1 else ''} {names}")
    if usage.fleets:
        parts.append(f"{len({f.id for f in usage.fleets})} fleet(s)")
    if usage.parameters:
        parts.append(f"SSM {', '.join(escape(p.name) for p in usage.parameters[:2])}")
    if usage.recipes:
        parts.append(f"{len(usage.recipes)} Image Builder recipe(s)")
    if usage.others:
        parts.append(f"{len(usage.others)} other reference(s) found by AWS")
    text = ", ".join(parts)
    if usage.blocking_unknown:
        return (text + "; " if text else "") + "use unknown (" + ", ".join(escape(s) for s in usage.blocking_unknown) \
            + " not checked)"
    return text or "unused"


def _elsewhere_summary(elsewhere) -> str:
    """" · in prod (111111111111): 2 instances" for each managed account it is shared with that uses it (or
    could not be read); nothing for the ones where nothing uses it."""
    parts = []
    for other in elsewhere:
        if other.usage is None:
            parts.append(f":grey_question: in {escape(other.account.label)}: use unknown")
        elif other.usage.in_use or other.usage.blocking_unknown:
            parts.append(f"in {escape(other.account.label)}: {_usage_summary(other.usage)}")
    return "".join(f" · {part}" for part in parts)


def version_states(version: Version, now: datetime) -> list[str]:
    image = version.image
    states = []
    if version.current:
        states.append(":star: *current*")
    if version.previous:
        states.append("previous")
    if image.deprecation_time:
        states.append("deprecated" if image.deprecation_time <= now else f"deprecates {when(image.deprecation_time)}")
    if image.state != "available":
        states.append(image.state)
    return states or ["available"]


def versions(family: FamilyVersions, now: datetime, shown: int = 25, findings: dict | None = None,
             accounts: dict[str, str] | None = None) -> Message:
    """`accounts` ({id: short name}, given with more than one account): each row names its account."""
    regions = sorted({version.image.region for version in family.versions})
    count = len({version.label for version in family.versions})  # a version copied to 3 regions is one version
    copies = (f" ({len(family.versions)} images in {len(regions)} regions)"
              if len(family.versions) != count or len(regions) > 1 else "")
    body = f"Family *{escape(family.family)}*: {count} version{'s' if count != 1 else ''}{copies}, newest first"
    rows = []
    findings = findings or {}
    any_known = any(found.known for found in findings.values())  # else one line says why, not one per row
    for version in family.versions[:shown]:
        image = version.image
        where = f" · {image.region}" if len(regions) > 1 or accounts else ""
        if accounts:
            where = f" · {escape(accounts.get(image.account) or image.account or '?')}{where}"
        vulns = f" · {counts_text(findings[image.id])}" if any_known and image.id in findings else ""
        rows.append(f"*{escape(version.label)}* {code(image.id)}{where} · {age(image.created, now)} · "
                    f"{', '.join(version_states(version, now))} · {_usage_summary(version.usage)}"
                    f"{_elsewhere_summary(version.elsewhere)}{vulns}")
    blocks = [section(body)]
    for start in range(0, len(rows), 10):
        blocks.append(section("\n".join(rows[start:start + 10])))
    if len(family.versions) > shown:
        blocks.append(context(f"…and {len(family.versions) - shown} older images."))
    if not any(version.current for version in family.versions):
        blocks.append(context("No version is promoted; launches by family use the newest available one. "
                              "`/ami promote <ami-id>` pins one."))
    else:
        blocks.append(context(f"Launch templates can resolve the current version: "
                              f"`resolve:ssm:{escape(family.parameter)}` (in the image's "
                              f"{'account and ' if accounts else ''}region)."))
    for region, error in sorted(family.failures.items()):
        blocks.append(context(f":warning: {region}: {escape(error.message)}"))
    if findings and not any_known:
        reason = next(iter(findings.values())).error or "not read"
        blocks.append(context(f":grey_question: Vulnerabilities: unknown — {escape(reason)}"))
    return message(f"{family.family}: {count} version{'s' if count != 1 else ''}", blocks)


def families(found: Families, now: datetime, shown: int = 40) -> Message:
    """`/ami versions` without a family: the families, each with its versions, what is promoted, and the
    command that lists it (what could not be read is said first)."""
    reasons = {where: error.message for where, error in found.failures.items()}
    blocks = [section("\n".join(unchecked_lines(reasons, shown=10)))] if reasons else []
    count = len(found.families)
    if not count:
        body = f"No image families: no AMIs owned by {found.looked}."
        blocks.append(section(escape(body)))
        blocks.append(context("`/ami create` or `/ami base --copy` starts one; `/ami help create` says how."))
        return message(headline("Families", reasons, True, body) if reasons else body, blocks)
    body = f"{count} image famil{'ies' if count != 1 else 'y'} owned by {found.looked}"
    blocks.append(section(f"*{escape(body)}*"))
    rows = []
    for family in found.families[:shown]:
        versions = f"{family.versions} version{'s' if family.versions != 1 else ''}"
        current = f" · current {', '.join(escape(label) for label in family.current)}" if family.current else ""
        rows.append(f"*{escape(family.family)}* · {versions}{current} · newest {age(family.newest, now)} · "
                    f"{code('/ami versions ' + family.family)}")
    for start in range(0, len(rows), 10):
        blocks.append(section("\n".join(rows[start:start + 10])))
    if count > shown:
        blocks.append(context(f"…and {count - shown} more. `/ami list <text>` narrows the images down."))
    blocks.append(context("`/ami versions &lt;family&gt;` lists a family's versions, newest first; "
                          "`/ami promote &lt;ami-id&gt;` makes one current."))
    return message(headline("Families", reasons, True, body) if reasons else body, blocks)


def promoted(result: Promotion, user: str) -> Message:
    image = result.image
    was = f"; was {code(result.previous_image_id)}" if result.previous_image_id else " (its first promoted version)"
    version = f" (version {escape(image.version)})" if image.version else ""
    where = f"{escape(result.account)}, {image.region}" if result.account else image.region
    body = (f":star: <@{user}> promoted {code(image.id)} *{escape(image.name)}*{version} to current version of "
            f"family *{escape(image.family)}* in {where}{was}.")
    blocks = [section(body),
              context(f"SSM parameter {code(result.parameter)} now names {code(image.id)}; launch templates using "
                      f"`resolve:ssm:{escape(result.parameter)}` pick it up on their next launch. "
                      f"Undo: `/ami rollback {escape(image.family)}`.")]
    return message(f"{image.id} is now the current version of {image.family}", blocks)


def rolled_back(result: Rollback, user: str) -> Message:
    image = result.image
    version = f" (version {escape(image.version)})" if image.version else ""
    where = f"{escape(result.account)}, {result.region}" if result.account else result.region
    body = (f":rewind: <@{user}> rolled family *{escape(result.family)}* back in {where}: current is "
            f"{code(image.id)} *{escape(image.name)}*{version} again, instead of {code(result.newer_image_id)}.")
    blocks = [section(body)]
    usage = result.newer_usage
    if usage.instances:
        shown = ", ".join(f"{code(i.id)}{' ' + escape(i.name) if i.name else ''} ({i.state})"
                          for i in usage.instances[:15])
        more = f" and {len(usage.instances) - 15} more" if len(usage.instances) > 15 else ""
        blocks.append(section(f":warning: *{len(usage.instances)} instance(s) still run the newer version* "
                              f"{code(result.newer_image_id)}: {shown}{more}. Rolling back does not replace them."))
    else:
        blocks.append(section(f"No instances run {code(result.newer_image_id)}."))
    direct = [t for t in usage.templates if not t.via]
    if direct:
        names = ", ".join(f"*{escape(t.name)}* v{t.version}" for t in direct[:10])
        blocks.append(context(f"Launch templates naming {code(result.newer_image_id)} directly still launch it: "
                              f"{names}."))
    pinned = [ref for ref in usage.groups + usage.fleets if not ref.via]
    if pinned:
        blocks.append(context(f"Still launching {code(result.newer_image_id)} (pinned, not through the parameter): "
                              + "; ".join(reference_line(ref) for ref in pinned[:10]) + "."))
    blocks.append(context(f"SSM parameter {code(result.parameter)} names {code(image.id)} again."))
    return message(f"{result.family} rolled back to {image.id}", blocks)


def stage_done(user: str, image: Image, what: str, undo: str | None = None, note: str | None = None) -> Message:
    body = f"<@{user}> {what} {code(image.id)} *{escape(image.name)}* ({image.region})."
    blocks = [section(body)]
    if note:
        blocks.append(context(note))
    if undo:
        blocks.append(context(f"Undo: `{undo}`"))
    return message(f"{what} {image.id}", blocks)


def stage_details(details: dict) -> list[dict]:
    """A disable/unprotect request's details from its data (bot.services.stages.approval_details)."""
    shown = details.get("image") or {}
    image = Image.stand_in(shown.get("id", ""), shown.get("name") or "", shown.get("region", ""))
    image.family = shown.get("family") or ""
    if shown.get("version"):
        image.tags = {"Version": shown["version"]}
    return approval_details(image, Usage.from_data(details.get("usage") or {}), details.get("consequence", ""),
                            details.get("parameter", ""))


def approval_details(image: Image, usage: Usage, consequence: str, parameter: str) -> list[dict]:
    """What the approvers see before clicking: the image, that it is the current version, what uses it."""
    blocks = [
        fields_section([f"*Image*\n{code(image.id)} {escape(image.name)}", f"*Region*\n{image.region}",
                        f"*Family*\n{escape(image.family)} — *current version*",
                        f"*Version*\n{escape(image.version or '—')}"]),
        section(f"*What happens*\n{consequence}\nLaunches through {code(parameter)} resolve to this image."),
        section("*In use by*\n" + (usage_lines(usage) if usage.in_use else "nothing found")),
    ]
    if usage.unknown:
        blocks.append(section("*Could not be checked*\n" + unknown_lines(usage)))
    return blocks
