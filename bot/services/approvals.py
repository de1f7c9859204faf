"""The approval engine: nobody does an irreversible or out-of-policy thing alone.

A request moves pending → approved | rejected | expired | cancelled, and approved → executing →
succeeded | failed. Every transition is one conditional UPDATE (``WHERE state = …``), so double
clicks, concurrent approvers, Slack retries and two processes sharing the database can never run
an action twice; every transition is written to the audit trail.

Features plug in a ``Kind`` (what to execute once approved, how to reconcile after a crash) and call
``create_request``; the engine posts the message with Approve/Reject, collects the approvals,
executes exactly once, and reports progress and the outcome in the message and its thread.

The engine never talks to Slack itself and never renders: each message it owes is an intent (data)
written to the outbox in the same transaction as the state change that causes it; bot/slack/outbox.py renders
and delivers it (at once after the commit, and again until Slack has it).

Accounts: a request's params carry "account", the id of the account it acts in ("" or missing: the bot's own).
That account's `approvers` ([[accounts]]) replace [approvals].approvers for it (bot/core/access.py), and with accounts
configured its messages and audit rows name it: "prod (111111111111)". A request that changes several accounts
(params "accounts": a rollout, a revocation whose descendants live elsewhere) is approved only when EACH of them has
`required` approvals from people who may approve there; an approval covers every one of its accounts its approver
may approve in (recorded with it), so one person who may approve in two covers both with one click.
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.core import authority
from bot.core.access import mentions
from bot.core.accounts import Account
from bot.core.errors import AccessDenied, AmibotError, NotFound
from bot.core.text import escape
from bot.durable import anchors, audit, jobs, outbox

log = logging.getLogger(__name__)

EXECUTE_JOB = "approval.execute"
PENDING, APPROVED, EXECUTING = "pending", "approved", "executing"
SUCCEEDED, FAILED = "succeeded", "failed"
REJECTED, EXPIRED, CANCELLED = "rejected", "expired", "cancelled"
OPEN_STATES = (PENDING, APPROVED, EXECUTING)


@dataclass
class Kind:
    name: str
    execute: Callable[..., str]  # (ctx, request, progress) -> one-line outcome; raise AmibotError on failure
    # (ctx, request) -> SUCCEEDED | FAILED | Reconciled | None (None: nothing was done, approve again)
    reconcile: Callable[..., Any] | None = None
    # The Approve button's confirmation (plain text, ≤ 300 characters), wherever an Approve is offered (the request's
    # message, the Home tab): a string, or (params) -> str, or (params, details) -> str for a kind whose
    # confirmation reads what its request stored (a preflight's undo facts). ONE place per kind says it.
    confirm_text: str | Callable[..., str] | None = None


@dataclass
class Reconciled:
    """What a kind's reconcile found and finished after a restart, in words for the requester."""

    state: str  # SUCCEEDED | FAILED
    outcome: str


KINDS: dict[str, Kind] = {}  # filled by the composition root (bot/wiring.py), never on import


def register_kind(kind: Kind) -> None:
    KINDS[kind.name] = kind


@dataclass
class AccountNeed:
    """One of the accounts a request changes, as deciding sees it (and the message and Home tab show it)."""

    key: str  # the account's id ("" for the bot's own with no accounts configured)
    label: str  # "prod (111111111111)": plain text (a name from config), escaped where shown
    approvers_text: str  # who may approve there, but the requester: Slack mentions (mrkdwn)
    approved_by: list[str]  # user ids whose approval covered it, first first
    covered: bool  # it has the `required` approvals it needs
    missing: int = 0  # how many more it needs


