"""Finding and describing the account's own images across the configured regions."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.aws import Aws, call, paginate, requires
from bot.blocks import escape
from bot.commands import AMI_ID
from bot.errors import AwsError, NotFound, UsageError

# Trailing version or date parts that do not belong to a family name: -v1.2.3, -1.2, -20240501,
# -2024-05-01, -2024-05-01T10-00-00Z, _build-42 …
VERSION_SUFFIX = re.compile(
    r"[-_. ]+(v?\d+(\.\d+)*([-.]?(rc|beta|alpha)\d*)?|\d{4}-\d{2}-\d{2}([T_ -]?\d{2}[-:.]?\d{2}([-:.]?\d{2})?Z?)?"
    r"|\d{8}([T_-]?\d{4,6}Z?)?|build[-_]?\d+)$", re.IGNORECASE)


def family_of(name: str | None, tags: dict[str, str], family_tag: str) -> str:
    """The family tag if set, else the name without its version or date suffixes."""
    if tags.get(family_tag):
        return tags[family_tag]
    family = name or ""
    while True:
        stripped = VERSION_SUFFIX.sub("", family)
        if stripped == family or not stripped:
            return family
        family = stripped


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class BlockDevice:
    device: str
    snapshot_id: str | None
    size_gb: int | None
    volume_type: str | None
    encrypted: bool = False


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
        tags = {tag["Key"]: tag["Value"] for tag in data.get("Tags", [])}
        devices = [BlockDevice(device=mapping.get("DeviceName", ""),
                               snapshot_id=mapping.get("Ebs", {}).get("SnapshotId"),
                               size_gb=mapping.get("Ebs", {}).get("VolumeSize"),
                               volume_type=mapping.get("Ebs", {}).get("VolumeType"),
                               encrypted=bool(mapping.get("Ebs", {}).get("Encrypted")))
                   for mapping in data.get("BlockDeviceMappings", [])]
        name = data.get("Name", "")
        return cls(id=data["ImageId"], name=name, region=region, state=data.get("State", "unknown"),
                   owner_id=data.get("OwnerId", ""), created=parse_time(data.get("CreationDate")),
                   public=bool(data.get("Public")), description=data.get("Description") or "",
                   architecture=data.get("Architecture", ""), root_device=data.get("RootDeviceName", ""),
                   root_device_type=data.get("RootDeviceType", ""), tags=tags, devices=devices,
                   deprecation_time=parse_time(data.get("DeprecationTime")),
                   last_launched=parse_time(data.get("LastLaunchedTime")),
                   family=family_of(name, tags, family_tag), raw=data)


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
    return [Image.from_aws(item, region, family_tag)
            for item in paginate(aws.ec2(region), "describe_images", "Images", **kwargs)]


def matches(image: Image, text: str) -> bool:
    needle = text.lower()
    haystack = [image.id, image.name, *image.tags.values()]
    return any(needle in value.lower() for value in haystack if value)


def list_images(aws: Aws, family_tag: str, text: str | None = None,
                regions: list[str] | None = None) -> tuple[list[Image], dict[str, AwsError]]:
    """Own images across regions, newest first, filtered by text; plus the regions that failed."""
    results = aws.each_region(lambda region: describe_own_images(aws, region, family_tag), regions)
    images, failures = [], {}
    for region, result in results.items():
        if isinstance(result, AwsError):
            failures[region] = result
            continue
        images += [image for image in result if not text or matches(image, text)]
    images.sort(key=lambda image: (image.created is not None, image.created), reverse=True)
    return images, failures


def find_images(aws: Aws, ref: str, family_tag: str, regions: list[str] | None = None) -> list[Image]:
    """Images by id or exact name across regions (a name may match several). Raises NotFound."""
    regions = regions or aws.regions
    if ref.startswith("ami-") and not AMI_ID.match(ref):
        raise UsageError(f"`{escape(ref[:40])}` is not a valid image id (e.g. ami-0abc1234def567890).")
    if AMI_ID.match(ref):
        def lookup(region: str) -> list[Image]:
            return describe_own_images(aws, region, family_tag, include_disabled=True, image_id=[ref])
    else:
        def lookup(region: str) -> list[Image]:
            return describe_own_images(aws, region, family_tag, include_disabled=True, name=[ref])
    found: list[Image] = []
    failures: list[AwsError] = []
    for result in aws.each_region(lookup, regions).values():
        if isinstance(result, AwsError):
            failures.append(result)
        else:
            found += result
    if not found:
        if failures:
            raise failures[0]
        where = regions[0] if len(regions) == 1 else ", ".join(regions)
        raise NotFound(f"AMI {escape(ref)} not found in {where}")
    found.sort(key=lambda image: (image.created is not None, image.created), reverse=True)
    return found


@requires("ec2:DescribeImageAttribute")
def shares_of(aws: Aws, image: Image) -> Shares:
    """Who may launch the image: accounts, organisations, OUs, everyone."""
    result = call(aws.ec2(image.region), "describe_image_attribute", resource=f"AMI {image.id}",
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
            return shares_of(aws, image)
        except AwsError as error:
            return error

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip([image.id for image in images], pool.map(one, images), strict=True))
