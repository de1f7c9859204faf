"""Messages for `/ami list` and `/ami show`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.core.errors import AwsError
from bot.render.blocks import (
    Message,
    age,
    code,
    context,
    divider,
    escape,
    fields_section,
    header,
    message,
    section,
    when,
)
from bot.render.deregister import account_section, reference_line, unknown_lines
from bot.render.revoke import revoked_line
from bot.render.unchecked import headline, unchecked_lines
from bot.services.blast_radius import AccountUsage
from bot.services.images import Image, Shares
from bot.services.references import AMIBOT, Usage, nothing_found
from bot.services.revoke import REVOKED_TAG

CHOICES_SHOWN = 20  # the images an ambiguous name lists (their shares are looked up: one call each)
STATE_ICONS = {"available": ":large_green_circle:", "pending": ":hourglass_flowing_sand:",
               "disabled": ":no_entry_sign:", "failed": ":red_circle:", "deregistered": ":wastebasket:"}


def sharing_label(image: Image, shares: Shares | AwsError | None) -> str:
    if image.public or (isinstance(shares, Shares) and shares.public):
        return ":globe_with_meridians: public"
    if isinstance(shares, Shares) and shares.any:
        count = len(shares.accounts) + len(shares.organizations) + len(shares.organizational_units)
        return f":handshake: shared ({count})"
    if isinstance(shares, Shares):
        return "private"
    return "sharing unknown"  # an error, or not looked up: never "private" for what was not checked


def image_row(image: Image, shares: Shares | AwsError | None, now: datetime, accounts: dict[str, str] | None = None
              ) -> str:
    """One image on one line; `accounts` ({id: short name}, given with more than one account) adds the account
    the image is in, before its region."""
    icon = STATE_ICONS.get(image.state, ":white_circle:")
    family = f" · family *{escape(image.family)}*" if image.family else ""
    version = f" v{escape(image.version)}" if image.version else ""
    deprecated = " · deprecated" if image.deprecation_time and image.deprecation_time <= now else ""
    how_old = age(image.created, now) if image.created else "age unknown"
    where = (f"{escape(accounts.get(image.account) or image.account or '?')} · " if accounts else "") + image.region
    return (f"{icon} *{escape(image.name or '(no name)')}* {code(image.id)} · {where} · "
            f"{how_old} · {image.state}{deprecated} · {sharing_label(image, shares)}"
            f"{family}{version}")


def image_list(images: list[Image], shown: int, text: str | None, failures: dict[str, AwsError],
               shares: dict[str, Shares | AwsError], now: datetime, accounts: dict[str, str] | None = None,
               scope: str = "this account", searched: int | None = None) -> Message:
    """`accounts` ({id: short name}): the account column, with more than one account; `scope`: whose images
    and where, only where checked ("this account in us-east-1", "prod (111111111111) in us-east-1, eu-west-1";
    bot.services.images.owners_in); `searched`: how many account-regions were asked
    (what could not be read is said first, and "No AMIs" only where something was read). Texts are plain words,
    escaped in the blocks here and in the fallback by `message`."""
    what = f" matching “{text}”" if text else ""
    reasons = {where: error.message for where, error in failures.items()}
    blocks = [section("\n".join(unchecked_lines(reasons, shown=10)))] if failures else []
    where_checked = " where checked" if failures else ""
    if not images:
        none = f"No AMIs{what} owned by {scope}."  # `scope` names where was checked
        checked_any = searched is None or searched > len(failures)
        body = headline("AMIs", reasons, checked_any, none) if failures else none
        if checked_any:
            blocks.append(section(escape(none)))
    else:
        count = f"{len(images)} AMI{'s' if len(images) != 1 else ''}{what}{where_checked}, newest first"
        body = headline("AMIs", reasons, True, count) if failures else count
        blocks.append(section(f"*{escape(count)}*"))
        rows = [image_row(image, shares.get(image.id), now, accounts) for image in images[:shown]]
        for start in range(0, len(rows), 10):  # 10 rows a section stays far below 3,000 characters
            blocks.append(section("\n".join(rows[start:start + 10])))
        if len(images) > shown:
            more = len(images) - shown
            narrow = "`--account NAME`, `--region R`" if accounts else "`--region R`"
            blocks.append(context(f"…and {more} more. Narrow it down: `/ami list <text>` or {narrow}."))
    return message(body, blocks)


def image_choices(ref: str, images: list[Image], now: datetime, accounts: dict[str, str] | None = None,
                  shares: dict[str, Shares | AwsError] | None = None) -> Message:
    """A name several images have: each one (with its account when there are many), to pick by id, and who may
    launch it as `/ami list` says (`shares`, looked up for the images shown)."""
    body = f"{len(images)} AMIs are named “{ref}”; pick one by id:"  # plain words, escaped in the block too
    if accounts and len({image.account for image in images}) > 1:
        named = ", ".join(dict.fromkeys(accounts.get(image.account, image.account) for image in images))
        body = f"{len(images)} AMIs in accounts {named} are named “{ref}”; pick one by id:"
    rows = [image_row(image, (shares or {}).get(image.id), now, accounts) for image in images[:CHOICES_SHOWN]]
    return message(body, [section(escape(body)), section("\n".join(rows))])


def _devices(image: Image) -> str:
    if not image.devices:
        return "none"
    lines = []
    for device in image.devices[:15]:
        size = f"{device.size_gb} GiB" if device.size_gb else "size unknown"
        target = code(device.snapshot_id) if device.snapshot_id else "ephemeral"
        crypt = " · encrypted" if device.encrypted else ""
        lines.append(f"{escape(device.device)} → {target} · {size}{crypt}")
    return "\n".join(lines)


def _shares(shares: Shares) -> str:
    lines = []
    if shares.public:
        lines.append(":globe_with_meridians: *public* — anyone can launch it")
    lines += [f"account {code(account)}" for account in shares.accounts[:20]]
    lines += [f"organisation {code(arn)}" for arn in shares.organizations[:10]]
    lines += [f"OU {code(arn)}" for arn in shares.organizational_units[:10]]
    return "\n".join(lines) or "private (this account only)"


def _usage(usage: Usage) -> str:
    lines = []
    if usage.instances:
        shown = ", ".join(f"{code(i.id)} ({i.state})" for i in usage.instances[:5])
        more = f" and {len(usage.instances) - 5} more" if len(usage.instances) > 5 else ""
        lines.append(f"*{len(usage.instances)} instance(s):* {shown}{more}")
    for template in usage.templates[:10]:
        if template.version is None or template.via or template.found_by != AMIBOT:
            lines.append(reference_line(template))
        else:
            lines.append(f"launch template *{escape(template.name)}* v{template.version} ({template.which})")
    for config in usage.launch_configs[:10]:
        groups = f" used by {', '.join(escape(g) for g in config.groups)}" if config.groups else ""
        lines.append(f"launch configuration *{escape(config.name)}*{groups}")
    for kind in ("groups", "fleets", "parameters", "recipes", "others"):
        lines += [reference_line(ref) for ref in getattr(usage, kind)[:10]]
    text = "\n".join(lines) or nothing_found(usage)
    if usage.unknown:
        text += "\n*Could not be checked:*\n" + unknown_lines(usage)
    return text


def image_detail(image: Image, shares: Shares, usage: Usage, now: datetime, account: str = "",
                 elsewhere: Sequence[AccountUsage] = ()) -> Message:
    """`account` ("prod (111111111111)", given with more than one account) takes the place of the owner id;
    `elsewhere`: its use in the other managed accounts it is shared with."""
    title = image.name or image.id
    facts = [
        f"*ID*\n{code(image.id)}", f"*Region*\n{image.region}",
        f"*State*\n{STATE_ICONS.get(image.state, '')} {image.state}",
        f"*Created*\n{when(image.created)} ({age(image.created, now)} ago)" if image.created else "*Created*\nunknown",
        f"*Account*\n{escape(account)}" if account else f"*Owner*\n{code(image.owner_id)}",
        f"*Architecture*\n{escape(image.architecture or '?')}",
        f"*Root device*\n{escape(image.root_device or '?')} ({escape(image.root_device_type or '?')})",
        f"*Family / version*\n{escape(image.family or '—')} / {escape(image.version or '—')}",
    ]
    if image.deprecation_time:
        facts.append(f"*Deprecation*\n{when(image.deprecation_time)}")
    if image.last_launched:
        facts.append(f"*Last launched*\n{when(image.last_launched)}")
    blocks = [header(title), fields_section(facts[:10])]
    if image.tags.get(REVOKED_TAG):
        blocks.append(section(revoked_line(image.tags[REVOKED_TAG])))
    if image.description:
        blocks.append(section(f"*Description*\n{escape(image.description)}"))
    blocks.append(section(f"*Block devices*\n{_devices(image)}"))
    tags = "\n".join(f"{escape(k)} = {escape(v)}" for k, v in sorted(image.tags.items())[:30])
    blocks.append(section(f"*Tags*\n{tags or 'none'}"))
    blocks += [divider(), section(f"*Who can launch it*\n{_shares(shares)}"),
               section(f"*In use by*{f' (in {escape(account)})' if elsewhere else ''}\n{_usage(usage)}")]
    if elsewhere:
        blocks.append(section("*In the other managed accounts it is shared with*\n" +
                              "\n".join(account_section(other) for other in elsewhere)))
    where = f"{account}, {image.region}" if account else image.region
    return message(f"{title} ({image.id}, {where})", blocks)
