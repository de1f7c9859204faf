"""The blast radius across accounts: which managed accounts an image's launch permissions reach, and what uses
the image in each of them (every reference kind of bot.services.references, in the image's region, scanned in
one bounded pool). The deregistration preflight and its re-check, `/ami show` and `/ami versions` share it.

A share to an organisation or OU reaches every managed account; it counts as covered only when amibot manages
the organisation ([organization] enabled and listed) — then the members `exclude` leaves out are the accounts
nobody scans. What no managed account covers is the rest: unknown, or an image usage report's
(bot.services.usage_reports).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.aws.clients import Aws, Target
from bot.core.accounts import Account
from bot.core.errors import AwsError
from bot.services.images import Image, Shares
from bot.services.references import Usage, usage_of


@dataclass
class AccountUsage:
    """The image's use in one managed account it is shared with. `usage` None: the account could not be read at
    all (its role could not be assumed, …) — unknown, with `reason`, never "nothing"."""

    account: Account
    usage: Usage | None
    reason: str = ""

    @property
    def blocking(self) -> bool:
        return self.usage is None or self.usage.blocking or bool(self.usage.blocking_unknown)


def split_shares(ctx, owner: Account, shares: Shares | None) -> tuple[list[Account], Shares | None]:
    """(the managed accounts other than the owner that the launch permissions reach, the shares none of them
    covers). A share to an organisation — or one of its OUs — reaches every managed account when amibot manages
    the organisation ([organization] enabled and its members listed); the members `exclude` leaves out are
    then the accounts nobody scans, so they are the rest (unknown, or an image usage report's). Otherwise (no
    [organization], or not listed yet) every managed account is scanned and the organisation's share stays
    unknown as a whole. Launch permissions that could not be read may reach any managed account, so every one
    is scanned."""
    managed = {account.id: account for account in ctx.aws.accounts if account.id and account.id != owner.id}
    if shares is None:
        return list(managed.values()), None
    left_out = ctx.aws.unmanaged_members  # None: the organisation's members are not known (yet)
    whole_organization = bool(ctx.policy.organization.enabled and ctx.aws.accounts and left_out is not None and
                              (shares.organizations or shares.organizational_units))
    # Any managed account may be in an organisation or OU the image is shared with: scan them all
    reached = list(managed.values()) if shares.organizations or shares.organizational_units else \
        [managed[a] for a in dict.fromkeys(shares.accounts) if a in managed]
    unscanned = [a for a in shares.accounts if a not in managed and a != owner.id]
    if whole_organization:
        unscanned += [a for a in left_out if a not in unscanned and a != owner.id]
    rest = Shares(accounts=unscanned,
                  organizations=[] if whole_organization else list(shares.organizations),
                  organizational_units=[] if whole_organization else list(shares.organizational_units),
                  public=shares.public)
    return reached, rest


def use_in_every_account(ctx, image: Image, shares: Shares | None) -> tuple[Usage, list[AccountUsage]]:
    """What uses the image in its own account and in each managed account its launch permissions reach, as the
    deregistration preflight scans them (`/ami show` with many accounts)."""
    owner = ctx.aws.of(image.account).account
    reached, _rest = split_shares(ctx, owner, shares)
    return usage_across(ctx.aws, owner, reached, image)


def usage_across(aws: Aws, owner: Account, reached: list[Account], image: Image) -> tuple[Usage, list[AccountUsage]]:
    """The image's use in its own account and in each account it reaches, scanned in one bounded pool (the
    image's region: a shared image is launched in the region it lives in)."""
    targets = [Target(owner, image.region)] + [Target(account, image.region) for account in reached]
    results = aws.each_target(lambda handle, region: usage_of(handle, region, image.id), targets)
    own = results[targets[0]]
    if isinstance(own, AwsError):
        raise own
    elsewhere = []
    for target in targets[1:]:
        result = results[target]
        if isinstance(result, AwsError):
            elsewhere.append(AccountUsage(target.account, None, result.message))
        else:
            elsewhere.append(AccountUsage(target.account, result))
    return own, elsewhere
