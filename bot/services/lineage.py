"""An image's lineage: what it was made from, back to the AWS base image, and what was made from it (issue 22 §6).

Three sources, in this order of trust:

- amibot's lineage tags on a baked image: ``amibot:source-image`` (the image it was baked from) and
  ``amibot:bake`` (the run that baked it; ``bake_of`` reads it);
- the image's own ``SourceImageId`` (and ``SourceImageRegion``), which DescribeImages reports for an image made
  from another one (CreateImage, CopyImage…);
- ``GetImageAncestry``, where the endpoint has it: the whole chain from the image to its root, in one call. It is
  feature-detected: an endpoint without it (moto, older partitions) makes what only it could tell "unknown",
  never "none".

Descendants are the images this one's account(s) own, in the regions read, whose ``amibot:source-image`` or
``SourceImageId`` is this image (and theirs, and so on): "known" descendants, with the regions not read named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.aws import data as awsdata
from bot.aws.clients import Aws, AwsAccounts, call, requires
from bot.core.errors import AwsDenied, AwsError, NotFound, Unsupported
from bot.services.images import Image, describe_own_images, list_images

SOURCE_TAG = "amibot:source-image"
BAKE_TAG = "amibot:bake"
BASE_OWNERS = ("amazon", "aws-marketplace")  # ImageOwnerAlias of AWS's own images
MAX_DEPTH = 25  # ancestors followed; a longer chain (or a loop in the tags) stops there, said so

# Tag and parameter values come from anywhere: only an id that looks like one is followed.
_AMI = re.compile(r"ami-[0-9a-f]{8,17}")
_INSTANCE = re.compile(r"i-[0-9a-f]{8,17}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Bake:
    """What baked an image, from its ``amibot:bake`` tag: a pipeline, a runbook or an instance, and its name."""

    mechanism: str  # pipeline | runbook | instance | bake (a run amibot named otherwise)
    name: str


def bake_of(value: str | None) -> Bake | None:
    """Read an ``amibot:bake`` tag. Understood: an Image Builder ARN (image-pipeline/NAME or image/NAME/…) →
    pipeline NAME; ``pipeline:NAME``, ``runbook:NAME`` / ``automation:NAME`` (an optional ``/execution`` after the
    runbook is dropped), ``instance:i-…``; a bare instance id → instance; a bare Automation execution id →
    runbook (its name not known). Anything else is kept as the run's name."""
    value = (value or "").strip()
    if not value:
        return None
    if value.startswith("arn:") and ":imagebuilder:" in value:
        resource = value.split(":", 5)[-1]
        parts = resource.split("/")
        return Bake("pipeline", parts[1] if len(parts) > 1 else resource)
    kind, _, rest = value.partition(":")
    kind = kind.lower()
    if rest and kind in ("pipeline", "runbook", "automation", "instance"):
        mechanism = "runbook" if kind == "automation" else kind
        name = rest.split("/")[0]  # what follows a "/" names the run (an execution, amibot's bake id)
        return Bake(mechanism, name)
    if _INSTANCE.fullmatch(value):
        return Bake("instance", value)
    if _UUID.fullmatch(value):
        return Bake("runbook", f"execution {value}")
    return Bake("bake", value)


@dataclass
class Ancestor:
    """One image of the chain above the image, nearest first. `image` is None when it could not be described
    (not shared with us, deregistered, another account's): what is known of it is its id and what told us."""

    image_id: str
    region: str
    how: str  # what said it is the parent of the one before: "tag", "SourceImageId" or "GetImageAncestry"
    image: Image | None = None
    created: datetime | None = None
    owner_alias: str | None = None  # amazon, aws-marketplace… (DescribeImages' or GetImageAncestry's)
    bake: Bake | None = None  # what baked it from its own parent (its tags)

    @property
    def name(self) -> str | None:
        return self.image.name if self.image is not None else None

    @property
    def version(self) -> str | None:
        return self.image.version if self.image is not None else None


