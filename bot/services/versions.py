"""Image families, their versions, and which version is current.

A family is the [digest].family_tag tag, else the name without its version or date suffix
(bot.services.images.family_of). A version is the "Version" tag; when some image of the family has
none, the order of creation is the order of versions and "#n" its label.

Promotion makes one image the family's current version in its region, in two places AWS users can
see: the tag ``amibot:current=true`` on the image, and the SSM parameter ``/amibot/<family>/current``
(data type aws:ec2:image) that launch templates can resolve (``resolve:ssm:/amibot/web/current``).
The history lives in the ``promotions`` table so a rollback returns to the version promoted before,
and a second rollback to the one before that (a stack: each rollback undoes the latest promotion).

With many accounts a family's versions span every managed account, and a promotion is per account and
region: the tag and the SSM parameter are written in the account that owns the image (its handle,
``ctx.aws.of(image.account)``), and its row carries that account's id (``''``: the bot's own account, as
every row did before accounts existed).
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.aws.clients import Aws, Target, call, requires
from bot.core.accounts import Account
from bot.core.errors import AmibotError, AwsError, NotFound, PolicyViolation
from bot.core.text import escape
from bot.services.blast_radius import AccountUsage, split_shares
from bot.services.images import Image, Shares, describe_own_images, list_images, owners_in, shares_of_many
from bot.services.references import Usage, scan

if TYPE_CHECKING:  # only for annotations
    from bot.services.service_context import ServiceContext

CURRENT_TAG = "amibot:current"
PARAMETER_ILLEGAL = re.compile(r"[^A-Za-z0-9_.\-]+")
PARAMETER_PREFIX = "/amibot/"  # every parameter amibot writes is under it (its IAM role may write only there)
PARAMETERS = f"arn:{{partition}}:ssm:*:*:parameter{PARAMETER_PREFIX}*"  # for @requires (bot/iam_policy.py)
VERSION_PART = re.compile(r"\d+|[A-Za-z]+")

# One promotion or rollback at a time per account, family and region in this process; the conditional
# UPDATE on the promotions table guards against a second process.
_locks: dict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def _lock(family: str, region: str, account: str = "") -> threading.Lock:
    with _locks_guard:
        return _locks[(account, family, region)]


def parameter_name(family: str) -> str:
    """The SSM parameter holding the family's current image id (SSM allows a-z, 0-9, _ . - /)."""
    return f"{PARAMETER_PREFIX}{PARAMETER_ILLEGAL.sub('-', family).strip('-') or 'unnamed'}/current"


def is_current(image: Image) -> bool:
    return image.tags.get(CURRENT_TAG) == "true"


def natural_key(version: str) -> tuple:
    """'v1.10' after 'v1.9'; a pre-release ('1.2-rc1') before its release ('1.2')."""
    parts: list[tuple] = []
    for token in VERSION_PART.findall(version):
        if token.isdigit():
            parts.append((1, int(token), ""))
        elif token.lower() == "v" and not parts:
            continue
        else:
            parts.append((0, 0, token.lower()))
    return (*parts, (0.5, 0, ""))  # a release sorts after its own pre-releases, before 1.2.1


def _created(image: Image) -> tuple:
    return (image.created is not None, image.created or datetime.min)


@dataclass
class Version:
    image: Image
    label: str  # the Version tag, else "#n" in order of creation
    current: bool = False
    previous: bool = False  # what a rollback would return to
    usage: Usage | None = None
    # its use in the other managed accounts it is shared with (bot.services.blast_radius), when looked up
    elsewhere: list[AccountUsage] = field(default_factory=list)


def ordered_versions(images: list[Image]) -> list[Version]:
    """Newest first: by Version tag when every image has one, else by creation time."""
    by_creation = sorted(images, key=lambda image: (_created(image), image.id))
    ordinal = {image.id: number for number, image in enumerate(by_creation, start=1)}
    if images and all(image.version for image in images):
        newest_first = sorted(images, key=lambda image: (natural_key(image.version), _created(image)),
                              reverse=True)
    else:
        newest_first = list(reversed(by_creation))
    labels = {image.id: image.version or f"#{ordinal[image.id]}" for image in images}
    for image in images:  # an untagged copy in another region is the same version as its source
        source = image.tags.get("amibot:copied-from", "").partition("@")[0]
        if not image.version and source in labels:
            labels[image.id] = labels[source]
    return [Version(image, labels[image.id], current=is_current(image)) for image in newest_first]