@dataclass
class Request:
    id: str
    kind: str
    params: dict[str, Any]
    title: str
    details: list[dict] | dict  # data for bot/render/approvals.py ({"view": …}); a list: blocks stored pre-rendered
    reason: str | None
    danger: bool
    requester: str
    channel: str
    message_ts: str | None
    state: str
    required: int
    created_at: str
    updated_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    reminded_at: str | None = None
    outcome: str | None = None
    # Not stored: filled from the managed accounts when loaded (get, pending), for the message and the lists
    account_label: str = ""  # "prod (111111111111)"; "" with no accounts configured; several: comma-separated
    approvers_text: str = ""  # who may approve this one, as Slack text
    # A request changing several accounts: each one, who may approve there and whether it has its approval
    accounts_needed: list[AccountNeed] = field(default_factory=list)

    @property
    def account_id(self) -> str:
        value = self.params.get("account") if isinstance(self.params, dict) else None
        return value if isinstance(value, str) else ""

    @property
    def accounts(self) -> list[str]:
        """Every account the request changes: its params' "accounts" when it spans several (a rollout, a
        revocation with descendants elsewhere; the requester was authorized in each when asking and the approvers
        saw each), else its one account."""
        listed = self.params.get("accounts") if isinstance(self.params, dict) else None
        named = [value for value in listed if isinstance(value, str)] if isinstance(listed, list) else []
        return list(dict.fromkeys([self.account_id, *named]))

    @classmethod
    def from_row(cls, row: dict) -> Request:
        row = dict(row)
        row["params"] = json.loads(row["params"])
        row["details"] = json.loads(row["details"])
        row["danger"] = bool(row["danger"])
        return cls(**row)

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))

    def confirm_text(self) -> str:
        kind = KINDS.get(self.kind)
        text = kind.confirm_text if kind else None
        if callable(text):
            try:
                text = text(self.params, self.details) if _takes_details(text) else text(self.params)
            except Exception:  # a request stored in an older shape: never a bare "Approve?" that hides the stakes
                log.exception("the confirmation of %s could not be made", self.id)
                text = f"{self.title}? Open the request's message to see what is at stake first."
        return text or f"{self.title}?"


def _takes_details(confirm: Callable[..., str]) -> bool:
    try:
        parameters = inspect.signature(confirm).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _stamp(ctx) -> str:
    return ctx.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def get(ctx, request_id: str) -> Request:
    row = ctx.store.one("SELECT * FROM requests WHERE id = ?", (request_id,))
    if row is None:
        raise NotFound(f"request {request_id} not found")
    return _loaded(ctx, Request.from_row(row))


def _loaded(ctx, request: Request) -> Request:
    request.account_label = account_label(ctx, request)
    request.approvers_text = _approver_label(ctx, request)
    needed = needs(ctx, request)
    request.accounts_needed = needed if len(needed) > 1 else []
    return request


# --- accounts -----------------------------------------------------------------------------------------

def _managed(ctx) -> list[Account]:
    aws = getattr(ctx, "aws", None)
    return list(aws.accounts) if aws is not None else []


def _resolved(managed: list[Account], account_id: str) -> Account | None:
    if not account_id:
        return next((account for account in managed if account.is_home), None)
    return next((account for account in managed if account.id == account_id), None) or Account(id=account_id)


def account_of(ctx, request: Request | None) -> Account | None:
    """The account a request acts in: its params' "account" (missing or "": the bot's own account), as managed
    (with its per-account approvers); an account no longer managed is known by its id alone. None with no
    accounts configured."""
    if request is None:
        return None
    managed = _managed(ctx)
    if not managed:
        return None
    return _resolved(managed, request.account_id)


def accounts_of(ctx, request: Request) -> list[tuple[str, Account | None]]:
    """Every account the request changes, its own first, each once: (key, account). The key is the account's id
    (the one recorded with an approval); with no accounts configured there is one, ("", None)."""
    managed = _managed(ctx)
    if not managed:
        return [("", None)]
    found: dict[str, Account | None] = {}
    for account_id in request.accounts:
        account = _resolved(managed, account_id)
        found.setdefault(account.id if account is not None else "", account)
    return list(found.items())


def _label(account: Account | None) -> str:
    return account.label if account is not None and account.id else ""


def account_label(ctx, request: Request | None) -> str:
    """"prod (111111111111)"; a request changing several accounts names each: "prod (…), staging (…)"."""
    if request is not None and len(request.accounts) > 1:
        labels = [_label(account) for _key, account in accounts_of(ctx, request)]
        return ", ".join(label for label in labels if label)
    return _label(account_of(ctx, request))


def approvers_of(ctx, request_id: str) -> list[str]:
    return [row["approver"] for row in
            ctx.store.db["approvals"].rows_where("request_id = ?", [request_id], order_by="at", select="approver")]