@dataclass
class Lineage:
    image: Image
    bake: Bake | None  # what baked the image itself (its amibot:bake tag)
    ancestors: list[Ancestor] = field(default_factory=list)
    # How the chain ends: "base" (an AWS image: amazon / aws-marketplace), "root" (GetImageAncestry's last entry,
    # not AWS's), "unknown" (what the last one was made from is not known), "cut" (longer than MAX_DEPTH, or a loop)
    end: str = "unknown"
    ancestry_api: bool | None = None  # GetImageAncestry: True answered, False the endpoint lacks it, None not asked
    ancestry_problem: str | None = None  # it failed otherwise (denied…): said, never read as "no ancestors"
    descendants: list[tuple[int, Image]] = field(default_factory=list)  # (depth, image), tree order
    unread: dict[str, str] = field(default_factory=dict)  # where descendants could not be read: reason


@requires("ec2:GetImageAncestry")
def ancestry(aws: Aws, image_id: str, region: str) -> list[dict] | None:
    """GetImageAncestry's entries, from the image to its root; None when the endpoint does not have the API."""
    try:
        answer = call(aws.ec2(region), "get_image_ancestry", resource=f"AMI {image_id}", ImageId=image_id)
    except Unsupported:
        return None
    return [entry for entry in answer.get("ImageAncestryEntries") or [] if isinstance(entry, dict)]


@requires("ec2:DescribeImages")
def describe_any(aws: Aws, image_id: str, region: str, family_tag: str) -> Image | None:
    """An image by id, whoever owns it (AWS's base images are Amazon's), or None when it cannot be described."""
    try:
        answer = call(aws.ec2(region), "describe_images", resource=f"AMI {image_id}", ImageIds=[image_id])
    except (NotFound, AwsError):
        return None
    for item in answer.get("Images") or []:
        if isinstance(item, dict) and item.get("ImageId") == image_id:
            return Image.from_aws(item, region, family_tag)
    return None


def parent_of(image: Image) -> tuple[str, str, str] | None:
    """(parent id, its region, how it is known) from the image's tags or its SourceImageId; None if neither."""
    tagged = (image.tags.get(SOURCE_TAG) or "").strip()
    if _AMI.fullmatch(tagged):
        return tagged, image.region, "tag"
    source = awsdata.optional_text(image.raw, "SourceImageId", awsdata.label("image", image.id, image.region))
    if source and _AMI.fullmatch(source):
        region = image.raw.get("SourceImageRegion")
        return source, region if isinstance(region, str) and region else image.region, "SourceImageId"
    return None


def lineage_of(aws: AwsAccounts, image: Image, family_tag: str) -> Lineage:
    """The image's ancestors (tags, SourceImageId, GetImageAncestry where the endpoint has it) and its known
    descendants in every managed account and region."""
    owner = aws.of(image.account)
    result = Lineage(image, bake_of(image.tags.get(BAKE_TAG)))
    own, unread = _own_images(aws, family_tag)
    result.unread = unread
    by_id = {candidate.id: candidate for candidate in own}
    _ancestors(owner, result, by_id, family_tag)
    result.descendants = _descendants(image, own)
    return result


def _own_images(aws: AwsAccounts, family_tag: str) -> tuple[list[Image], dict[str, str]]:
    images, failures = list_images(aws, family_tag)
    return images, {where: error.message for where, error in failures.items()}


