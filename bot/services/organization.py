"""The managed accounts: `[[accounts]]` as configured, or every active member of the AWS Organization.

`[organization] enabled = true` lists the members (organizations:ListAccounts, paginated) at start and hourly,
through `[organization].role_arn` when the bot runs outside the management account and its delegated administrator;
each is reached through `arn:aws:iam::<member>:role/<role_name>`, `exclude` leaves some out and an
`[[accounts]]` entry overrides its member. A failed listing keeps the accounts already known (and says so in
the log): an organisation that cannot be read is not an organisation without accounts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.aws.clients import Aws, Target, paginate, requires
from bot.core import accounts as accounts_model
from bot.core.accounts import Account
from bot.core.errors import AwsError

log = logging.getLogger(__name__)

REFRESH_HOURS = 1


@requires("organizations:ListAccounts")
def list_members(aws: Aws, role_arn: str | None = None) -> list[dict]:
    """Every account of the organisation (all pages), as ListAccounts items. Only the management account or a
    delegated administrator may list them: with `role_arn` ([organization].role_arn) they are listed through
    that role, else with the bot's own credentials."""
    handle = aws.through(role_arn, "organization") if role_arn else aws.home
    return list(paginate(handle.client("organizations"), "list_accounts", "Accounts"))


def listed_from(policy) -> str:
    """Where the organisation's accounts are listed from, for `check-config --aws`."""
    if policy.organization.role_arn:
        return f"listed by assuming {policy.organization.role_arn}"
    return ("listed from the bot's own account (ListAccounts works only from the management account or a "
            "delegated administrator; elsewhere set [organization].role_arn)")


def discover(aws: Aws, policy) -> list[Account]:
    """The accounts the policy describes: configured ones, or the organisation's members merged with them."""
    return _discover(aws, policy)[0]


def _discover(aws: Aws, policy) -> tuple[list[Account], list[str] | None]:
    """(the managed accounts, the organisation's active members left out of them — None without an
    organisation)."""
    if not policy.organization.enabled:
        return list(policy.accounts), None
    members = list_members(aws, policy.organization.role_arn)
    home_id = aws.home.account_id()
    accounts = accounts_model.merge_discovered(members, list(policy.accounts), policy.organization.role_name,
                                               policy.organization.exclude, home_id, policy.organization.external_id)
    return accounts, left_out(members, accounts)


def left_out(members: list[dict], accounts: list[Account]) -> list[str]:
    """The ids of active members amibot does not manage ([organization].exclude): an image shared with the
    organisation (or an OU) reaches them, but nobody scans them, so their use of it is unknown."""
    managed = {account.id for account in accounts}
    ids = [str(member.get("Id") or "") for member in members if accounts_model.is_active(member)]
    return [account_id for account_id in dict.fromkeys(ids) if accounts_model.ACCOUNT_ID.match(account_id)
            and account_id not in managed]


def configured(aws: Aws, policy) -> list[Account]:
    """The `[[accounts]]` alone, as an organisation's listing would leave them (excluded ones out, an override
    without role_arn reached through the member role): what is known when the organisation cannot be listed."""
    if not policy.organization.enabled:
        return list(policy.accounts)
    return accounts_model.merge_discovered([], list(policy.accounts), policy.organization.role_name,
                                           policy.organization.exclude, aws.home.account_id(),
                                           policy.organization.external_id)


def refresh(aws: Aws, policy) -> list[Account] | AwsError:
    """Apply the accounts the policy describes to `aws`; on an AWS failure keep what is known and return it
    (at the first listing nothing is known yet but the `[[accounts]]`, which are then managed)."""
    try:
        accounts, unmanaged = _discover(aws, policy)
    except AwsError as error:
        log.warning("cannot list the organisation's accounts (keeping %d known): %s", len(aws.accounts), error)
        if not aws.accounts and policy.accounts:
            try:
                aws.manage(configured(aws, policy), policy.aws.max_concurrency)
            except AwsError as again:
                log.warning("cannot tell the bot's own account either: %s", again)
        return error
    if accounts:
        aws.manage(accounts, policy.aws.max_concurrency)
        aws.unmanaged_members = unmanaged
    return accounts


def manage_accounts(aws: Aws, policy) -> None:
    """Set the accounts when the app is built: configured ones at once, an organisation's members as soon as
    listed (an organisation is then refreshed every REFRESH_HOURS by the scheduler, bot/wiring.py)."""
    aws.max_concurrency = policy.aws.max_concurrency
    if not policy.organization.enabled:
        if policy.accounts:
            aws.manage(policy.accounts, policy.aws.max_concurrency)
        return
    refresh(aws, policy)


@dataclass(frozen=True)
class AccountCheck:
    """One managed account as `check-config --aws` found it: `problem` None when its role was assumed and STS
    answered from that very account."""

    account: Account
    problem: str | None = None


def check(aws: Aws, policy) -> tuple[list[AccountCheck], str | None]:
    """Reach every managed account once (the organisation's members listed first): one AccountCheck each, and
    why the organisation could not be listed (its configured accounts are still checked). `aws` is fresh (the
    bot's own account only); it manages the accounts afterwards."""
    home_id = aws.home.account_id()  # the bot's own, from STS, before an [[accounts]] entry without role names it
    listing = None
    try:
        accounts = discover(aws, policy)
    except AwsError as error:
        listing, accounts = f"cannot list the organisation's accounts: {error.message}", configured(aws, policy)
    if not accounts:
        return [], listing
    aws.manage(accounts, policy.aws.max_concurrency)
    targets = [Target(handle.account, "") for handle in aws.handles()]  # STS is not regional here: one per account
    results = aws.each_target(lambda handle, _region: handle.verify(), targets)  # assumes the role, asks STS
    return [AccountCheck(target.account, _problem(target.account, result, home_id))
            for target, result in results.items()], listing


def _problem(account: Account, result, home_id: str) -> str | None:
    if not isinstance(result, AwsError):
        return None
    problem = result.message.removeprefix(f"{account.label}: ")
    if account.is_home and home_id != account.id:
        return (f"no role_arn, so it must be the account the bot runs in, but the bot's credentials are in "
                f"{home_id}")
    return problem
