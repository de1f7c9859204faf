"""The approval message, in each of its states, and the request lists.

Pure: a request (anything with bot.services.approvals.Request's fields) and the data the caller looked up — who
approved, who may approve, the confirmation text — in, Block Kit out. The engine imports nothing of bot/render/
(the outbox renders what it owes), so there is no import circle between them, not even for type checkers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.render.bake import promotion_details
from bot.render.blocks import (
    Message,
    actions,
    button,
    confirm_dialog,
    context,
    divider,
    escape,
    header,
    message,
    section,
)
from bot.render.deregister import deregister_details
from bot.render.digest import cleanup_details
from bot.render.launch import launch_details
from bot.render.lifecycle import stage_details
from bot.render.recycle_bin import enable_view
from bot.render.revoke import revoke_details
from bot.render.rollout import rollout_details
from bot.render.share import share_details
from bot.services import bake, deregister, launch, recycle_bin, revoke, rollout, share, stages
from bot.services.digest import CLEANUP_DETAILS

Request = Any  # a bot.services.approvals.Request, duck-typed

# A request's details stored as data ({"view": name, …}) are rendered here, by their view, every time the message
# is; a list is blocks rendered when the request was made (requests stored before details were data).
DETAIL_VIEWS: dict[str, Callable[[dict], list[dict]]] = {
    CLEANUP_DETAILS: cleanup_details,
    launch.DETAILS_VIEW: launch_details,
    share.DETAILS_VIEW: share_details,
    recycle_bin.ENABLE_DETAILS_VIEW: enable_view,
    stages.DETAILS_VIEW: stage_details,
    deregister.DETAILS_VIEW: deregister_details,
    bake.DETAILS_VIEW: promotion_details,
    revoke.DETAILS_VIEW: revoke_details,
    rollout.DETAILS_VIEW: rollout_details,
}


def detail_blocks(details: list[dict] | dict) -> list[dict]:
    if isinstance(details, list):
        return details
    view = DETAIL_VIEWS.get(details.get("view", ""))
    return view(details) if view else []


STAKES_CHARS = 2000  # a request's stakes where it is summed up (the Home tab): within a section's 3000
STAKES_LINES_PER_BLOCK = 6
STAKES_LINE_CHARS = 300


def _mrkdwn(item: dict | None) -> str:
    """A text object as mrkdwn: plain text is escaped, so it still shows as typed."""
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        return ""
    return item["text"] if item.get("type") == "mrkdwn" else escape(item["text"])


def _block_lines(block: dict) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"*{_mrkdwn(block.get('text'))}*"]
    if kind == "context":
        line = " · ".join(text for text in (_mrkdwn(element) for element in block.get("elements") or []) if text)
        return [line] if line else []
    if kind != "section":
        return []  # buttons, images, dividers: no facts
    lines = _mrkdwn(block.get("text")).splitlines()
    fields = [" ".join(_mrkdwn(field).split("\n")) for field in block.get("fields") or []]
    if fields:
        lines.append(" · ".join(field for field in fields if field))
    return [line for line in lines if line.strip()]


def _clipped(line: str) -> str:
    if len(line) <= STAKES_LINE_CHARS:
        return line
    cut = line[:STAKES_LINE_CHARS].rsplit(" ", 1)[0]
    return cut + " …"


def stakes_text(details: list[dict] | dict, limit: int = STAKES_CHARS) -> str:
    """What a request's message shows about it (its details, whatever its kind), summed up as mrkdwn for a place
    with less room: every block keeps its first lines, and what is left out is said to be in the message. "" when
    the request stored nothing to show."""
    try:
        blocks = detail_blocks(details)
    except Exception:  # stored in a shape its view no longer reads: nothing to sum up (said by the caller)
        return ""
    lines, cut = [], False
    for block in blocks:
        found = _block_lines(block) if isinstance(block, dict) else []
        if len(found) > STAKES_LINES_PER_BLOCK:
            found, cut = found[:STAKES_LINES_PER_BLOCK] + ["    …"], True
        lines += [_clipped(line) for line in found]
    text, used = [], 0
    for line in lines:
        if used + len(line) + 1 > limit:
            cut = True
            break
        text.append(line)
        used += len(line) + 1
    if cut:
        text.append("_…more in the request's message._")
    return "\n".join(text) if text else ""

APPROVE, REJECT, CANCEL = "approval.approve", "approval.reject", "approval.cancel"

STATE_LINES = {
    "approved": ":white_check_mark: Approved by {who} at {at} — executing",
    "executing": ":gear: Approved by {who} at {at} — executing",
    "succeeded": ":white_check_mark: Approved by {who} at {at} — done",
    "failed": ":x: Approved by {who} at {at} — failed",
    "rejected": ":no_entry: Rejected by {who} at {at}",
    "cancelled": ":leftwards_arrow_with_hook: Cancelled by {who} at {at}",
    "expired": ":hourglass: Expired unapproved at {at}",
}


def who(actor: str) -> str:
    """A Slack mention for user ids; the bot itself and anything else as plain text."""
    return f"<@{actor}>" if actor[:1] in ("U", "W") and actor.isalnum() else escape(actor)


def requester(request: Request) -> str:
    """Who asked: a mention for a person; a bake's promotion that amibot asked for says why it asked (the scheduler
    starting a scheduled bake, or a version built elsewhere), never a mention of "amibot"."""
    actor = request.requester or "amibot"
    params = request.params if isinstance(getattr(request, "params", None), dict) else {}
    if actor == "amibot" and params.get("bake"):
        return "amibot (built elsewhere)" if str(params["bake"]).startswith("found-") else "scheduled bake"
    return who(actor)


def _clock(stamp: str | None) -> str:
    if not stamp:
        return "?"
    return f"{stamp[:10]} {stamp[11:16]} UTC"


def _account(request: Request) -> str:
    """The account a request acts in, as the engine named it ("prod (111111111111)"); "" when no accounts."""
    label = getattr(request, "account_label", "")
    return label if isinstance(label, str) else ""


def accounts_needed(request: Request) -> list:
    """The accounts a request changing several needs an approval in (bot.services.approvals.AccountNeed, each
    with label, approvers_text, approved_by, covered, missing); [] for a request with one account."""
    needed = getattr(request, "accounts_needed", None)
    return list(needed) if isinstance(needed, list) and len(needed) > 1 else []


def needs_line(need: Any) -> str:
    """One account's state: approved (by whom), or who it still needs."""
    label = escape(need.label or "this account")
    by = ", ".join(f"<@{user}>" for user in need.approved_by)
    if need.covered:
        return f":white_check_mark: {label} has its approval ({by})"
    count = "an approval" if need.missing == 1 else f"{need.missing} more approvals"
    return (f":hourglass_flowing_sand: {label} still needs {count} from {need.approvers_text}"
            + (f" (approved so far by {by})" if by else ""))