def _given(ctx, request_id: str) -> list[tuple[str, list[str] | None]]:
    """Each approval and the account keys it covered (None: given before approvals recorded theirs — it covered
    the request's own account)."""
    rows = ctx.store.db["approvals"].rows_where("request_id = ?", [request_id], order_by="at",
                                                select="approver, accounts")
    return [(row["approver"], json.loads(row["accounts"]) if row["accounts"] else None) for row in rows]


def _may_approve_in(ctx, user: str, account: Account | None) -> bool:
    """Its approvers; without any, its operators (without operators, anyone)."""
    if ctx.access.approver_ids(account):
        return ctx.access.is_approver(user, account)
    return ctx.access.is_operator(user, account)


def _who_approves(ctx, account: Account | None, requester: str) -> str:
    """Who may approve in an account, the requester left out, as Slack text."""
    configured = [entry for entry in ctx.access.approver_ids(account) if entry != requester]
    if configured:
        return mentions(configured, shown=len(configured))
    if ctx.access.approver_ids(account):
        return "an approver other than the requester (none is listed: ask for one to be added)"
    operators = [entry for entry in ctx.access.operators(account) if entry != requester]
    if operators:
        return f"an operator of {escape(_label(account))} ({mentions(operators)})" if _label(account) else (
            f"an operator ({mentions(operators)})")
    return "anyone but the requester"


def needs(ctx, request: Request) -> list[AccountNeed]:
    """Each account the request changes: who may approve there, who approved for it, whether it is covered."""
    accounts = accounts_of(ctx, request)
    primary = accounts[0][0]
    given = _given(ctx, request.id)
    found = []
    for key, account in accounts:
        by = [who for who, keys in given if (key in keys if keys is not None else key == primary)]
        found.append(AccountNeed(key=key, label=_label(account),
                                 approvers_text=_who_approves(ctx, account, request.requester), approved_by=by,
                                 covered=len(by) >= request.required, missing=max(0, request.required - len(by))))
    return found


def still_needed(needed: list[AccountNeed]) -> str:
    """"staging (222222222222) still needs an approval from <@U0DAVE>" for each account still waiting (mrkdwn)."""
    lines = []
    for need in needed:
        if need.covered:
            continue
        count = "an approval" if need.missing == 1 else f"{need.missing} more approvals"
        lines.append(f"{escape(need.label or 'this account')} still needs {count} from {need.approvers_text}")
    return "; ".join(lines)


def awaits(ctx, user: str, request: Request) -> bool:
    """Whether the user's approval can still move this pending request: not its requester, and they may approve
    in an account it changes that still lacks its approval (a request with one account: its approvers)."""
    if request.state != PENDING or user == request.requester:
        return False
    waiting = {need.key for need in needs(ctx, request) if not need.covered}
    return any(_may_approve_in(ctx, user, account) for key, account in accounts_of(ctx, request) if key in waiting)


# --- the requests table, for the rest of the bot (this module owns it: bot/durable/store.py) ---------------

def set_message_ts(store, request_id: str, ts: str, channel: str | None = None) -> bool:
    """Record where a request's message was posted (and the channel, when it went elsewhere); only the first post
    is recorded — one conditional UPDATE, so a request's message is updated from then on, never posted again."""
    columns = {"message_ts": ts, **({"channel": channel} if channel else {})}
    sets = ", ".join(f"{name} = :{name}" for name in columns)
    return store.execute(f"UPDATE requests SET {sets} WHERE id = :id AND message_ts IS NULL",
                         {**columns, "id": request_id}).rowcount == 1


def made_by(store, requester: str, limit: int) -> list[Request]:
    """A requester's latest requests, newest first."""
    rows = store.db["requests"].rows_where("requester = ?", [requester], order_by="created_at DESC", limit=limit)
    return [Request.from_row(row) for row in rows]


