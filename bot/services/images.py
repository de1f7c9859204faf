"""Finding and describing the account's own images across the configured regions."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.aws import data as awsdata
from bot.aws.clients import Aws, call, paginate, requires
from bot.aws.data import parse_time
from bot.core.accounts import Account
from bot.core.accounts import find as find_account
from bot.core.errors import Ambiguous, AwsError, NotFound, UsageError
from bot.core.families import family_of
from bot.core.ids import AMI_ID
from bot.core.text import escape

# family_of and parse_time are imported from here by existing callers; they now live in families / awsdata.


@dataclass
class BlockDevice:
    device: str
    snapshot_id: str | None  # None: an ephemeral (instance-store) device, or an EBS mapping without a snapshot
    size_gb: int | None  # None: unknown
    volume_type: str | None
    encrypted: bool = False
    virtual_name: str | None = None  # ephemeral0… for instance-store devices

    @classmethod
    def from_aws(cls, mapping: dict, item: str) -> BlockDevice:
        """One BlockDeviceMappings entry, read field by field: whatever is malformed is unknown (and logged)."""
        if not isinstance(mapping, dict):
            awsdata.malformed(item, "BlockDeviceMappings[]", mapping)
            return cls(device="?", snapshot_id=None, size_gb=None, volume_type=None)
        ebs = awsdata.mapping(mapping, "Ebs", item)
        device = awsdata.text(mapping, "DeviceName", item, "?")
        where = f"{item} device {device}"
        return cls(device=device, snapshot_id=awsdata.optional_text(ebs, "SnapshotId", where),
                   size_gb=awsdata.integer(ebs, "VolumeSize", where),
                   volume_type=awsdata.optional_text(ebs, "VolumeType", where),
                   encrypted=bool(awsdata.flag(ebs, "Encrypted", where)),
                   virtual_name=awsdata.optional_text(mapping, "VirtualName", where))


class MissingId(ValueError):
    """An AWS item without a usable id: nothing can be done with it, so it is skipped (with a warning)."""


_ALWAYS_SENT = ("Name", "State", "OwnerId", "CreationDate")  # DescribeImages always sends them: worth a warning


@dataclass
class Image:
    id: str
    name: str
    region: str
    state: str
    owner_id: str
    created: datetime | None
    public: bool
    description: str = ""
    architecture: str = ""
    root_device: str = ""
    root_device_type: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    devices: list[BlockDevice] = field(default_factory=list)
    deprecation_time: datetime | None = None
    last_launched: datetime | None = None
    family: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    account: str = ""  # the managed account it was found in ("" : the bot's own, single-account); see AwsAccounts.of

    @classmethod
    def stand_in(cls, image_id: str, name: str, region: str) -> Image:
        """Enough of an Image to report on from stored data (the image itself may be gone by now)."""
        return cls(id=image_id, name=name, region=region, state="unknown", owner_id="", created=None, public=False)

    def shown(self) -> dict[str, str]:
        """What stored details keep of the image to show it again: its id, name and region."""
        return {"id": self.id, "name": self.name, "region": self.region}

    @property
    def version(self) -> str | None:
        return self.tags.get("Version") or self.tags.get("version")

    @property
    def snapshot_ids(self) -> list[str]:
        return [device.snapshot_id for device in self.devices if device.snapshot_id]

    @property
    def size_gb(self) -> int:
        return sum(device.size_gb or 0 for device in self.devices if device.snapshot_id)

    @classmethod
    def from_aws(cls, data: dict[str, Any], region: str, family_tag: str = "Family") -> Image:
        """An image from a DescribeImages item. Raises MissingId for an item without an ImageId; any other
        malformed field is unknown (None or empty) and logged as a warning naming the image and the field."""
        image_id = awsdata.item_id(data, "ImageId", "image", region)
        if image_id is None:
            raise MissingId("image without an ImageId")
        try:
            return cls._from_well_formed(data, image_id, region, family_tag)
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls._from_messy(data, image_id, region, family_tag)

    @classmethod
    def _from_well_formed(cls, data: dict[str, Any], image_id: str, region: str, family_tag: str) -> Image:
        """The fast path for the 99.9 %: reads fields directly and raises at the first surprise (a missing field
        AWS always sends, a type it never sends), leaving the item to _from_messy."""
        name, state, owner_id, created = data["Name"], data["State"], data["OwnerId"], data["CreationDate"]
        description, architecture = data.get("Description") or "", data.get("Architecture", "")
        root_device, root_device_type = data.get("RootDeviceName", ""), data.get("RootDeviceType", "")
        if not (type(name) is str and type(state) is str and type(owner_id) is str and type(description) is str
                and type(architecture) is str and type(root_device) is str and type(root_device_type) is str):
            raise TypeError("a text field is not a string")
        tags = {}
        for tag in data.get("Tags") or ():
            key, value = tag["Key"], tag["Value"]
            if type(key) is not str or type(value) is not str:
                raise TypeError("a tag is not text")
            tags[key] = value
        devices = []
        for mapping in data.get("BlockDeviceMappings") or ():
            ebs = mapping.get("Ebs") or {}
            size, snapshot_id = ebs.get("VolumeSize"), ebs.get("SnapshotId")
            if (size is not None and type(size) is not int) or (
                    snapshot_id is not None and type(snapshot_id) is not str):
                raise TypeError("a device field has an unexpected type")
            devices.append(BlockDevice(mapping["DeviceName"], snapshot_id, size, ebs.get("VolumeType"),
                                       bool(ebs.get("Encrypted")), mapping.get("VirtualName")))
        return cls(id=image_id, name=name, region=region, state=state, owner_id=owner_id,
                   created=_strict_time(created), public=bool(data.get("Public")), description=description,
                   architecture=architecture, root_device=root_device, root_device_type=root_device_type,
                   tags=tags, devices=devices,
                   deprecation_time=_strict_time(data.get("DeprecationTime")),
                   last_launched=_strict_time(data.get("LastLaunchedTime")),
                   family=family_of(name, tags, family_tag), raw=data)

    @classmethod
    def _from_messy(cls, data: dict[str, Any], image_id: str, region: str, family_tag: str) -> Image:
        """Field by field, each malformed one unknown and logged; the image is kept."""
        item = awsdata.label("image", image_id, region)
        awsdata.expect(data, _ALWAYS_SENT, item)
        tags = awsdata.tags_of(data, item)
        devices = [BlockDevice.from_aws(mapping, item) for mapping in awsdata.items(data, "BlockDeviceMappings", item)]
        name = awsdata.text(data, "Name", item)
        return cls(id=image_id, name=name, region=region, state=awsdata.text(data, "State", item, "unknown"),
                   owner_id=awsdata.text(data, "OwnerId", item),
                   created=parse_time(data.get("CreationDate"), item, "CreationDate"),
                   public=bool(awsdata.flag(data, "Public", item)), description=awsdata.text(data, "Description", item),
                   architecture=awsdata.text(data, "Architecture", item),
                   root_device=awsdata.text(data, "RootDeviceName", item),
                   root_device_type=awsdata.text(data, "RootDeviceType", item), tags=tags, devices=devices,
                   deprecation_time=parse_time(data.get("DeprecationTime"), item, "DeprecationTime"),
                   last_launched=parse_time(data.get("LastLaunchedTime"), item, "LastLaunchedTime"),
                   family=family_of(name, tags, family_tag), raw=data)


def _strict_time(value: str | None) -> datetime | None:
    """The fast path's time: raises ValueError/TypeError on anything but a well-formed, zoned ISO time."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time without a time zone")
    return moment