def request_message(request: Request, approvers: list[str], approver_label: str, now: datetime,
                    confirm_text: str | None = None, account_label: str | None = None) -> Message:
    """The request's message; who may approve, the Approve confirmation's text and the account it acts in are
    given as data (a request the engine loaded carries the last two itself: account_label, approvers_text, and
    for a request changing several accounts each one's approval: accounts_needed)."""
    account = account_label if account_label is not None else _account(request)
    approver_label = getattr(request, "approvers_text", "") or approver_label
    several = accounts_needed(request)
    blocks = [header(("⚠️ " if request.danger else "") + request.title)]
    if account and not several:  # several: each is named with its approvals, below the plan
        blocks.append(section(f"*Account:* {escape(account)}"))
    if request.reason:
        blocks.append(section(f"*Why approval is needed:* {escape(request.reason)}"))
    blocks += detail_blocks(request.details)[:38]
    blocks.append(divider())
    got = f" · approvals {len(approvers)} of {request.required}" + (
        f": {', '.join(f'<@{a}>' for a in approvers)}" if approvers else "")
    if several:  # counted per account, below
        got = f" · approved by {', '.join(f'<@{a}>' for a in approvers)}" if approvers else ""
    blocks.append(context(f"`{request.id}` · requested by {requester(request)} at "
                          f"{_clock(request.created_at)}{got}"))
    if request.state == "pending":
        if request.note:
            blocks.append(context(f":information_source: {escape(request.note)}"))
        if several:
            lines = [f"Needs {request.required} approval(s) in each account it changes; the requester cannot "
                     "approve:", *(needs_line(need) for need in several)]
            blocks.append(context("\n".join(lines)[:2900]))
        else:
            blocks.append(context(f"Needs {request.required} approval(s) from {approver_label}; "
                                  "the requester cannot approve."))
        blocks.append(actions(
            button("Approve", APPROVE, request.id, style="danger" if request.danger else "primary",
                   confirm=confirm_dialog("Approve this?", confirm_text or f"{request.title}?", "Approve",
                                          style="danger" if request.danger else "primary")),
            button("Reject", REJECT, request.id, style="danger"),
            button("Cancel request", CANCEL, request.id),
            block_id=f"approval:{request.id}"))
    else:
        decider = who(request.decided_by) if request.decided_by else "amibot"
        line = STATE_LINES.get(request.state, request.state).format(who=decider, at=_clock(request.decided_at))
        if request.state == "rejected" and request.note:
            line += f": “{escape(request.note)}”"
        blocks.append(section(line))
        if request.outcome:
            blocks.append(section(f"*Outcome:* {escape(request.outcome)}"))
    return message(f"{request.title} — {request.state}", blocks)


