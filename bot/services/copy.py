"""Copying an image into another region (any real region, configured or not), tags carried along.

The wait for the copy is not here: the command hands the new image to the durable ``image.watch``
job (handlers/actions/image_buttons.py) that every new image goes through, so a copy taking half an
hour holds no worker and survives a restart.

The copy is tagged by amibot itself after CopyImage rather than with CopyImageTags, so the same
tags arrive on every endpoint and amibot's own markers (which version is a family's *current* one
in its region) are not copied into a region where they would be false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.aws.clients import Aws, call, requires
from bot.core import regions
from bot.core.errors import PolicyViolation, UsageError
from bot.core.text import escape
from bot.services.images import Image, describe_own_images

MAX_TAGS = 50  # per EC2 resource
NOT_CARRIED = ("aws:", "amibot:current")  # reserved by AWS; amibot's per-region promotion marker
TAG_COPIED_FROM = "amibot:copied-from"
TAG_REQUESTED_BY = "amibot:requested-by"
IMAGE_NAME = re.compile(r"^[A-Za-z0-9()\[\] ./'@_-]{3,128}$")  # what EC2 accepts for an image name
KMS_KEY = re.compile(r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+"
                     r"|alias/[A-Za-z0-9/_-]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                     r"|mrk-[0-9a-f]{32})$")


def known_regions() -> frozenset[str]:
    """Every EC2 region botocore knows, in every partition (bot.core.regions: botocore's endpoint data)."""
    return regions.all_regions()


def parse_region(text: str) -> str:
    """The copy's destination: a real region (checked against botocore's data, with a suggestion for a typo)."""
    region = text.strip().lower()
    problem = regions.problem(region)
    if problem:
        message = regions.problem(text.strip()) or problem
        raise UsageError(message if message.endswith("?") else f"{message}.")
    return region


def parse_name(text: str | None) -> str | None:
    if text is None:
        return None
    if not IMAGE_NAME.match(text):
        raise UsageError("An image name has 3 to 128 characters: letters, digits, spaces and ( ) [ ] . / - ' @ _")
    return text


def parse_kms_key(text: str | None, encrypt: bool) -> str | None:
    if text is None:
        return None
    if not encrypt:
        raise UsageError("`--kms-key` only goes with `--encrypt`.")
    if not KMS_KEY.match(text):
        raise UsageError(f"`{escape(text[:60])}` is not a KMS key id, alias (alias/…) or key ARN.")
    return text


@dataclass
class CopyOrder:
    image: Image
    destination: str
    name: str
    encrypt: bool = False
    kms_key: str | None = None


def plan(image: Image, destination: str, name: str | None, encrypt: bool, kms_key: str | None) -> CopyOrder:
    crossing = regions.problem(destination, regions.partition_of(image.region))
    if crossing:  # CopyImage works within a partition only
        raise UsageError(f"{crossing}.")
    if image.state != "available":
        raise PolicyViolation(f"{image.id} is {image.state}; only an available image can be copied.")
    if destination == image.region and not name and not encrypt:
        raise UsageError(f"{image.id} is already in {destination}. Copy it within the region only to encrypt it "
                         "(`--encrypt`) or under another name (`--name N`).")
    default = image.name or image.id
    if destination == image.region and not name:
        default = f"{default}-encrypted"[:128]
    return CopyOrder(image, destination, name or default, encrypt, kms_key)


def same_name_in(aws: Aws, order: CopyOrder, family_tag: str) -> list[Image]:
    """Own images already named like the copy in its destination: a second one would make every lookup by
    that name ambiguous, so the copy then needs --force."""
    return [image for image in describe_own_images(aws, order.destination, family_tag, name=[order.name])
            if image.id != order.image.id]


def refuse_duplicate_name(existing: list[Image], order: CopyOrder) -> None:
    if not existing:
        return
    first = existing[0]
    created = first.created.strftime("%Y-%m-%d") if first.created else "unknown date"
    raise PolicyViolation(
        f"{order.destination} already has an image named “{escape(order.name)}” (`{first.id}`, created {created}); "
        "a second one would make that name ambiguous. Copy it under another name with `--name N`, "
        "or add `--force` to copy anyway.")


def carried_tags(image: Image, requested_by: str) -> list[dict[str, str]]:
    ours = {TAG_COPIED_FROM: f"{image.id}@{image.region}", TAG_REQUESTED_BY: requested_by}
    carried = {key: value for key, value in image.tags.items()
               if not key.startswith(NOT_CARRIED) and key not in ours}
    tags = [{"Key": key, "Value": value} for key, value in ours.items()]
    tags += [{"Key": key, "Value": value} for key, value in carried.items()]
    return tags[:MAX_TAGS]


@requires("ec2:CopyImage", "ec2:CreateTags")
def copy_image(aws: Aws, order: CopyOrder, requested_by: str, client_token: str) -> str:
    """Start the copy in the destination region; return the new image id (tagged at once)."""
    image = order.image
    ec2 = aws.ec2(order.destination)
    kwargs = {"SourceImageId": image.id, "SourceRegion": image.region, "Name": order.name,
              "Description": f"Copy of {image.id} from {image.region}, made by amibot"[:255],
              "ClientToken": client_token[:64]}
    if order.encrypt:
        kwargs["Encrypted"] = True
        if order.kms_key:
            kwargs["KmsKeyId"] = order.kms_key
    new_id = call(ec2, "copy_image", **kwargs)["ImageId"]
    call(ec2, "create_tags", resource=f"AMI {new_id}", Resources=[new_id], Tags=carried_tags(image, requested_by))
    return new_id
