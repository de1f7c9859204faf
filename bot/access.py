"""Who may do what: operators for changing commands, allowed channels, approvers.

User-group ids (S…) are expanded through usergroups.users.list and cached briefly, so a change in
Slack takes effect within `ttl` seconds without a call per click.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import AccessDenied

log = logging.getLogger(__name__)


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

    def is_operator(self, user: str) -> bool:
        operators = self.policy.access.operators
        return not operators or user in self.expand(operators)

    def channel_allowed(self, channel: str | None) -> bool:
        channels = self.policy.access.channels
        return not channels or channel in channels

    def check_changing(self, user: str, channel: str | None, what: str) -> None:
        if not self.channel_allowed(channel):
            allowed = ", ".join(f"<#{c}>" for c in self.policy.access.channels)
            raise AccessDenied(f"amibot does not run `{what}` in this channel; use {allowed}.")
        if not self.is_operator(user):
            raise AccessDenied(f"Only amibot operators may run `{what}`. Ask an operator, or ask to be added to "
                               "[access].operators.")

    def approvers(self) -> set[str]:
        return self.expand(self.policy.approvals.approvers)

    def is_approver(self, user: str) -> bool:
        return user in self.approvers()
