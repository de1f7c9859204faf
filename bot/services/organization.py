"""The managed accounts: `[[accounts]]` as configured, or every active member of the AWS Organization.

`[organization] enabled = true` lists the members (organizations:ListAccounts, paginated) at start and hourly;
each is reached through `arn:aws:iam::<member>:role/<role_name>`, `exclude` leaves some out and an
`[[accounts]]` entry overrides its member. A failed listing keeps the accounts already known (and says so in
the log): an organisation that cannot be read is not an organisation without accounts.
"""

from __future__ import annotations

import logging

from bot import accounts as accounts_model
from bot.accounts import Account
from bot.aws import Aws, paginate, requires
from bot.errors import AwsError

log = logging.getLogger(__name__)

REFRESH_HOURS = 1


@requires("organizations:ListAccounts")
def list_members(aws: Aws) -> list[dict]:
    """Every account of the organisation (all pages), as ListAccounts items."""
    return list(paginate(aws.home.client("organizations"), "list_accounts", "Accounts"))


def discover(aws: Aws, policy) -> list[Account]:
    """The accounts the policy describes: configured ones, or the organisation's members merged with them."""
    if not policy.organization.enabled:
        return list(policy.accounts)
    members = list_members(aws)
    home_id = aws.home.account_id()
    return accounts_model.merge_discovered(members, list(policy.accounts), policy.organization.role_name,
                                           policy.organization.exclude, home_id)


def refresh(aws: Aws, policy) -> list[Account] | AwsError:
    """Apply the accounts the policy describes to `aws`; on an AWS failure keep what is known and return it."""
    try:
        accounts = discover(aws, policy)
    except AwsError as error:
        log.warning("cannot list the organisation's accounts (keeping %d known): %s", len(aws.accounts), error)
        return error
    if accounts:
        aws.manage(accounts, policy.aws.max_concurrency)
    return accounts


def enable(ctx) -> None:
    """Set the accounts at start (configured ones at once; an organisation's members as soon as listed) and,
    for an organisation, refresh them hourly."""
    from bot import scheduler

    policy = ctx.policy
    if policy.accounts:
        ctx.aws.manage(policy.accounts, policy.aws.max_concurrency)
    else:
        ctx.aws.max_concurrency = policy.aws.max_concurrency
    if not policy.organization.enabled:
        return
    scheduler.add_schedule(ctx, lambda sched, ctx: sched.add_job(
        lambda: refresh(ctx.aws, ctx.policy), "interval", hours=REFRESH_HOURS, id="organization.refresh",
        name="organization.refresh: list the organisation's member accounts"))
    refresh(ctx.aws, policy)