def params_of(store, kind: str, state: str | None = None, image_id: str | None = None) -> list[tuple[str, dict]]:
    """(id, params) of the requests of ``kind`` (in ``state``, about ``image_id``, when given), oldest first."""
    where, args = ["kind = ?"], [kind]
    if state is not None:
        where.append("state = ?")
        args.append(state)
    if image_id is not None:
        where.append("json_extract(params, '$.image_id') = ?")
        args.append(image_id)
    # Plain SQL, not sqlite-utils: `amibot digest` reads this (drift's retired names) and stays without its 12 MB.
    rows = store.query(f"SELECT id, params FROM requests WHERE {' AND '.join(where)} ORDER BY created_at", tuple(args))
    return [(row["id"], json.loads(row["params"])) for row in rows]


def count_by_state(store) -> dict[str, int]:
    """{state: count} of every request in the database (the metrics' gauge)."""
    rows = store.db.query("SELECT state, count(*) AS n FROM requests GROUP BY state")
    return {row["state"]: row["n"] for row in rows}


def _record(ctx, request: Request, actor: str, action: str, outcome: str, **detail: Any) -> None:
    named = {}
    label = request.account_label or account_label(ctx, request)
    if label:  # the account it acts in, by name and id
        named = {"account": account_of(ctx, request).id, "account_label": label}
    audit.record(ctx.store, actor=actor, action=f"request.{action}", channel=request.channel, target=request.id,
                 outcome=outcome, detail={"kind": request.kind, "title": request.title, **request.params, **named,
                                          **detail})
    anchors.after_decision(ctx, action)  # a decision or outcome is anchored outside the database


def _transition(ctx, request_id: str, from_states: tuple[str, ...], to_state: str, **columns: Any) -> bool:
    """Move a request from one of from_states to to_state in one statement; True if this call won."""
    sets = ", ".join(f"{name} = :{name}" for name in columns)
    sql = (f"UPDATE requests SET state = :to_state, updated_at = :now{', ' + sets if sets else ''} "
           f"WHERE id = :id AND state IN ({', '.join(f':from{i}' for i in range(len(from_states)))})")
    params = {"to_state": to_state, "now": _stamp(ctx), "id": request_id, **columns,
              **{f"from{i}": state for i, state in enumerate(from_states)}}
    return ctx.store.execute(sql, params).rowcount == 1


def _owe(ctx, request_id: str, intent: dict[str, Any]) -> None:
    """A message this state change owes Slack, written in the caller's transaction (see bot/slack/outbox.py)."""
    outbox.owe(ctx.store, request_id, {**intent, "request_id": request_id}, _stamp(ctx))


def _refresh(ctx, request: Request) -> None:
    """Owe a re-render of the request's message (posted first if it never was)."""
    _owe(ctx, request.id, {"kind": "request_message"})


def _thread(ctx, request: Request, text: str) -> None:
    """A line in the request's thread; `text` is mrkdwn with no data in it (data goes in an intent of its own, below,
    so the outbox's renderer escapes it)."""
    _owe(ctx, request.id, {"kind": "thread", "text": text})


def say(ctx, request_id: str, text: str) -> None:
    """A line in a request's thread from a feature's own follow-up (a rollout's watch); `text` is mrkdwn whose data
    the caller escaped."""
    request = get(ctx, request_id)
    with ctx.store.transaction():
        _thread(ctx, request, text)
    _deliver(ctx)


def _thread_outcome(ctx, request: Request, state: str, outcome: str) -> None:
    """The outcome line: `outcome` is words as the action said them, rendered (escaped) at delivery."""
    _owe(ctx, request.id, {"kind": "outcome", "state": state, "outcome": outcome})


def _thread_unchecked(ctx, request: Request, said: str) -> None:
    """An executing request AWS could not be checked for at start: `said` is why, rendered at delivery."""
    _owe(ctx, request.id, {"kind": "unchecked", "said": said})


def _deliver(ctx) -> None:
    """After a commit: deliver what it owes now, on this thread; the outbox worker retries whatever fails."""
    kick = ctx.deliver_now
    if kick is None:
        return
    try:
        kick()
    except Exception:
        log.exception("delivering Slack messages failed; the outbox will retry")


# --- creating ---------------------------------------------------------------------------------------