def family_images(aws: Aws, family: str, family_tag: str, regions: list[str] | None = None,
                  accounts: list | None = None) -> tuple[list[Image], dict[str, AwsError]]:
    """The family's images in every managed account (or those given) and region (disabled ones too), and what
    failed: keyed by region, or "account, region" with many accounts."""
    results = aws.each_target(lambda handle, region: describe_own_images(handle, region, family_tag),
                              aws.targets(accounts, regions))
    images: list[Image] = []
    failures: dict[str, AwsError] = {}
    for target, result in results.items():
        if isinstance(result, AwsError):
            failures[target.label] = result
        else:
            images += [image for image in result if image.family == family]
    return images, failures


@dataclass
class FamilySummary:
    family: str
    versions: int  # distinct versions: a copy in another region is the same version
    images: int
    current: list[str]  # the promoted versions' labels (a family is promoted per account and region)
    newest: datetime | None


@dataclass
class Families:
    families: list[FamilySummary]
    failures: dict[str, AwsError]
    looked: str  # whose images, where (only where checked): "this account in us-east-1, eu-west-1"
    searched: int  # account-regions asked


def families(ctx: ServiceContext, region: str | None = None, accounts: list | None = None) -> Families:
    """`/ami versions` without a family: every family (the [digest].family_tag tag, else the name without its
    version) of the managed accounts' own images, by name, with its versions and the promoted ones."""
    regions = [region] if region else None
    images, failures = list_images(ctx.aws, ctx.policy.digest.family_tag, regions=regions, accounts=accounts)
    targets = ctx.aws.targets(accounts, regions)
    if failures and len(failures) >= len(targets):
        raise next(iter(failures.values()))
    grouped: dict[str, list[Image]] = defaultdict(list)
    for image in images:
        if image.family:
            grouped[image.family].append(image)
    summaries = []
    for name in sorted(grouped, key=str.lower):
        versions = ordered_versions(grouped[name])
        summaries.append(FamilySummary(
            name, len({version.label for version in versions}), len(versions),
            list(dict.fromkeys(version.label for version in versions if version.current)),
            max((image.created for image in grouped[name] if image.created), default=None)))
    checked = [target for target in targets if target.label not in failures]
    return Families(summaries, failures, owners_in(checked), len(targets))


def _launchable(image: Image, now: datetime) -> bool:
    return image.state == "available" and not (image.deprecation_time and image.deprecation_time <= now)


def current_image(ctx: ServiceContext, family: str, region: str | None = None, accounts: list | None = None
                  ) -> Image | None:
    """The family's promoted image, else its newest available one; None if it has none.

    Without a region, every configured region (of every managed account) is searched and the default region
    wins a tie, then the account listed first. Raises the AWS error when a region could not be read and nothing
    was found elsewhere.
    """
    regions = [region] if region else _preferred_order(ctx.aws.home)
    images, failures = family_images(ctx.aws, family, ctx.policy.digest.family_tag, [region] if region else None,
                                     accounts)
    if failures and (region or not images):
        raise next(iter(failures.values()))
    now = ctx.clock()
    rank = {name: index for index, name in enumerate(regions)}
    account_rank = {account.id: index for index, account in enumerate(ctx.aws.accounts)}
    promoted = sorted((image for image in images if is_current(image) and _launchable(image, now)),
                      key=lambda image: (rank.get(image.region, len(rank)), account_rank.get(image.account, 0)))
    if promoted:
        return promoted[0]
    for version in ordered_versions([image for image in images if _launchable(image, now)]):
        return version.image
    return None


def _preferred_order(aws: Aws) -> list[str]:
    regions = list(aws.regions)
    try:
        default = aws.default_region
    except AwsError:
        return regions
    return sorted(regions, key=lambda name: name != default)


@dataclass
class FamilyVersions:
    family: str
    versions: list[Version]
    failures: dict[str, AwsError] = field(default_factory=dict)
    parameter: str = ""


