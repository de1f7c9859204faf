"""Who may change what: the one rule, and the one place it is enforced.

The rule. An action that changes something is decided by the operators of the account it changes ([[accounts]]
`operators` replace [access].operators there; an approval, by that account's approvers). That account is resolved
from what the action acts on, never from which flags were typed: an image's owner; for a family, the account whose
channel parameter moves; for something new (create, register, base --copy, launch), the account it is made in;
`--account` only says where to look.

How it is enforced, for every command, button, form and approved request:
1. A user's action runs inside ``acting(user, what)`` (bot.slack.dispatch for commands, the click and form jobs, the
   approval engine for an approved request — executing it, reconciling it after a restart, and a watch going on with
   it (``approvals.acting_for``) — there with the request's own accounts already authorized).
2. Once it knows the account it changes, it calls ``authorize(ctx, account)``: the operators check (bot.core.access),
   and the account is remembered as authorized for this action.
3. Every boto3 client amibot makes (bot.aws.clients) refuses a changing API call — anything but Describe/List/Get…
   — in an account the current action has not authorized, and the approval engine refuses to open a request for one
   (``require``). A runner that forgets step 2 therefore fails closed, before anything changes.
Work nobody asked for in Slack (the scheduled digest, anchors, the job recovery at start) runs outside any action, on
amibot's own authority.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bot.core.errors import AccessDenied

log = logging.getLogger(__name__)

# Operations that read (or, for an image usage report, prepare something to read) and change nothing.
READ_PREFIXES = ("Describe", "List", "Get", "Search", "Lookup", "Head")
READ_OPERATIONS = frozenset({"CreateImageUsageReport", "AssumeRole"})


@dataclass
class Acting:
    """The user's action running in this thread (and in the pools it fans out to) and what it may change."""

    user: str
    what: str
    authorized: set[str] = field(default_factory=set)  # account ids ("" is the bot's own with no accounts)


_CURRENT: ContextVar[Acting | None] = ContextVar("amibot_acting", default=None)


@contextmanager
def acting(user: str, what: str, authorized: Iterable[str] = ()) -> Iterator[Acting]:
    """Run a user's action: changing calls are refused in every account it has not authorized."""
    token = _CURRENT.set(Acting(user, what, set(authorized)))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def current() -> Acting | None:
    return _CURRENT.get()


def authorize(ctx, account: Any, what: str | None = None):
    """Check that the acting user may change `account` (an Account, an id or a name; None or "": the bot's own)
    and remember it; return that account's AWS handle. Raises AccessDenied naming who may, or NotFound for an
    account amibot does not manage."""
    action = _CURRENT.get()
    if action is None:
        raise RuntimeError("authorize() outside an action: wrap the work in authority.acting(user, what)")
    handle = ctx.aws.of(account)
    ctx.access.check_account(action.user, handle.account, what or action.what)
    action.authorized.add(handle.account.id)
    return handle


def is_read(operation: str) -> bool:
    return operation.startswith(READ_PREFIXES) or operation in READ_OPERATIONS


def require(account_id: str, change: str, label: str = "") -> None:
    """Refuse `change` in the account unless the current action authorized it (outside any action: allowed)."""
    action = _CURRENT.get()
    if action is None or account_id in action.authorized:
        return
    where = label or account_id or "the bot's own account"
    log.error("refused %s in %s during %s by %s: the action did not authorize that account first (a bug)",
              change, where, action.what, action.user)
    refused = AccessDenied(f"amibot stopped `{action.what}` before it changed anything in {where}: it had not "
                           "checked who may act there. This is a bug in amibot; the log has the details.")
    refused.audit_outcome = f"refused: {where} not authorized before {change}"
    raise refused


def guard(account_id: str, label: str, operation: str) -> None:
    """The check every AWS call passes (hooked on each client by bot.aws.clients): reads pass, changes need
    authority."""
    if not is_read(operation):
        require(account_id, operation, label)