def _ancestors(owner: Aws, result: Lineage, by_id: dict[str, Image], family_tag: str) -> None:
    image = result.image
    entries: dict[str, dict] | None = None  # GetImageAncestry's, by image id, asked once when the chain needs it
    seen = {image.id}
    current_id, current, region = image.id, image, image.region
    while True:
        known = parent_of(current) if current is not None else None
        if known is None:
            if entries is None and result.ancestry_api is None:
                entries = _ask_ancestry(owner, result, image.id, image.region)
            entry = (entries or {}).get(current_id)
            if entry is not None and entry.get("SourceImageId"):
                known = (entry["SourceImageId"], entry.get("SourceImageRegion") or region, "GetImageAncestry")
            else:
                result.end = _end(result, current, entry)
                return
        parent_id, parent_region, how = known
        if parent_id in seen or len(result.ancestors) >= MAX_DEPTH:
            result.end = "cut"
            return
        seen.add(parent_id)
        parent = by_id.get(parent_id) or describe_any(owner, parent_id, parent_region, family_tag)
        entry = (entries or {}).get(parent_id) or {}
        alias = parent.raw.get("ImageOwnerAlias") if parent is not None else entry.get("ImageOwnerAlias")
        result.ancestors.append(Ancestor(
            parent_id, parent_region, how, parent,
            created=parent.created if parent is not None else awsdata.parse_time(entry.get("CreationDate")),
            owner_alias=alias if isinstance(alias, str) else None,
            bake=bake_of(parent.tags.get(BAKE_TAG)) if parent is not None else None))
        current_id, current, region = parent_id, parent, parent_region


def _ask_ancestry(owner: Aws, result: Lineage, image_id: str, region: str) -> dict[str, dict]:
    try:
        entries = ancestry(owner, image_id, region)
    except AwsDenied as denied:
        result.ancestry_api, result.ancestry_problem = True, denied.message
        return {}
    except AwsError as error:
        result.ancestry_api, result.ancestry_problem = True, error.message
        return {}
    result.ancestry_api = entries is not None
    return {entry["ImageId"]: entry for entry in entries or [] if isinstance(entry.get("ImageId"), str)}


def _end(result: Lineage, last: Image | None, entry: dict | None) -> str:
    alias = (last.raw.get("ImageOwnerAlias") if last is not None else None) or (entry or {}).get("ImageOwnerAlias")
    if alias in BASE_OWNERS:
        return "base"
    if entry is not None and not result.ancestry_problem:
        return "root"  # GetImageAncestry's last entry: the chain's root, as AWS knows it
    return "unknown"


def _descendants(image: Image, own: list[Image]) -> list[tuple[int, Image]]:
    children: dict[str, list[Image]] = {}
    for candidate in own:
        known = parent_of(candidate)
        if known is not None and candidate.id != image.id:
            children.setdefault(known[0], []).append(candidate)
    found: list[tuple[int, Image]] = []
    seen = {image.id}

    def walk(parent_id: str, depth: int) -> None:
        for child in sorted(children.get(parent_id, []), key=lambda item: (item.created is None, item.created)):
            if child.id in seen or len(found) >= 200:
                continue
            seen.add(child.id)
            found.append((depth, child))
            walk(child.id, depth + 1)

    walk(image.id, 1)
    return found


# --- `/ami show`: one line of where the image came from, and how many were baked from it ---------------------

@dataclass
class Origin:
    """What `/ami show` says of an image's lineage."""

    source_id: str | None  # None: nothing says what it was made from
    source: Image | None  # the source, described (None: could not be)
    how: str | None  # "tag" or "SourceImageId"
    bake: Bake | None
    children: int | None  # images tagged as baked from it, in its account and region; None: not read

    @property
    def anything(self) -> bool:
        return bool(self.source_id or self.children)


@requires("ec2:DescribeImages")
def origin_of(owner: Aws, image: Image, family_tag: str) -> Origin:
    """The image's source (its lineage tags, else its SourceImageId) and how many images in its account and
    region say they were baked from it. `owner`: the handle of the account that owns the image."""
    known = parent_of(image)
    source = describe_any(owner, known[0], known[1], family_tag) if known else None
    try:
        children = len(describe_own_images(owner, image.region, family_tag, **{f"tag:{SOURCE_TAG}": [image.id]}))
    except AwsError:
        children = None
    return Origin(known[0] if known else None, source, known[2] if known else None,
                  bake_of(image.tags.get(BAKE_TAG)), children)