def family_versions(ctx: ServiceContext, family: str, region: str | None = None, accounts: list | None = None,
                    elsewhere_for: int = 0) -> FamilyVersions:
    """Every version of a family across the managed accounts (or those given), newest first, with its state
    and what uses it (looked up in the account and region of each image; with many accounts, for the newest
    `elsewhere_for` versions also in each managed account it is shared with). Raises NotFound."""
    images, failures = family_images(ctx.aws, family, ctx.policy.digest.family_tag, [region] if region else None,
                                     accounts)
    if not images:
        if failures:
            raise next(iter(failures.values()))
        where = region or ", ".join(ctx.aws.regions)
        if accounts:
            where = f"{accounts[0].label}, {where}"
        elif ctx.aws.many:
            where = f"{where} of {len(ctx.aws.accounts)} accounts"
        raise NotFound(f"No images of family “{escape(family)}” in {where}. `/ami list {escape(family)}` shows"
                       " similar names.")
    versions = ordered_versions(images)
    places = {(image.account, image.region) for image in images}
    previous = {(account, name, row["previous_image_id"]) for account, name in places
                if (row := active_promotion(ctx.store, family, name, _stored_as(ctx, account)))
                and row["previous_image_id"]}
    by_place: dict[tuple[str, str], list[str]] = defaultdict(list)
    for image in images:
        by_place[(image.account, image.region)].append(image.id)
    scans = _scan_places(ctx, by_place)
    for version in versions:
        image = version.image
        version.previous = (image.account, image.region, image.id) in previous
        target, refs = scans[(image.account, image.region)]
        if isinstance(refs, AwsError):
            failures.setdefault(target.label, refs)
        elif refs is not None:
            version.usage = refs.of(image.id)
    if ctx.aws.many and elsewhere_for:
        use_in_other_accounts(ctx, versions[:elsewhere_for])
    return FamilyVersions(family, versions, failures, parameter_name(family))


def use_in_other_accounts(ctx: ServiceContext, versions: list[Version]) -> None:
    """Each version's use in the managed accounts its launch permissions reach (bot.services.blast_radius):
    one launch-permission lookup per image, then one scan per account and region for all the images shared
    there, in one bounded pool. Permissions that cannot be read reach every managed account."""
    shares = shares_of_many(ctx.aws, [version.image for version in versions])
    wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
    reached: dict[str, list[Account]] = {}
    for version in versions:
        image = version.image
        found = shares.get(image.id)
        accounts, _rest = split_shares(ctx, ctx.aws.of(image.account).account,
                                       found if isinstance(found, Shares) else None)
        reached[image.id] = accounts
        for account in accounts:
            wanted[(account.id, image.region)].append(image.id)
    scans = _scan_places(ctx, wanted)
    for version in versions:
        for account in reached[version.image.id]:
            _target, refs = scans[(account.id, version.image.region)]
            if isinstance(refs, AwsError):
                version.elsewhere.append(AccountUsage(account, None, refs.message))
            elif refs is not None:
                version.elsewhere.append(AccountUsage(account, refs.of(version.image.id)))


def _scan_places(ctx: ServiceContext, wanted: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], tuple]:
    """One reference scan per (account id, region) for the image ids wanted there, in one bounded pool:
    place -> (its Target, its References or AwsError; None if it did not run)."""
    targets = {place: Target(ctx.aws.of(place[0]).account, place[1]) for place in wanted}
    scans = ctx.aws.each_target(lambda handle, name: scan(handle, name, wanted[(handle.account.id, name)]),
                                list(targets.values()))
    return {place: (target, scans.get(target)) for place, target in targets.items()}


def _stored_as(ctx: ServiceContext, account: str) -> tuple[str, ...]:
    """The `account` values of an account's promotion rows: its id; for the bot's own account also '' (rows
    written before accounts were configured, or in single-account mode where every id is '')."""
    home = ctx.aws.home.account.id
    return (account, "") if account and account == home else (account,)


def active_promotion(store, family: str, region: str, accounts: tuple[str, ...] = ("",)) -> dict | None:
    """The latest promotion not undone by a rollback: the family's current version per amibot, in the region of
    the account (`accounts`: the values its rows carry, see _stored_as)."""
    marks = ", ".join("?" for _ in accounts)
    return next(store.db["promotions"].rows_where(
        f"family = ? AND region = ? AND account IN ({marks}) AND rolled_back_at IS NULL", [family, region, *accounts],
        order_by="id DESC", limit=1), None)


def is_promoted(ctx: ServiceContext, image: Image) -> bool:
    """Tagged current, or current per amibot's promotion history (in case someone removed the tag)."""
    if is_current(image):
        return True
    active = active_promotion(ctx.store, image.family, image.region, _stored_as(ctx, image.account))
    return bool(active and active["image_id"] == image.id)


def promoted_places(ctx: ServiceContext, family: str) -> list[tuple[str, str]]:
    """(account id, region) where the family has an active promotion; a row from before accounts ('') is the
    bot's own account."""
    rows = ctx.store.db["promotions"].rows_where("family = ? AND rolled_back_at IS NULL", [family],
                                                 select="account, region")
    home = ctx.aws.home.account.id
    return sorted({(row["account"] or home, row["region"]) for row in rows})