def outcome_line(state: str, outcome: str) -> str:
    """The thread line that ends an execution: the outcome as the request message shows it (escaped)."""
    icon = ":white_check_mark:" if state == "succeeded" else ":x:"
    return f"{icon} {state.capitalize()}: {escape(outcome)}"


def unchecked_line(request_id: str, said: str) -> str:
    """The thread line for an executing request AWS could not be checked for at start."""
    return (f":warning: {request_id} was executing when the bot restarted and AWS could not be checked "
            f"({escape(said)}); it stays executing and is checked again at the next start.")


def requests_list(requests: list[Request], links: dict[str, str]) -> Message:
    if not requests:
        return message("No pending requests.", [section("No pending requests. :sparkles:")])
    lines = []
    for request in requests[:40]:
        link = f"<{links[request.id]}|{request.id}>" if links.get(request.id) else f"`{request.id}`"
        account = f" · {escape(_account(request))}" if _account(request) else ""
        lines.append(f"• {link} {escape(request.title)}{account} — {request.state}, asked by "
                     f"<@{request.requester}> at {_clock(request.created_at)}")
    body = f"{len(requests)} open request(s)"
    chunks = [lines[i:i + 15] for i in range(0, len(lines), 15)]
    return message(body, [section(f"*{body}*")] + [section("\n".join(chunk)) for chunk in chunks])


def reject_modal(request_id: str, title: str) -> dict:
    return {
        "type": "modal", "callback_id": "approval.reject_reason", "private_metadata": request_id,
        "title": {"type": "plain_text", "text": "Reject request"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "blocks": [section(f"Reject *{escape(title)}*?"),
                   {"type": "input", "block_id": "reason", "optional": True,
                    "label": {"type": "plain_text", "text": "Reason (optional)"},
                    "element": {"type": "plain_text_input", "action_id": "value", "multiline": True,
                                "max_length": 500}}],
    }


def _row_account(row: dict) -> str:
    """An audit row's account, when it names one: " · prod (111111111111)"."""
    detail = row.get("detail")
    label = detail.get("account_label") if isinstance(detail, dict) else None
    return f" · {escape(label)}" if isinstance(label, str) and label else ""


def audit_history(subject: str | None, rows: list[dict]) -> Message:
    title = f"History of {subject}" if subject else "Recent audit trail"  # plain words, escaped in the block too
    if not rows:
        return message(f"{title}: nothing recorded.", [section(f"*{escape(title)}*: nothing recorded.")])
    lines = [f"`{row['ts'][:16].replace('T', ' ')}` {who(row['actor'])} *{escape(row['action'])}* "
             f"{escape(row['target'] or '')}{_row_account(row)} — {escape(row['outcome'][:150])}" for row in rows]
    chunks = [lines[i:i + 12] for i in range(0, len(lines), 12)]
    return message(title, [section(f"*{escape(title)}* (newest first)")] + [section("\n".join(c)) for c in chunks])