def create_request(ctx, *, kind: str, params: dict[str, Any], requester: str, channel: str, title: str,
                   details: list[dict] | dict | None = None, reason: str | None = None, danger: bool = False
                   ) -> Request:
    """Store a request, post its approval message, audit it. Returns the stored request."""
    if kind not in KINDS:
        raise ValueError(f"unknown approval kind {kind}")
    if authority.current() is not None:  # a user's action opens it: only in an account it has authorized
        acts_in = ctx.aws.of(params.get("account") or None).account  # "" or missing: the bot's own account
        authority.require(acts_in.id, f"a {kind} request", acts_in.label if acts_in.id else "")
    stamp = _stamp(ctx)
    request = Request(id=f"req-{secrets.token_hex(4)}", kind=kind, params=params, title=title,
                      details=details or [], reason=reason, danger=danger, requester=requester,
                      channel=ctx.policy.approvals.channel or channel, message_ts=None, state=PENDING,
                      required=ctx.policy.approvals.required, created_at=stamp, updated_at=stamp)
    with ctx.store.transaction():  # the request, its audit row and the message it owes: all or nothing
        ctx.store.execute(
            "INSERT INTO requests (id, kind, params, title, details, reason, danger, requester, channel, state,"
            " required, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request.id, kind, json.dumps(params), title, json.dumps(request.details), reason, int(danger),
             requester, request.channel, PENDING, request.required, stamp, stamp))
        _record(ctx, request, requester, "created", "pending", reason=reason, danger=danger)
        _refresh(ctx, request)
    _deliver(ctx)
    return get(ctx, request.id)


def update_details(ctx, request_id: str, details: list[dict] | dict) -> Request:
    """Replace what a request's message shows about it (e.g. a report that arrived after it was posted) and owe
    the message a re-render, whatever the request's state. Raises NotFound."""
    request = get(ctx, request_id)
    with ctx.store.transaction():
        ctx.store.db["requests"].update(request.id, {"details": json.dumps(details)})
        _refresh(ctx, request)
    _deliver(ctx)
    return get(ctx, request.id)


def approver_label(ctx, request: Request | None = None) -> str:
    """Who may approve (the request's, when given: its account's approvers), as Slack text for the renderer."""
    return _approver_label(ctx, request)


def _approver_label(ctx, request: Request | None = None) -> str:
    account = account_of(ctx, request)
    configured = ctx.access.approver_ids(account)
    where = f" of {account.label}" if account is not None and account.id and (
        account.approvers is not None or account.operators is not None) else ""
    if not configured:
        if not ctx.access.operators(account):
            return "anyone but the requester"
        return f"an operator{where} other than the requester"
    return mentions(configured, shown=len(configured))


def may_approve(ctx, user: str, request: Request | None = None) -> bool:
    """Configured approvers; without any, operators; without operators, anyone (never the requester). For a
    request, those of the account it acts in ([[accounts]] approvers / operators replace the global lists) — of
    any one of them, for a request changing several."""
    if request is None:
        return _may_approve_in(ctx, user, None)
    return any(_may_approve_in(ctx, user, account) for _key, account in accounts_of(ctx, request))


# --- deciding ---------------------------------------------------------------------------------------

@dataclass
class Decision:
    """What the clicker is told (ephemerally); the channel message is updated separately."""

    text: str
    changed: bool


# One statement decides, exactly once: still pending, and EVERY account the request changes (:needed, their keys)
# has `required` approvals covering it — an approval's "accounts" are the keys it covered; NULL (given before
# approvals recorded them) covered the request's own account (:primary).
DECIDE = """
    UPDATE requests SET state = 'approved', updated_at = :now, decided_by = :user, decided_at = :now
    WHERE id = :id AND state = 'pending' AND NOT EXISTS (
        SELECT 1 FROM json_each(:needed) AS need WHERE (
            SELECT count(*) FROM approvals AS given WHERE given.request_id = requests.id AND (
                (given.accounts IS NULL AND need.value = :primary)
                OR EXISTS (SELECT 1 FROM json_each(given.accounts) AS covered WHERE covered.value = need.value))
        ) < requests.required)
"""


def _labels(needed: list[AccountNeed]) -> str:
    return " and ".join(f"{escape(need.label or 'this account')}'s" for need in needed)