@requires("ssm:PutParameter", resource=PARAMETERS)
@requires("ec2:CreateTags", "ec2:DeleteTags")
def _point_current_at(aws: Aws, image: Image, others: list[str]) -> None:
    """The SSM parameter first (it is what launches resolve), then the tags. `aws`: the image's own account."""
    call(aws.client("ssm", image.region), "put_parameter", Name=parameter_name(image.family), Value=image.id,
         Type="String", DataType="aws:ec2:image", Overwrite=True,
         Description=f"Current image of family {image.family}, set by amibot")
    ec2 = aws.ec2(image.region)
    call(ec2, "create_tags", resource=f"AMI {image.id}", Resources=[image.id],
         Tags=[{"Key": CURRENT_TAG, "Value": "true"}])
    if others:
        call(ec2, "delete_tags", Resources=others, Tags=[{"Key": CURRENT_TAG}])


@dataclass
class Promotion:
    image: Image
    previous_image_id: str | None
    parameter: str
    account: str = ""  # the account's label ("prod (111111111111)") with many accounts, else ""


def promote(ctx: ServiceContext, image: Image, user: str) -> Promotion:
    """Make the image its family's current version in its account and region."""
    now = ctx.clock()
    if image.state != "available":
        raise PolicyViolation(f"{image.id} is {image.state}; only an available image can be promoted.")
    if image.deprecation_time and image.deprecation_time <= now:
        raise PolicyViolation(f"{image.id} is deprecated; `/ami undeprecate {image.id}` first to promote it.")
    owner = ctx.aws.of(image.account)
    where = _where(ctx, owner, image.region)
    with _lock(image.family, image.region, image.account):
        siblings, _ = family_images(ctx.aws, image.family, ctx.policy.digest.family_tag, [image.region],
                                    [owner.account])
        tagged = [other.id for other in siblings if is_current(other) and other.id != image.id]
        active = active_promotion(ctx.store, image.family, image.region, _stored_as(ctx, image.account))
        if is_current(image) and not tagged and active and active["image_id"] == image.id:
            raise AmibotError(f"{image.id} already is the current version of {image.family} in {where}.")
        previous = tagged[0] if tagged else (active["image_id"] if active and active["image_id"] != image.id
                                             else None)
        _point_current_at(owner, image, tagged)
        ctx.store.db["promotions"].insert({"family": image.family, "region": image.region, "image_id": image.id,
                                           "promoted_by": user, "promoted_at": now.isoformat(),
                                           "previous_image_id": previous, "account": image.account})
    return Promotion(image, previous, parameter_name(image.family), owner.account.label if ctx.aws.many else "")


def _where(ctx: ServiceContext, handle: Aws, region: str) -> str:
    """"us-east-1", or "prod (111111111111), us-east-1" with many accounts."""
    return f"{handle.account.label}, {region}" if ctx.aws.many else region


@dataclass
class Rollback:
    family: str
    region: str
    image: Image  # current again
    newer_image_id: str  # the version rolled back from
    newer_usage: Usage
    parameter: str
    account: str = ""  # the account's label with many accounts, else ""


def rollback(ctx: ServiceContext, family: str, region: str | None, user: str, account: str | None = None) -> Rollback:
    """Point the family's current version back at the version promoted before the latest promotion, in the
    account and region where it was promoted (`account`: an id or name, to choose among several). The caller
    authorizes that account first (rollback_place says which it is)."""
    account_id, region = rollback_place(ctx, family, region, account)
    owner = ctx.aws.of(account_id)
    where = _where(ctx, owner, region)
    with _lock(family, region, account_id):
        latest = active_promotion(ctx.store, family, region, _stored_as(ctx, account_id))
        if latest is None:
            raise NotFound(f"Nothing of family “{family}” has been promoted in {where}; "
                           f"`/ami promote <ami-id>` first.")
        if not latest["previous_image_id"]:
            raise AmibotError(f"{latest['image_id']} is the first promoted version of {family} in {where}; "
                              "there is nothing to roll back to.")
        target = _rollback_target(ctx, owner, family, region, latest["previous_image_id"])
        # Raw SQL on purpose: one conditional UPDATE decides which of two processes rolls this promotion back.
        claimed = ctx.store.execute(
            "UPDATE promotions SET rolled_back_at = ?, rolled_back_by = ? WHERE id = ? AND rolled_back_at IS NULL",
            (ctx.clock().isoformat(), user, latest["id"]))
        if claimed.rowcount != 1:
            raise AmibotError(f"Someone else rolled {family} back in {where} just now; see `/ami versions {family}`.")
        try:
            _point_current_at(owner, target, [latest["image_id"]])
        except AmibotError:
            ctx.store.db["promotions"].update(latest["id"], {"rolled_back_at": None, "rolled_back_by": None})
            raise
    usage = scan(owner, region, [latest["image_id"]]).of(latest["image_id"])
    return Rollback(family, region, target, latest["image_id"], usage, parameter_name(family),
                    owner.account.label if ctx.aws.many else "")


