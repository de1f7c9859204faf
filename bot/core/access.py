"""Who may do what: operators for changing commands, allowed channels, approvers.

User-group ids (S…) are expanded through usergroups.users.list and cached briefly, so a change in
Slack takes effect within `ttl` seconds without a call per click.

Per account: an `[[accounts]]` entry's `operators` / `approvers` REPLACE `[access].operators` /
`[approvals].approvers` for what acts in that account (the global lists do not also apply there), with the same
rules: an empty list of operators lets anyone act, no approvers means that account's operators approve. An
account without the key uses the global list. `account` below is a bot.core.accounts.Account, an account id or name,
or None (the global lists: single-account behaviour).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.accounts import Account
from bot.core.accounts import find as find_account
from bot.core.errors import AccessDenied

log = logging.getLogger(__name__)


def mentions(ids: Iterable[str], shown: int = 6) -> str:
    """Who, as Slack shows them: users as <@U…>, user groups as <!subteam^S…>. Slack renders their names; in the
    ephemeral answers refusals go out as, nobody is notified."""
    named = [f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>" for entry in ids]
    more = f" and {len(named) - shown} more" if len(named) > shown else ""
    return ", ".join(named[:shown]) + more


class Access:
    def __init__(self, policy, slack: WebClient, ttl: float = 300.0, monotonic: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.slack = slack
        self.ttl = ttl
        self._monotonic = monotonic
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def group_members(self, group_id: str) -> frozenset[str]:
        now = self._monotonic()
        with self._lock:
            cached = self._groups.get(group_id)
            if cached and now - cached[0] < self.ttl:
                return cached[1]
        try:
            users = frozenset(self.slack.usergroups_users_list(usergroup=group_id).get("users", []))
        except SlackApiError as error:
            # Fail closed: an unresolvable group grants nobody, and the operator sees why in the log.
            log.warning("cannot resolve user group %s: %s", group_id, error.response.get("error"))
            users = cached[1] if cached else frozenset()
        with self._lock:
            self._groups[group_id] = (now, users)
        return users

    def expand(self, ids: Iterable[str]) -> set[str]:
        members: set[str] = set()
        for entry in ids:
            if entry.startswith("S"):
                members |= self.group_members(entry)
            else:
                members.add(entry)
        return members

    # --- per account -------------------------------------------------------------------------------------

    def account(self, ref: Account | str | None) -> Account | None:
        """The configured entry for an account (it carries the overrides); an unconfigured one as is."""
        if ref is None or ref == "":
            return None
        ref_id = ref.id if isinstance(ref, Account) else str(ref)
        if not ref_id:
            return None
        configured = find_account(self.policy.accounts, ref_id)
        if configured is not None:
            return configured
        return ref if isinstance(ref, Account) else None

    def operators(self, account: Account | str | None = None) -> tuple[str, ...]:
        entry = self.account(account)
        if entry is not None and entry.operators is not None:
            return tuple(entry.operators)
        return tuple(self.policy.access.operators)

    def approver_ids(self, account: Account | str | None = None) -> tuple[str, ...]:
        entry = self.account(account)
        if entry is not None and entry.approvers is not None:
            return tuple(entry.approvers)
        return tuple(self.policy.approvals.approvers)

    def is_operator(self, user: str, account: Account | str | None = None) -> bool:
        operators = self.operators(account)
        return not operators or user in self.expand(operators)

    def is_operator_anywhere(self, user: str) -> bool:
        """Globally, or in one of the accounts that name their own operators."""
        return self.is_operator(user) or any(
            self.is_operator(user, entry) for entry in self.policy.accounts if entry.operators is not None)

    def channel_allowed(self, channel: str | None) -> bool:
        channels = self.policy.access.channels
        return not channels or channel in channels

    def check_channel(self, channel: str | None, what: str) -> None:
        if not self.channel_allowed(channel):
            allowed = ", ".join(f"<#{c}>" for c in self.policy.access.channels)
            raise AccessDenied(f"amibot does not run `{what}` in this channel; use {allowed}.")

    def check_may_change_somewhere(self, user: str, channel: str | None, what: str,
                                   account: Account | str | None = None) -> None:
        """The early refusal of a changing command or click, before any AWS call: the channel, and the user must
        be an operator of `account` when it is named (`--account`, a button naming its account), else of some
        account. It grants nothing: the account the action changes is authorized once it is known
        (bot/core/authority.py)."""
        self.check_channel(channel, what)
        if self.account(account) is not None:
            self.check_account(user, account, what)
            return
        if not self.is_operator_anywhere(user):
            raise AccessDenied(f"Only amibot operators may run `{what}`. {self._ask(self.operators())}")

    def check_account(self, user: str, account: Account | str | None, what: str) -> None:
        """The rule: the operators of the account an action changes decide (bot/core/authority.py calls this)."""
        entry = self.account(account)
        if entry is None or entry.operators is None:
            if not self.is_operator(user):
                where = f" in {entry.label}" if entry is not None else ""
                raise AccessDenied(f"Only amibot operators may run `{what}`{where}. {self._ask(self.operators())}")
            return
        if not self.is_operator(user, entry):
            raise AccessDenied(f"Only the operators of {entry.label} may run `{what}` there. Its operators: "
                               f"{mentions(entry.operators)}; ask one of them, or ask to be added to the `operators` "
                               "of its [[accounts]] entry.")

    @staticmethod
    def _ask(operators: tuple[str, ...]) -> str:
        """Who to ask, by name (refusals are only raised when there are operators)."""
        return f"Operators: {mentions(operators)}; ask one of them, or ask to be added to [access].operators."

    def approvers(self, account: Account | str | None = None) -> set[str]:
        return self.expand(self.approver_ids(account))

    def is_approver(self, user: str, account: Account | str | None = None) -> bool:
        return user in self.approvers(account)
