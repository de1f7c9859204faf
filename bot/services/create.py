"""Baking images: from an instance (CreateImage) or from an EBS snapshot (RegisterImage), tagged
with their family, version and who made them; and waiting, bounded, until AWS says available.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.aws.clients import Aws, call, first_found, paginate, requires
from bot.core.errors import Ambiguous, AmibotError, AwsError, NotFound, PolicyViolation, UsageError
from bot.core.ids import INSTANCE_ID
from bot.core.text import escape
from bot.services.images import Image, describe_own_images, family_of

CREATED_BY_TAG = "amibot:created-by"
# AWS: 3-128 characters: letters, digits, ( ) [ ] space . / - ' @ _
IMAGE_NAME = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")
VERSION_TEXT = re.compile(r"^[A-Za-z0-9._+\-]{1,64}$")
FAMILY_TEXT = re.compile(r"^[A-Za-z0-9._+\-/ ]{1,128}$")
ARCHITECTURES = ("x86_64", "arm64")
BOOT_MODES = ("uefi", "legacy-bios")
ROOT_DEVICE = "/dev/xvda"
DEFAULT_WAIT_SECONDS = 600.0  # CreateImage of a large instance can take longer; the message says so
DEFAULT_POLL_SECONDS = 15.0
FINAL_STATES = ("available", "failed", "error", "invalid", "deregistered", "disabled")


def check_name(name: str) -> str:
    if not IMAGE_NAME.match(name):
        raise UsageError(f"`{escape(name[:60])}` is not a valid AMI name: 3–128 characters, letters, digits, spaces "
                         "and ( ) [ ] . / - ' @ _ only.")
    return name


def check_label(value: str | None, what: str, pattern: re.Pattern) -> str | None:
    if value is not None and not pattern.match(value):
        raise UsageError(f"`{escape(value[:60])}` is not a valid {what} (letters, digits and . _ + - only).")
    return value


@dataclass
class Labels:
    """The tags a new image gets: family, version, who made it, and anything extra (its source)."""

    family: str
    version: str | None
    created_by: str
    extra: dict[str, str] | None = None

    def tags(self, family_tag: str) -> list[dict[str, str]]:
        tags = {family_tag: self.family, CREATED_BY_TAG: self.created_by, **(self.extra or {})}
        if self.version:
            tags["Version"] = self.version
        return [{"Key": key, "Value": value} for key, value in tags.items()]


def labels_for(name: str, family: str | None, version: str | None, user: str, family_tag: str,
               extra: dict[str, str] | None = None) -> Labels:
    check_label(family, "family", FAMILY_TEXT)
    check_label(version, "version", VERSION_TEXT)
    return Labels(family or family_of(name, {}, family_tag), version, user, extra)


def check_name_free(aws: Aws, region: str, name: str, family_tag: str) -> None:
    """AMI names are unique per account and region; say which image holds the name."""
    taken = describe_own_images(aws, region, family_tag, name=[name])
    if taken:
        raise PolicyViolation(f"An AMI named “{name}” already exists in {region}: {taken[0].id}. "
                              "Pick another name (e.g. add a version or date).")


def explain_name_error(error: AwsError, name: str, region: str) -> AmibotError:
    if error.code == "InvalidAMIName.Duplicate":
        return PolicyViolation(f"An AMI named “{name}” already exists in {region}. Pick another name.")
    if error.code == "InvalidAMIName.Malformed":
        return UsageError(f"AWS does not accept “{name}” as an AMI name: 3–128 letters, digits, spaces "
                          "and ( ) [ ] . / - ' @ _.")
    return error


@dataclass
class Instance:
    id: str
    region: str
    state: str
    name: str
    launched: datetime | None = None
    image_id: str | None = None  # the image it runs (a bake from it records it as the new image's source)

    @classmethod
    def from_aws(cls, item: dict, region: str) -> Instance:
        tags = item.get("Tags") or []
        name = next((tag.get("Value") or "" for tag in tags if isinstance(tag, dict) and tag.get("Key") == "Name"), "")
        launched = item.get("LaunchTime")
        image_id = item.get("ImageId")
        return cls(item["InstanceId"], region, (item.get("State") or {}).get("Name", "?"), name,
                   launched if isinstance(launched, datetime) else None,
                   image_id if isinstance(image_id, str) and image_id else None)


GONE = ("shutting-down", "terminated")  # an instance Name tag names the live ones: these linger for an hour


@requires("ec2:DescribeInstances")
def find_instance(aws: Aws, ref: str, regions: list[str] | None = None) -> Instance:
    """The instance by id, or by its Name tag (people should not copy ids), in whichever configured region has it.
    A Name tag several live instances share raises Ambiguous listing them (ids, regions, launch dates): never a
    guess. Raises NotFound naming where it looked."""
    regions = regions or aws.regions
    if INSTANCE_ID.match(ref):
        return _instance_by_id(aws, ref, regions)
    results = aws.each_region(lambda region: [
        Instance.from_aws(item, region)
        for reservation in paginate(aws.ec2(region), "describe_instances", "Reservations",
                                    Filters=[{"Name": "tag:Name", "Values": [ref]}])
        for item in reservation.get("Instances", []) if (item.get("State") or {}).get("Name") not in GONE], regions)
    found = [instance for result in results.values() if not isinstance(result, AwsError) for instance in result]
    failures = [result for result in results.values() if isinstance(result, AwsError)]
    if not found:
        if failures:
            raise failures[0]
        raise NotFound(f"No instance named “{escape(ref)}” in {', '.join(regions)}.")
    if len(found) > 1:
        found.sort(key=lambda instance: (instance.launched is not None, instance.launched), reverse=True)
        lines = [f"• `{instance.id}` · {instance.region} · {instance.state} · launched "
                 f"{instance.launched.strftime('%Y-%m-%d %H:%M UTC') if instance.launched else 'unknown'}"
                 for instance in found[:8]]
        more = f"\n…and {len(found) - 8} more" if len(found) > 8 else ""
        raise Ambiguous(f"{len(found)} instances are named “{escape(ref)}”; say which one by id:\n"
                        + "\n".join(lines) + more, found)
    return found[0]


def _instance_by_id(aws: Aws, instance_id: str, regions: list[str]) -> Instance:

    def lookup(region: str) -> Instance | None:
        try:
            reservations = list(paginate(aws.ec2(region), "describe_instances", "Reservations",
                                         InstanceIds=[instance_id]))
        except AwsError as error:
            if error.code and error.code.startswith("InvalidInstanceID"):
                return None
            raise
        for reservation in reservations:
            for item in reservation.get("Instances", []):
                return Instance.from_aws(item, region)
        return None

    return first_found(aws, lookup, regions, f"Instance {instance_id} not found in {', '.join(regions)}.")


@requires("ec2:CreateImage", "ec2:CreateTags", "ec2:DescribeImages")
def create_from_instance(aws: Aws, instance: Instance, name: str, labels: Labels, family_tag: str,
                         reboot: bool) -> str:
    """CreateImage, tagged at creation. Returns the new image id (pending until AWS finishes)."""
    if instance.state in ("terminated", "shutting-down"):
        raise PolicyViolation(f"Instance {instance.id} is {instance.state}; there is nothing left to image.")
    check_name_free(aws, instance.region, name, family_tag)
    try:
        # Tags for the image only: snapshot tag specifications are not supported everywhere (moto).
        result = call(aws.ec2(instance.region), "create_image", InstanceId=instance.id, Name=name,
                      Description=f"Created by amibot from {instance.id} for {labels.created_by}",
                      NoReboot=not reboot,
                      TagSpecifications=[{"ResourceType": "image", "Tags": labels.tags(family_tag)}])
    except AwsError as error:
        raise explain_name_error(error, name, instance.region) from error
    return result["ImageId"]


@dataclass
class Snapshot:
    id: str
    region: str
    state: str
    progress: str
    owner_id: str
    size_gb: int
    encrypted: bool


@requires("ec2:DescribeSnapshots")
def find_snapshot(aws: Aws, snapshot_id: str, regions: list[str] | None = None) -> Snapshot:
    regions = regions or aws.regions

    def lookup(region: str) -> Snapshot | None:
        try:
            found = list(paginate(aws.ec2(region), "describe_snapshots", "Snapshots", SnapshotIds=[snapshot_id]))
        except AwsError as error:
            if error.code and error.code.startswith("InvalidSnapshot"):
                return None
            raise
        for item in found:
            return Snapshot(item["SnapshotId"], region, item.get("State", "?"), item.get("Progress", ""),
                            item.get("OwnerId", ""), int(item.get("VolumeSize") or 0), bool(item.get("Encrypted")))
        return None

    return first_found(aws, lookup, regions, f"Snapshot {snapshot_id} not found in {', '.join(regions)}.")


@requires("ec2:RegisterImage", "ec2:CreateTags", "ec2:DescribeImages")
def register_from_snapshot(aws: Aws, snapshot: Snapshot, name: str, labels: Labels, family_tag: str,
                           architecture: str, boot_mode: str | None) -> str:
    """RegisterImage with the snapshot as root volume (HVM, ENA). Returns the new image id."""
    if snapshot.owner_id != aws.account_id():
        raise PolicyViolation(f"Snapshot {snapshot.id} belongs to account {snapshot.owner_id}; amibot registers "
                              "images only from this account's own snapshots (copy it here first).")
    if snapshot.state != "completed":
        progress = f" ({snapshot.progress})" if snapshot.progress else ""
        raise PolicyViolation(f"Snapshot {snapshot.id} is {snapshot.state}{progress}; register it once it is "
                              "completed.")
    if architecture == "arm64" and boot_mode == "legacy-bios":
        raise UsageError("arm64 images boot with UEFI only; drop `--boot-mode legacy-bios`.")
    check_name_free(aws, snapshot.region, name, family_tag)
    kwargs: dict[str, Any] = {
        "Name": name, "Description": f"Registered by amibot from {snapshot.id} for {labels.created_by}",
        "Architecture": architecture, "RootDeviceName": ROOT_DEVICE, "VirtualizationType": "hvm",
        "EnaSupport": True,
        "BlockDeviceMappings": [{"DeviceName": ROOT_DEVICE, "Ebs": {
            "SnapshotId": snapshot.id, "DeleteOnTermination": True, "VolumeType": "gp3"}}],
    }
    if boot_mode:
        kwargs["BootMode"] = boot_mode
    ec2 = aws.ec2(snapshot.region)
    try:
        image_id = call(ec2, "register_image", **kwargs)["ImageId"]
    except AwsError as error:
        raise explain_name_error(error, name, snapshot.region) from error
    # Tagged afterwards: not every endpoint honours RegisterImage's TagSpecifications (moto does not).
    call(ec2, "create_tags", resource=f"AMI {image_id}", Resources=[image_id], Tags=labels.tags(family_tag))
    return image_id


@requires("ec2:DescribeImages")
def wait_for_image(aws: Aws, region: str, image_id: str, family_tag: str, timeout: float, interval: float,
                   sleep: Callable[[float], None] = time.sleep,
                   monotonic: Callable[[], float] = time.monotonic) -> Image | None:
    """Poll until the image leaves `pending` or the time is up; the image as last seen (None: gone).

    A brand-new image can be missing from DescribeImages for a moment (eventual consistency), so "not found"
    means gone only once the image has been seen; before that it is polled like a pending one."""
    deadline = monotonic() + timeout
    seen = False
    while True:
        found = describe_own_images(aws, region, family_tag, image_id=[image_id])
        image = found[0] if found else None
        seen = seen or image is not None
        if (image is None and seen) or (image and image.state in FINAL_STATES) or monotonic() >= deadline:
            return image
        sleep(max(0.0, min(interval, deadline - monotonic())))