def approve(ctx, request_id: str, user: str) -> Decision:
    request = get(ctx, request_id)
    if request.state != PENDING:
        return Decision(f"{request.id} is already {request.state}; nothing to approve.", False)
    if user == request.requester:
        _record(ctx, request, user, "approve-refused", "refused: requester cannot approve")
        raise AccessDenied("You asked for this, so someone else has to approve it (four eyes).")
    accounts = accounts_of(ctx, request)
    several = len(accounts) > 1
    mine = [key for key, account in accounts if _may_approve_in(ctx, user, account)]
    if not mine:
        _record(ctx, request, user, "approve-refused", "refused: not an approver")
        if several:
            raise AccessDenied(f"You are not an approver for {request.id} in any of the accounts it changes "
                               f"({escape(request.account_label)}): {still_needed(needs(ctx, request))}.")
        where = f" (in {request.account_label})" if request.account_label else ""
        raise AccessDenied(f"You are not an approver for {request.id}{where}; approvers: "
                           f"{_approver_label(ctx, request)}.")
    labels = {key: _label(account) for key, account in accounts}
    covers = {"covered": mine, "covered_labels": [labels[key] for key in mine]} if any(labels.values()) else {}
    with ctx.store.transaction():  # BEGIN IMMEDIATE: the approvals read here are the ones the decision counts
        if user in approvers_of(ctx, request.id):
            return Decision(f"You already approved {request.id}.", False)
        needed = needs(ctx, request)
        waiting = [need for need in needed if not need.covered]
        if waiting and not any(need.key in mine for need in waiting):  # theirs are covered; others are not
            have = [need for need in needed if need.covered and need.key in mine]
            rest = "; ".join(f"{escape(need.label or 'this account')}'s (from {need.approvers_text})"
                             for need in waiting)
            return Decision(f"{request.id} already has {_labels(have)} approval; waiting for {rest}.", False)
        if not ctx.store.execute("INSERT OR IGNORE INTO approvals (request_id, approver, at, accounts)"
                                 " VALUES (?, ?, ?, ?)", (request.id, user, _stamp(ctx), json.dumps(mine))).rowcount:
            return Decision(f"You already approved {request.id}.", False)
        _record(ctx, request, user, "approval", "approval recorded", **covers)
        won = ctx.store.execute(DECIDE, {"now": _stamp(ctx), "user": user, "id": request.id,
                                         "needed": json.dumps([key for key, _account in accounts]),
                                         "primary": accounts[0][0]}).rowcount == 1
        request = get(ctx, request_id)
        if won:
            _record(ctx, request, user, "approved", "approved", approvers=approvers_of(ctx, request.id))
        _refresh(ctx, request)
    _deliver(ctx)
    if not won:
        have = len(approvers_of(ctx, request.id))
        if request.state == PENDING and several:
            covered = [need for need in request.accounts_needed if need.key in mine]
            return Decision(f"Approval recorded for {', '.join(escape(need.label) for need in covered)}; "
                            f"{still_needed(request.accounts_needed)}.", True)
        if request.state == PENDING:
            return Decision(f"Approval recorded: {have} of {request.required}.", True)
        return Decision(f"{request.id} is already {request.state}.", False)
    ctx.jobs.submit(EXECUTE_JOB, {"request_id": request.id})  # after the commit: the worker must see 'approved'
    return Decision(f"Approved {request.id}; executing now.", True)


def reject(ctx, request_id: str, user: str, reason: str | None = None) -> Decision:
    request = get(ctx, request_id)
    if request.state != PENDING:
        return Decision(f"{request.id} is already {request.state}.", False)
    if user != request.requester and not may_approve(ctx, user, request):
        _record(ctx, request, user, "reject-refused", "refused: not an approver")
        raise AccessDenied(f"Only approvers can reject {request.id}; the requester can cancel it.")
    with ctx.store.transaction():
        if not _transition(ctx, request.id, (PENDING,), REJECTED, decided_by=user, decided_at=_stamp(ctx),
                           note=(reason or None)):
            return Decision(f"{request.id} was decided a moment ago.", False)
        request = get(ctx, request_id)
        _record(ctx, request, user, "rejected", "rejected", note=reason)
        _refresh(ctx, request)
    _deliver(ctx)
    return Decision(f"Rejected {request.id}.", True)