def images_from(items, region: str, family_tag: str) -> list[Image]:
    """Images from DescribeImages items; an item without an id is skipped (logged by awsdata.item_id)."""
    images = []
    for item in items:
        try:
            images.append(Image.from_aws(item, region, family_tag))
        except MissingId:
            continue
    return images


@dataclass
class Shares:
    accounts: list[str] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)
    organizational_units: list[str] = field(default_factory=list)
    public: bool = False

    @property
    def any(self) -> bool:
        return bool(self.accounts or self.organizations or self.organizational_units or self.public)


@requires("ec2:DescribeImages")
def describe_own_images(aws: Aws, region: str, family_tag: str, include_disabled: bool = True,
                        **filters: Any) -> list[Image]:
    """All images this account owns in one region (disabled ones too: they still cost money)."""
    kwargs: dict[str, Any] = {"Owners": ["self"]}
    if include_disabled:
        kwargs["IncludeDisabled"] = True
    if filters:
        kwargs["Filters"] = [{"Name": key.replace("_", "-"), "Values": values} for key, values in filters.items()]
    images = images_from(paginate(aws.ec2(region), "describe_images", "Images", **kwargs), region, family_tag)
    account = getattr(aws, "account", None)  # a stand-in handle (tests) may have no account: the bot's own
    if account is not None and account.id:
        for image in images:
            image.account = account.id
    return images


