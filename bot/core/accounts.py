"""The AWS accounts amibot manages: `[[accounts]]` tables and `[organization]` discovery, as plain data.

No account configured means exactly the single-account behaviour: the bot works in the account its own
credentials belong to. With accounts, every listing spans them and every action runs in the account that owns
its image (bot.aws.clients.AwsAccounts.of). This module holds no clients; bot/aws/clients.py assumes the roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

ACCOUNT_ID = re.compile(r"^\d{12}$")
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
ROLE_NAME = re.compile(r"^[\w+=,.@/-]{1,512}$")
USER_OR_GROUP = re.compile(r"^[UWS][A-Z0-9]{2,}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")

KEYS = ("id", "name", "role_arn", "external_id", "regions", "operators", "approvers")
# The `[[accounts]]` keys for `amibot config-reference`: (key, type, default, meaning).
REFERENCE = (
    ("id", "str", "required", "the 12-digit AWS account id"),
    ("name", "str", '""', "short unique name used in commands (`--account prod`) and messages; letters, digits, "
                          "`- _ .`"),
    ("role_arn", "str?", "null", "the role amibot assumes there; omitted for the account the bot runs in (with "
                                 "[organization]: the member role)"),
    ("external_id", "str?", "null", "sts:ExternalId passed when assuming the role, if its trust policy asks"),
    ("regions", "list[str]", "[aws].regions", "regions to work in, in this account"),
    ("operators", "list[str]?", "[access].operators", "who may run changing commands on this account's images"),
    ("approvers", "list[str]?", "[approvals].approvers", "who may approve requests about this account's images"),
)


@dataclass(frozen=True)
class Account:
    """One managed account. `role_arn` None: the account the bot runs in (its own credentials)."""

    id: str
    name: str = ""
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    regions: tuple[str, ...] = ()
    operators: tuple[str, ...] | None = None  # None: [access].operators
    approvers: tuple[str, ...] | None = None  # None: [approvals].approvers

    @property
    def label(self) -> str:
        """How messages name the account: "prod (111111111111)"; the id alone without a name."""
        if self.name and self.id:
            return f"{self.name} ({self.id})"
        return self.name or self.id or "this account"

    @property
    def short(self) -> str:
        """For table columns: the name, or the id."""
        return self.name or self.id or "this account"

    @property
    def is_home(self) -> bool:
        return self.role_arn is None

    def matches(self, ref: str) -> bool:
        ref = (ref or "").strip()
        return bool(ref) and (ref == self.id or ref.lower() == self.name.lower())


HOME = Account(id="", name="")  # the bot's own account when no accounts are configured


def _strings(value: Any, where: str, check: re.Pattern | None, what: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(f"{where}: expected a list of strings, got {value!r}")
        return ()
    for item in value:
        if check is not None and not check.match(item):
            problems.append(f"{where}: expected {what}, got {item!r}")
    return tuple(value)


def parse_one(raw: Any, index: int, problems: list[str]) -> Account | None:
    """One `[[accounts]]` table; every problem is appended as a line naming the key."""
    where = f"[[accounts]] #{index + 1}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {raw!r}")
        return None
    for key in raw:
        if key not in KEYS:
            problems.append(f"{where}: unknown key {key!r} (expected one of: {', '.join(KEYS)})")
    account_id = raw.get("id")
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        account_id = f"{account_id:012d}"  # `id = 111111111111` without quotes
    if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
        problems.append(f"{where}.id: expected a 12-digit AWS account id, got {raw.get('id')!r}")
        return None
    where = f"[[accounts]] {account_id}"
    name = raw.get("name", "")
    if not isinstance(name, str) or (name and not ACCOUNT_NAME.match(name)) or name.isdigit():
        problems.append(f"{where}.name: expected a short name (letters, digits, - _ .; not all digits), "
                        f"got {name!r}")
        name = ""
    role_arn = raw.get("role_arn")
    if role_arn is not None:
        match = ROLE_ARN.match(role_arn) if isinstance(role_arn, str) else None
        if not match:
            problems.append(f"{where}.role_arn: expected a role ARN 'arn:aws:iam::<id>:role/<name>', got {role_arn!r}")
            role_arn = None
        elif match.group(1) != account_id:
            problems.append(f"{where}.role_arn: the role is in account {match.group(1)}, not {account_id}")
    external_id = raw.get("external_id")
    if external_id is not None and (not isinstance(external_id, str) or not external_id.strip()):
        problems.append(f"{where}.external_id: expected a non-empty string")
        external_id = None
    regions = _strings(raw["regions"], f"{where}.regions", REGION, "an AWS region such as 'eu-west-1'",
                       problems) if "regions" in raw else ()
    people = {}
    for key in ("operators", "approvers"):
        people[key] = (_strings(raw[key], f"{where}.{key}", USER_OR_GROUP, "a Slack user or group id", problems)
                       if key in raw else None)
    return Account(id=account_id, name=name, role_arn=role_arn, external_id=external_id, regions=regions,
                   operators=people["operators"], approvers=people["approvers"])


def parse_accounts(raw: Any, problems: list[str], organization: bool = False) -> list[Account]:
    """All `[[accounts]]` tables: ids and names unique, at most one account without a role (the bot's own).
    With `[organization]` an entry may omit role_arn to override a member's name, regions or people: the member
    role is filled in when the members are listed (merge_discovered)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append("[[accounts]]: expected an array of tables ([[accounts]] blocks)")
        return []
    accounts = [account for index, item in enumerate(raw) if (account := parse_one(item, index, problems))]
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for account in accounts:
        if account.id in seen_ids:
            problems.append(f"[[accounts]] {account.id}: listed twice")
        seen_ids.add(account.id)
        if account.name:
            if account.name.lower() in seen_names:
                problems.append(f"[[accounts]] {account.id}.name: {account.name!r} is used by another account")
            seen_names.add(account.name.lower())
    if not organization and sum(1 for account in accounts if account.role_arn is None) > 1:
        problems.append("[[accounts]]: only the account the bot runs in may omit role_arn; "
                        + ", ".join(a.id for a in accounts if a.role_arn is None) + " do")
    return accounts


def find(accounts: Iterable[Account], ref: str) -> Account | None:
    """The account named or numbered `ref`, or None."""
    return next((account for account in accounts if account.matches(ref)), None)


def member_role_arn(account_id: str, role_name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


def is_active(member: dict) -> bool:
    """An organisation member (a ListAccounts item) that can work: `State` replaces the deprecated `Status`;
    SUSPENDED, PENDING_CLOSURE and CLOSED accounts are not worked in."""
    return (member.get("State") or member.get("Status") or "ACTIVE") == "ACTIVE"


def merge_discovered(members: Iterable[dict], configured: list[Account], role_name: str, exclude: Iterable[str],
                     home_id: str | None, external_id: str | None = None) -> list[Account]:
    """Organisation members (ListAccounts items) as accounts: active ones only, `exclude` (ids or names)
    left out, a `[[accounts]]` entry overriding its member, the bot's own account without a role. A member
    reached through the member role gives `external_id` ([organization].external_id) unless its entry has one."""
    excluded = {ref.lower() for ref in exclude}
    by_id = {account.id: account for account in configured}
    result: dict[str, Account] = {}
    for member in members:
        account_id, name = str(member.get("Id") or ""), str(member.get("Name") or "")
        if not ACCOUNT_ID.match(account_id) or not is_active(member):
            continue
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:32] if name else ""
        if excluded & {account_id, name.lower(), slug.lower()}:  # by id, display name or the name amibot uses
            continue
        role = None if account_id == home_id else member_role_arn(account_id, role_name)
        if account_id in by_id:  # an override; without its own role_arn it is reached through the member role
            configured_account = by_id[account_id]
            result[account_id] = (configured_account if configured_account.role_arn or role is None
                                  else replace(configured_account, role_arn=role,
                                               external_id=configured_account.external_id or external_id))
            continue
        result[account_id] = Account(id=account_id, name=slug if slug and not slug.isdigit() else "", role_arn=role,
                                     external_id=external_id if role else None)
    for account in configured:  # configured but not (or no longer) listed by the organisation: still managed
        if account.id not in result and account.id not in excluded and account.name.lower() not in excluded:
            result[account.id] = (account if account.role_arn or account.id == home_id
                                  else replace(account, role_arn=member_role_arn(account.id, role_name),
                                               external_id=account.external_id or external_id))
    names: set[str] = set()
    unique = []
    for account in result.values():  # two members with the same display name: the second is known by its id
        if account.name and account.name.lower() in names:
            account = replace(account, name="")
        names.add(account.name.lower())
        unique.append(account)
    return unique