def cancel(ctx, request_id: str, user: str) -> Decision:
    request = get(ctx, request_id)
    if user != request.requester:
        _record(ctx, request, user, "cancel-refused", "refused: not the requester")
        raise AccessDenied("Only the person who asked can cancel a request; approvers can reject it.")
    with ctx.store.transaction():
        if not _transition(ctx, request.id, (PENDING,), CANCELLED, decided_by=user, decided_at=_stamp(ctx)):
            return Decision(f"{request.id} is already {get(ctx, request_id).state}; it cannot be cancelled.", False)
        request = get(ctx, request_id)
        _record(ctx, request, user, "cancelled", "cancelled")
        _refresh(ctx, request)
    _deliver(ctx)
    return Decision(f"Cancelled {request.id}.", True)


def cancel_undeliverable(ctx, request_id: str, note: str) -> None:
    """The outbox could not show a new request to anyone: cancel it (with why) rather than leave it unseen."""
    with ctx.store.transaction():
        if _transition(ctx, request_id, (PENDING,), CANCELLED, decided_at=_stamp(ctx), note=note[:500]):
            _record(ctx, get(ctx, request_id), "amibot", "cancelled", f"cancelled: {note}")


# --- executing --------------------------------------------------------------------------------------

def acting_for(ctx, request: Request):
    """The scope an approved request's work runs in — executing it, reconciling it after a restart, a watch that
    goes on with it: what it was approved for, its account(s), and nothing else may be changed."""
    return authority.acting(request.requester, f"{request.kind} {request.id}",
                            authorized=[ctx.aws.of(account or None).account.id for account in request.accounts])


def execute(ctx, request_id: str) -> None:
    """Run an approved request's action exactly once (the job behind EXECUTE_JOB)."""
    with ctx.store.transaction():
        if not _transition(ctx, request_id, (APPROVED,), EXECUTING):
            return  # someone else is executing it, or it already ran
        request = get(ctx, request_id)
        _record(ctx, request, "amibot", "executing", "executing")
        _thread(ctx, request, f":gear: Executing {request.id}…")
    _deliver(ctx)

    def progress(text: str) -> None:
        _thread(ctx, request, text)
        _deliver(ctx)

    try:
        with acting_for(ctx, request):
            outcome = KINDS[request.kind].execute(ctx, request, progress)
    except AmibotError as error:
        _finish(ctx, request, FAILED, error.message)
    except Exception as error:
        log.exception("executing %s failed", request.id)
        _finish(ctx, request, FAILED, f"unexpected error ({type(error).__name__}); see the bot's log")
    else:
        _finish(ctx, request, SUCCEEDED, outcome)


def _finish(ctx, request: Request, state: str, outcome: str) -> None:
    with ctx.store.transaction():
        _transition(ctx, request.id, (EXECUTING,), state, outcome=outcome)
        request = get(ctx, request.id)
        _record(ctx, request, "amibot", state, f"{state}: {outcome}")
        _thread_outcome(ctx, request, state, outcome)
        _refresh(ctx, request)
    _deliver(ctx)


def recover(ctx) -> dict[str, int]:
    """At start: approved → execute; executing → reconcile against AWS step by step (finishing the steps a
    crash left undone), never blindly re-run; a request whose message was never posted gets it posted."""
    counts = {"executed": 0, "reconciled": 0, "reopened": 0, "reposted": 0}
    for row in ctx.store.db["requests"].rows_where(
            "message_ts IS NULL AND state IN ('pending', 'approved', 'executing')", select="id"):
        if outbox.owes(ctx.store, row["id"]):
            continue
        _owe(ctx, row["id"], {"kind": "request_message"})  # from before the outbox, or its row was lost
        counts["reposted"] += 1
    for row in ctx.store.db["requests"].rows_where("state = 'approved'", select="id"):
        if not jobs.is_active(ctx.store, EXECUTE_JOB, {"request_id": row["id"]}):
            ctx.jobs.submit(EXECUTE_JOB, {"request_id": row["id"]})
            counts["executed"] += 1
    for row in ctx.store.db["requests"].rows_where("state = 'executing'"):
        request = Request.from_row(row)
        kind = KINDS.get(request.kind)
        verdict = None
        if kind and kind.reconcile:
            try:
                with acting_for(ctx, request):
                    verdict = kind.reconcile(ctx, request)
            except Exception as error:  # AWS unreachable at start, say: keep what is known for the next start
                said = error.message if isinstance(error, AmibotError) else type(error).__name__
                log.warning("cannot reconcile %s: %s", request.id, said)
                _thread_unchecked(ctx, request, said)
                _deliver(ctx)
                continue
        if isinstance(verdict, Reconciled):
            _finish(ctx, request, verdict.state, verdict.outcome)
            counts["reconciled"] += 1
        elif verdict == SUCCEEDED:
            _finish(ctx, request, SUCCEEDED, "completed before the bot restarted (checked against AWS)")
            counts["reconciled"] += 1
        else:
            _finish(ctx, request, FAILED, "interrupted by a restart and not completed in AWS; it may be approved again")
            _reopen(ctx, request.id)
            counts["reopened"] += 1
    _deliver(ctx)
    return counts