def matches(image: Image, text: str) -> bool:
    needle = text.lower()
    haystack = [image.id, image.name, *image.tags.values()]
    return any(needle in value.lower() for value in haystack if value)


def list_images(aws: Aws, family_tag: str, text: str | None = None, regions: list[str] | None = None,
                accounts: list | None = None) -> tuple[list[Image], dict[str, AwsError]]:
    """Own images across every managed account and region (or those given), newest first, filtered by text;
    plus what failed, keyed by region (single-account) or "account, region"."""
    results = aws.each_target(lambda handle, region: describe_own_images(handle, region, family_tag),
                              aws.targets(accounts, regions))
    images, failures = [], {}
    for target, result in results.items():
        if isinstance(result, AwsError):
            failures[target.label] = result
            continue
        images += [image for image in result if not text or matches(image, text)]
    images.sort(key=lambda image: (image.created is not None, image.created), reverse=True)
    return images, failures


def owners_in(targets: list, shown: int = 5) -> str:
    """Whose images were looked for, and where, for "No AMIs owned by …" lines: "this account in us-east-1,
    eu-west-1"; with accounts, each one named: "prod (111111111111), staging (222222222222) in us-east-1" (the
    regions per account when they differ; past `shown` accounts, how many more)."""
    regions: dict[str, list[str]] = {}
    for target in targets:
        regions.setdefault(target.account.label if target.account.id else "", []).append(target.region)
    if not regions:
        return "no account or region"
    if list(regions) == [""]:
        return f"this account in {', '.join(dict.fromkeys(regions['']))}"
    labels = list(regions)
    more = f" and {len(labels) - shown} more accounts" if len(labels) > shown else ""
    if len({tuple(found) for found in regions.values()}) == 1:
        return f"{', '.join(labels[:shown])}{more} in {', '.join(regions[labels[0]])}"
    return "; ".join(f"{label} in {', '.join(regions[label])}" for label in labels[:shown]) + more


def find_images(aws: Aws, ref: str, family_tag: str, regions: list[str] | None = None,
                accounts: list | None = None) -> list[Image]:
    """Images by id or exact name across every managed account and region (a name may match several; an id is
    found in whichever account owns it). Raises NotFound."""
    if ref.startswith("ami-") and not AMI_ID.match(ref):
        raise UsageError(f"`{escape(ref[:40])}` is not a valid image id (e.g. ami-0abc1234def567890).")
    if AMI_ID.match(ref):
        def lookup(handle: Aws, region: str) -> list[Image]:
            return describe_own_images(handle, region, family_tag, include_disabled=True, image_id=[ref])
    else:
        def lookup(handle: Aws, region: str) -> list[Image]:
            return describe_own_images(handle, region, family_tag, include_disabled=True, name=[ref])
    targets = aws.targets(accounts, regions)
    found: list[Image] = []
    failures: list[AwsError] = []
    for result in aws.each_target(lookup, targets).values():
        if isinstance(result, AwsError):
            failures.append(result)
        else:
            found += result
    if not found:
        if failures:
            raise failures[0]
        searched = list(dict.fromkeys(target.region for target in targets))  # in the configured order
        where = searched[0] if len(searched) == 1 else ", ".join(searched)
        if aws.many and len({target.account for target in targets}) > 1:
            where += f" of {len({target.account for target in targets})} accounts"
        elif aws.many:
            where = f"{targets[0].account.label}, {where}"
        raise NotFound(f"AMI {escape(ref)} not found in {where}")
    found.sort(key=lambda image: (image.created is not None, image.created), reverse=True)
    return found


def find_image(aws: Aws, ref: str, family_tag: str, regions: list[str] | None = None,
               accounts: list | None = None, account_flag: bool = True) -> Image:
    """Exactly one image by id or exact name: THE resolver of every command that acts on an image (promote,
    deregister, share, copy, the stages, launch…), run before any approval or AWS change; the caller then authorizes
    the image's owning account (`image.account`). A name matching several images (a copy in another region or
    account, a re-registered name) raises Ambiguous listing each candidate's id, account, region and creation
    date: never a guess. Raises NotFound naming where it looked."""
    images = find_images(aws, ref, family_tag, regions, accounts)
    return only_one(ref, images, aws.accounts, account_flag)


