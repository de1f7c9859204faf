"""A revocation request's details (bot.services.revoke.approval_details), as its message shows them before anyone
approves: the reason, which channel moves, which images are deprecated and disabled, what runs them. Pure."""

from __future__ import annotations

from typing import Any

from bot.render.blocks import code, context, escape, section

MAX_LISTED = 20


def _image_line(image: dict[str, Any]) -> str:
    indent = "  " * int(image.get("depth") or 0)
    where = f"{escape(image.get('account_label') or '')}, " if image.get("account_label") else ""
    child = "↳ " if image.get("depth") else ""
    return (f"{indent}{child}{code(image.get('id', ''))} {escape(image.get('name') or '')} "
            f"({where}{escape(image.get('region') or '')})")


def _move_line(move: dict[str, Any]) -> str:
    where = f"{escape(move['account_label'])}, " if move.get("account_label") else ""
    if not move.get("to"):
        return (f"{code(move['parameter'])} ({where}{escape(move['region'])}) stays on {code(move['from'])}: no "
                "version was promoted before it — promote another version")
    return (f"{code(move['parameter'])} ({where}{escape(move['region'])}): {code(move['from'])} → "
            f"{code(move['to'])} (as `/ami rollback {escape(move['family'])}`)")


def usage_text(usage: dict[str, Any]) -> str:
    """"12 instance(s) in 2 group(s)" per account, with the groups named."""
    accounts = usage.get("accounts") or {}
    lines = []
    for account, entry in sorted(accounts.items()):
        groups = entry.get("groups") or {}
        named = ", ".join(f"{escape(group)} ({count})" for group, count in sorted(groups.items())[:MAX_LISTED])
        where = f"*{escape(account)}*: " if account else ""
        lines.append(f"{where}{entry.get('instances', 0)} instance(s) in {len(groups)} Auto Scaling group(s)"
                     + (f" — {named}" if named else ""))
    for where, why in sorted((usage.get("failures") or {}).items()):
        lines.append(f":warning: {escape(where)}: could not be read ({escape(why)})")
    return "\n".join(lines) or "no instance runs them"


def revoke_details(details: dict[str, Any]) -> list[dict]:
    images = details.get("images") or []
    moves = details.get("moves") or []
    shown = "\n".join(_image_line(image) for image in images[:MAX_LISTED])
    if len(images) > MAX_LISTED:
        shown += f"\n…and {len(images) - MAX_LISTED} more"
    blocks = [
        section(f"*Reason*\n{escape(details.get('reason') or 'no reason given')}"),
        section("*Channel*\n" + ("\n".join(_move_line(move) for move in moves) if moves else
                                 "no channel moves: it is not its family's current version")),
        section(f"*Deprecated now and disabled ({len(images)})*\n{shown}\n"
                "Hidden from new launches and kept: `/ami enable <ami-id>` brings one back."),
        section(f"*Running them*\n{usage_text(details.get('usage') or {})}"),
    ]
    if details.get("unread"):
        unread = ", ".join(f"{escape(where)} ({escape(why)})" for where, why in sorted(details["unread"].items()))
        blocks.append(context(f":warning: Descendants could not be looked for in {unread}."))
    blocks.append(context("Then amibot offers a rollout of the family's current version to the groups still on it."))
    return blocks


def revoked_line(reason: str) -> str:
    """How an image's revocation is marked (`/ami show`, the Home tab)."""
    return f":no_entry: *Revoked*: {escape(reason)}"