def _reopen(ctx, request_id: str) -> None:
    """A failed, interrupted request goes back to pending with fresh approvals needed."""
    with ctx.store.transaction():
        ctx.store.db["approvals"].delete_where("request_id = ?", [request_id])
        if _transition(ctx, request_id, (FAILED,), PENDING, decided_by=None, decided_at=None,
                       note="interrupted by a restart; approve again to retry"):
            request = get(ctx, request_id)
            _record(ctx, request, "amibot", "reopened", "pending again after an interrupted execution")
            _refresh(ctx, request)
    _deliver(ctx)


# --- time: reminders and expiry -----------------------------------------------------------------------

def sweep(ctx) -> dict[str, int]:
    """Remind approvers once after remind_after_hours; expire after expire_after_hours. Idempotent."""
    now = ctx.clock()
    policy = ctx.policy.approvals
    counts = {"reminded": 0, "expired": 0}
    for row in ctx.store.db["requests"].rows_where("state = 'pending'", order_by="created_at"):
        request = Request.from_row(row)
        waited = now - request.created
        if waited >= timedelta(hours=policy.expire_after_hours):
            with ctx.store.transaction():
                if _transition(ctx, request.id, (PENDING,), EXPIRED, decided_at=_stamp(ctx)):
                    request = get(ctx, request.id)
                    _record(ctx, request, "amibot", "expired", f"expired after {policy.expire_after_hours:g} h")
                    _refresh(ctx, request)
                    _thread(ctx, request, f":hourglass: {request.id} expired unapproved after "
                                          f"{policy.expire_after_hours:g} hours. Ask again if it is still needed.")
                    counts["expired"] += 1
        elif waited >= timedelta(hours=policy.remind_after_hours) and not request.reminded_at:
            with ctx.store.transaction():
                claimed = ctx.store.execute("UPDATE requests SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL"
                                            " AND state = 'pending'", (_stamp(ctx), request.id)).rowcount
                if claimed:
                    have = len(approvers_of(ctx, request.id))
                    _record(ctx, request, "amibot", "reminded", "reminder posted")
                    hours = f"{waited.total_seconds() / 3600:.0f} hours"
                    needed = needs(ctx, request)
                    if len(needed) > 1:  # only who is still needed, account by account
                        text = (f":bell: {request.id} has waited {hours}: {still_needed(needed)}. It expires "
                                f"after {policy.expire_after_hours:g} hours.")
                    else:
                        text = (f":bell: {_approver_label(ctx, request)}: {request.id} has waited {hours} ({have} "
                                f"of {request.required} approvals). It expires after "
                                f"{policy.expire_after_hours:g} hours.")
                    _thread(ctx, request, text)
                    counts["reminded"] += 1
    _deliver(ctx)
    return counts


def pending(ctx) -> list[Request]:
    return [_loaded(ctx, Request.from_row(row)) for row in
            ctx.store.db["requests"].rows_where("state IN ('pending', 'approved', 'executing')", order_by="created_at")]


def at_start(ctx) -> None:
    """Recover what a stopped process left, then send the reminders and expiries missed while it was down."""
    counts = recover(ctx)
    sweep(ctx)
    if any(counts.values()):
        log.info("approval requests recovered: %s", counts)