def only_one(ref: str, images: list[Image], accounts: Iterable[Account] = (), account_flag: bool = True,
             dated: str = "created") -> Image:
    """The one image a reference found, or Ambiguous listing them all (ids, accounts when many, regions and
    `dated` dates: "created", or for images in the Recycle Bin, since when). `images` is never empty."""
    if len(images) > 1:
        raise Ambiguous(ambiguity_message(ref, images, accounts=accounts, account_flag=account_flag, dated=dated),
                        images)
    return images[0]


def ambiguity_message(ref: str, images: list[Image], shown: int = 8, accounts: Iterable[Account] = (),
                      account_flag: bool = True, dated: str = "created") -> str:
    """Which images a name matches; with many accounts each line names its account ("prod (111111111111)").
    `account_flag` False: the command's `--account` does not narrow the lookup (launch: it names where to run)."""
    labels = {account.id: account.label for account in accounts}
    lines = [f"• `{image.id}` · {image.region}{_account_part(image, labels)} · {dated} "
             f"{image.created.strftime('%Y-%m-%d %H:%M UTC') if image.created else 'unknown'}"
             for image in images[:shown]]
    more = f"\n…and {len(images) - shown} more" if len(images) > shown else ""
    across = account_flag and len({image.account for image in images}) > 1
    narrow = "`--account NAME` or `--region R`" if across else "`--region R`"
    return (f"{len(images)} AMIs are named “{escape(ref)}”; say which one by id (or add {narrow}):\n"
            + "\n".join(lines) + more)


def _account_part(image: Image, labels: dict[str, str]) -> str:
    return f" · account {labels.get(image.account, image.account)}" if image.account else ""


# --- which account: `--account NAME|ID` ---------------------------------------------------------------------

def accounts_named(aws: Aws, ref: str | None) -> list[Account] | None:
    """`--account NAME|ID` as the accounts to look in (None: every managed account). An account amibot does not
    manage is a short message naming the ones it does."""
    if not ref:
        return None
    return [account_named(aws, ref).account]


def account_named(aws: Aws, ref: str) -> Aws:
    """The handle of the managed account named or numbered `ref`. Raises UsageError naming the configured ones."""
    managed = aws.accounts
    if not managed:
        raise UsageError("No accounts are configured (`[[accounts]]` or `[organization]` in the policy file): "
                         "amibot works in its own account only, so `--account` has nothing to choose from.")
    found = find_account(managed, ref)
    if found is None:
        names = ", ".join(f"`{account.short}`" for account in managed)
        raise UsageError(f"No account `{escape(ref[:40])}` is configured; the accounts are {names}.")
    return aws.of(found)


def acting_account(aws: Aws, ref: str | None) -> Aws:
    """Where something new is made (create, register, base --copy): `--account`, else the bot's own account (the
    managed account without a role), else the first managed one."""
    if ref:
        return account_named(aws, ref)
    handles = aws.handles()
    return next((handle for handle in handles if handle.account.is_home), handles[0])


def account_labels(aws: Aws) -> dict[str, str]:
    """{account id: short name} when listings need an account column (more than one account), else {}."""
    return {account.id: account.short for account in aws.accounts} if aws.many else {}


@requires("ec2:DescribeImageAttribute")
def shares_of(owner: Aws, image: Image) -> Shares:
    """Who may launch the image: accounts, organisations, OUs, everyone. `owner`: the handle of the account that
    owns it (AwsAccounts.of(image.account))."""
    result = call(owner.ec2(image.region), "describe_image_attribute", resource=f"AMI {image.id}",
                  ImageId=image.id, Attribute="launchPermission")
    shares = Shares()
    for permission in result.get("LaunchPermissions", []):
        if permission.get("Group") == "all":
            shares.public = True
        if permission.get("UserId"):
            shares.accounts.append(permission["UserId"])
        if permission.get("OrganizationArn"):
            shares.organizations.append(permission["OrganizationArn"])
        if permission.get("OrganizationalUnitArn"):
            shares.organizational_units.append(permission["OrganizationalUnitArn"])
    shares.public = shares.public or image.public
    return shares


def shares_of_many(aws: Aws, images: list[Image]) -> dict[str, Shares | AwsError]:
    """Launch permissions for a page of images (one call each; only for what is shown)."""
    def one(image: Image) -> Shares | AwsError:
        try:
            return shares_of(aws.of(image.account), image)
        except AwsError as error:
            return error

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip([image.id for image in images], pool.map(one, images), strict=True))
