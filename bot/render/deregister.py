"""The blast radius of a deregistration, as shown in the request and the approval message."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bot.blocks import age, code, context, escape, fields_section, section
from bot.services.references import Usage

if TYPE_CHECKING:
    from bot.services.deregister import Preflight


def usage_lines(usage: Usage, limit: int = 10) -> str:
    lines = [f"• instance {code(i.id)} ({i.state}{', ' + escape(i.name) if i.name else ''})"
             for i in usage.instances[:limit]]
    if len(usage.instances) > limit:
        lines.append(f"• …and {len(usage.instances) - limit} more instances")
    lines += [f"• launch template *{escape(t.name)}* version {t.version} ({t.which})" for t in usage.templates[:limit]]
    lines += [f"• launch configuration *{escape(c.name)}*"
              + (f" (ASG {', '.join(escape(g) for g in c.groups)})" if c.groups else "")
              for c in usage.launch_configs[:limit]]
    return "\n".join(lines) or "• nothing"


def preflight_blocks(check: Preflight, force: bool, keep_snapshots: bool, now: datetime) -> list[dict]:
    image = check.image
    blocks = [fields_section([
        f"*Image*\n{code(image.id)} {escape(image.name)}", f"*Region*\n{image.region}",
        f"*Age*\n{age(image.created, now)}", f"*State*\n{image.state}"])]
    if check.blocking_use:
        blocks.append(section(":rotating_light: *IN USE — deregistering anyway (--force)*\n" + usage_lines(check.usage)
                              if force else "*In use by*\n" + usage_lines(check.usage)))
    else:
        blocks.append(section("*In use by*\nnothing: no instances, launch template default/latest versions "
                              "or launch configurations use it"))
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