@requires("ssm:GetParameter")
def channel_value(aws: Aws, family: str, region: str) -> str | None:
    """The image id the family's SSM parameter names in the account and region (None: there is none)."""
    try:
        return call(aws.client("ssm", region), "get_parameter", Name=parameter_name(family))["Parameter"]["Value"]
    except AwsError as error:
        if error.code == "ParameterNotFound":
            return None
        raise


def finish_rollback(ctx: ServiceContext, family: str, region: str, account: str | None, newer_id: str,
                    target_id: str) -> bool:
    """After a restart: a rollback whose promotion row was claimed may have stopped before the channel moved. When
    the parameter still names `newer_id`, point it (and the tags) at `target_id` now; True when it moved it."""
    owner = ctx.aws.of(account or None)
    with _lock(family, region, owner.account.id):
        if channel_value(owner, family, region) != newer_id:
            return False
        _point_current_at(owner, _rollback_target(ctx, owner, family, region, target_id), [newer_id])
    return True


def rollback_place(ctx: ServiceContext, family: str, region: str | None, account: str | None) -> tuple[str, str]:
    """The (account id, region) to roll back in: as given, else the only one where the family is promoted."""
    wanted = ctx.aws.of(account).account.id if account else None
    places = [(owner, name) for owner, name in promoted_places(ctx, family)
              if (region is None or name == region) and (wanted is None or owner == wanted)]
    if len(places) == 1:
        return places[0]
    if region and not places:  # said where: the lookup there says what is missing
        return (wanted if wanted is not None else ctx.aws.home.account.id), region
    if not places:
        raise NotFound(f"Nothing of family “{escape(family)}” has been promoted; `/ami promote &lt;ami-id&gt;`"
                       " first.")
    if ctx.aws.many and len({owner for owner, _ in places}) > 1:
        listed = ", ".join(f"{ctx.aws.of(owner).account.short} {name}" for owner, name in places)
        raise AmibotError(f"{escape(family)} is promoted in {listed}; say which with `--account` "
                          "(and `--region`).")
    raise AmibotError(f"{escape(family)} is promoted in {', '.join(name for _, name in places)}; "
                      "say which with `--region`.")


def _rollback_target(ctx: ServiceContext, owner: Aws, family: str, region: str, image_id: str) -> Image:
    found = describe_own_images(owner, region, ctx.policy.digest.family_tag, image_id=[image_id])
    if not found:
        raise NotFound(f"The previous version {image_id} of {family} no longer exists in {_where(ctx, owner, region)}"
                       "; promote another version with `/ami promote <ami-id>`.")
    image = found[0]
    if image.state != "available":
        raise PolicyViolation(f"The previous version {image_id} of {family} is {image.state}; "
                              f"`/ami enable {image_id}` first, or promote another version.")
    return image


# --- the next version (bakes: bot/services/bake.py) ------------------------------------------------------

LAST_NUMBER = re.compile(r"^(?P<head>.*?)(?P<number>\d+)(?P<tail>\D*)$")
DATE_VERSION = re.compile(r"^(?P<date>\d{4}\.\d{2}\.\d{2})(?:\.(?P<n>\d+))?$")


def next_version(versions: list[str], today) -> str:
    """The version after the newest of `versions` in the family's own scheme: its last numeric component bumped
    (1.4.2 → 1.4.3, web-12 → web-13; the width kept: 007 → 008); a date version YYYY.MM.DD[.N] (the next N on
    the same day) when the family has none, or uses dates."""
    dated = today.strftime("%Y.%m.%d")
    tagged = [version for version in versions if version]
    if not tagged:
        return dated
    newest = max(tagged, key=natural_key)
    date_match = DATE_VERSION.match(newest)
    if date_match:
        if date_match.group("date") != dated:
            return dated
        return f"{dated}.{int(date_match.group('n') or 1) + 1}"
    match = LAST_NUMBER.match(newest)
    if not match:
        return dated
    number = match.group("number")
    bumped = str(int(number) + 1).zfill(len(number))
    return f"{match.group('head')}{bumped}{match.group('tail')}"
