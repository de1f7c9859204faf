"""Drift: instances (not terminated) that run something other than their family's current version.

An instance drifts when its image is not the family's current version in its region (the promoted one,
else the newest available one — what a launch by family would get), or is deprecated, disabled or gone.
The image an instance was launched from comes from DescribeInstanceImageMetadata where the endpoint has it:
it names the image (and its name, owner and state) even after the image was deregistered. Elsewhere it is
DescribeInstances, and images that DescribeImages no longer returns are "deregistered (or no longer
visible)". Instances whose image has no family amibot knows (another account's image, a gone image without a
name) are counted apart, never dropped.

One truth: `/ami drift`, the digest and the Home tab all `read` each account-region, `name` the leftovers and
`combine` the readings, so their numbers agree.

Calls per region are constant in the number of instances and images: one paginated listing of own images,
one of instances (or instance image metadata), and DescribeImages for leftover ids in batches of 200.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.aws import data as awsdata
from bot.aws.clients import Aws, paginate, requires
from bot.core.errors import AwsError, Unsupported
from bot.core.families import family_of
from bot.services import approvals
from bot.services.images import Image, describe_own_images
from bot.services.references import INSTANCES as INSTANCE_SOURCE
from bot.services.references import LIVE_STATES
from bot.services.versions import is_current, ordered_versions

log = logging.getLogger(__name__)

METADATA, INSTANCES = "instance image metadata", "instances and images"
BEHIND, DEPRECATED, DISABLED, GONE = "behind", "deprecated", "disabled", "deregistered"
BATCH = 200


@dataclass
class Running:
    """One instance and what amibot knows of the image it was launched from."""

    instance_id: str
    image_id: str
    image_name: str = ""
    image_owner: str | None = None
    gone: bool = False  # the image is deregistered (or no longer visible)
    account: str = ""  # the managed account it runs in (its short name), with many accounts
    name: str = ""  # its Name tag
    group: str = ""  # its Auto Scaling group (the aws:autoscaling:groupName tag)
    launched: datetime | None = None
    region: str = ""


@dataclass
class DriftGroup:
    family: str
    image_id: str
    image_name: str
    status: str  # behind | deprecated | disabled | deregistered
    instances: list[str] = field(default_factory=list)
    running: list[Running] = field(default_factory=list)  # the same instances, with what is known of each
    behind: int | None = None  # versions behind the current one, where both are known
    days_older: int | None = None
    by_account: dict[str, int] = field(default_factory=dict)  # account short name -> instances, many accounts


@dataclass
class FamilyDrift:
    family: str
    region: str
    current: Image | None
    on_current: int = 0
    groups: list[DriftGroup] = field(default_factory=list)

    @property
    def drifted(self) -> int:
        return sum(len(group.instances) for group in self.groups)

    @property
    def groups_behind(self) -> list[str]:
        """The Auto Scaling groups with an instance on another version — what `/ami rollout` would move (an
        instance outside a group is not): "web-asg", or "prod/web-asg" with many accounts."""
        return sorted({f"{instance.account}/{instance.group}" if instance.account else instance.group
                       for group in self.groups for instance in group.running if instance.group})


@dataclass
class Drift:
    families: list[FamilyDrift] = field(default_factory=list)
    unknown_family: int = 0  # instances whose image's family amibot cannot tell
    failures: dict[str, str] = field(default_factory=dict)  # region -> why it could not be checked
    sources: dict[str, str] = field(default_factory=dict)  # region -> METADATA | INSTANCES

    @property
    def drifted(self) -> int:
        return sum(family.drifted for family in self.families)

    def groups_behind(self, family: str, region: str | None = None) -> list[str]:
        """The family's Auto Scaling groups (in `region`, or anywhere) with an instance on another version."""
        return sorted({name for item in self.families if item.family == family
                       and (region is None or item.region == region) for name in item.groups_behind})

    def worst_first(self) -> list[FamilyDrift]:
        return sorted((f for f in self.families if f.drifted), key=lambda f: (-f.drifted, f.family, f.region))

    def instances_worst_first(self) -> list[tuple[Running, DriftGroup]]:
        """Every drifting instance, the worst first (WORST_FIRST says how)."""
        found = [(instance, group) for family in self.families for group in family.groups
                 for instance in group.running]
        return sorted(found, key=lambda pair: _worse(*pair))


SHOWN_GROUP_NAMES = 3


def rollout_words(family: str, groups: list[str]) -> str:
    """ "roll it out: `/ami rollout web` (2 Auto Scaling groups: web-a, web-b)", plain words (a renderer escapes
    them): said wherever Auto Scaling groups run another version of a family (`groups_behind`); "" when none does."""
    if not groups:
        return ""
    names = ", ".join(groups[:SHOWN_GROUP_NAMES])
    if len(groups) > SHOWN_GROUP_NAMES:
        names += f" and {len(groups) - SHOWN_GROUP_NAMES} more"
    return (f"roll it out: `/ami rollout {family}` ({len(groups)} Auto Scaling group{'s' if len(groups) != 1 else ''}"
            f": {names})")


WORST_FIRST = ("the worst first (most versions behind, then on a deregistered, disabled or deprecated image, "
               "then the oldest launch)")
_STATUS_RANK = {GONE: 0, DISABLED: 1, DEPRECATED: 2, BEHIND: 3}
_LATEST = datetime.max.replace(tzinfo=UTC)


def _worse(instance: Running, group: DriftGroup) -> tuple:
    return (-(group.behind or 0), _STATUS_RANK.get(group.status, 4), instance.launched or _LATEST,
            instance.instance_id)


@dataclass
class Reading:
    """What one account-region holds: its own images and, where its instances were read, those instances."""

    region: str
    images: list[Image]
    running: list[Running] | None  # None: its instances were not read (only its images count)
    source: str | None = None
    handle: Aws | None = field(default=None, repr=False)  # the account it was read in (to name leftovers)
    named: bool = False  # leftovers named (see `name`)


@requires("ec2:DescribeInstanceImageMetadata")
def _from_metadata(aws: Aws, region: str) -> list[Running]:
    client = aws.client("ec2", region, max_attempts=1)  # feature probe: an endpoint's 500 is not retried
    running = []
    for item in paginate(client, "describe_instance_image_metadata", "InstanceImageMetadata",
                         Filters=[{"Name": "instance-state-name", "Values": LIVE_STATES}]):
        instance_id = awsdata.item_id(item, "InstanceId", "instance image metadata", region)
        metadata = item.get("ImageMetadata") if instance_id else None
        if not isinstance(metadata, dict) or not metadata.get("ImageId"):
            if instance_id:
                log.warning("instance %s in %s: no image metadata; counted as of unknown family", instance_id, region)
                running.append(_described(Running(instance_id, ""), item, region))
            continue
        state = str(metadata.get("State") or "")
        running.append(_described(Running(instance_id, str(metadata["ImageId"]), str(metadata.get("Name") or ""),
                                          str(metadata.get("OwnerId") or "") or None, gone=state == "deregistered"),
                                  item, region))
    return running


def _described(instance: Running, item: dict, region: str) -> Running:
    """Its Name tag, Auto Scaling group and launch time (both listings carry them), as far as they are readable."""
    what = f"instance {instance.instance_id}"
    instance.name = awsdata.tag_value(item, "Name", what)
    instance.group = awsdata.tag_value(item, "aws:autoscaling:groupName", what)
    instance.launched = awsdata.parse_time(item.get("LaunchTime"), what, "LaunchTime")
    instance.region = region
    return instance


@requires("ec2:DescribeInstances")
def _from_instances(aws: Aws, region: str) -> list[Running]:
    running = []
    for reservation in paginate(aws.ec2(region), "describe_instances", "Reservations",
                                Filters=[{"Name": "instance-state-name", "Values": LIVE_STATES}]):
        for item in reservation.get("Instances") or [] if isinstance(reservation, dict) else []:
            instance_id = awsdata.item_id(item, "InstanceId", "instance", region)
            if instance_id:
                running.append(_described(Running(instance_id, str(item.get("ImageId") or "")), item, region))
    return running


@requires("ec2:DescribeImages")
def _visible(aws: Aws, region: str, image_ids: list[str]) -> dict[str, dict]:
    """Images (of any owner) that DescribeImages still returns, by id; the rest are gone or not visible."""
    found: dict[str, dict] = {}
    for start in range(0, len(image_ids), BATCH):
        batch = image_ids[start:start + BATCH]
        for item in paginate(aws.ec2(region), "describe_images", "Images", ImageIds=batch, IncludeDisabled=True):
            if isinstance(item, dict) and item.get("ImageId"):
                found[item["ImageId"]] = item
    return found


def running_in(aws: Aws, region: str, listed: list[Running] | None = None) -> tuple[list[Running], str]:
    """`listed`: the region's instances as the caller's own scan already read them (DescribeInstances), used
    where the endpoint has no instance image metadata instead of listing them again."""
    try:
        return _from_metadata(aws, region), METADATA
    except Unsupported:
        return (listed if listed is not None else _from_instances(aws, region)), INSTANCES


def listed_instances(region: str, references) -> list[Running] | None:
    """The instances a digest scan found (bot.services.references.References), as drift reads them; None when
    that scan could not list them all (drift then lists them itself)."""
    if INSTANCE_SOURCE in references.unknown or any(INSTANCE_SOURCE in usage.unknown
                                                    for usage in references.by_image.values()):
        return None
    return [Running(instance.id, image_id, name=instance.name, group=instance.group, region=region)
            for image_id, usage in references.by_image.items() for instance in usage.instances]


def retired_names(store) -> dict[str, str]:
    """Names of images amibot itself deregistered (image id -> name), so instances still on a gone image keep
    their family even where the endpoint cannot say what the image was called."""
    retired = [params for _id, params in approvals.params_of(store, "deregister", state=approvals.SUCCEEDED)]
    return {params["image_id"]: params["name"] for params in retired if params.get("image_id") and params.get("name")}


def read(aws: Aws, region: str, family_tag: str, images: list[Image] | None = None,
         instances: bool = True, listed: list[Running] | None = None) -> Reading:
    """The listings drift needs in one account-region: its own images (unless the caller's scan already listed
    them) and its instances with the image each was launched from. Only images with a family are kept (an
    instance on another own image is of unknown family either way)."""
    images = describe_own_images(aws, region, family_tag) if images is None else images
    if not instances:
        return Reading(region, [image for image in images if image.family], None, handle=aws)
    running, source = running_in(aws, region, listed)
    for instance in running:
        instance.account = aws.account.short if aws.account.id else ""
    known = {image.id for image in images}
    return Reading(region, [image for image in images if image.family], running, source, aws,
                   named=source == METADATA or all(not r.image_id or r.image_id in known for r in running))


def name(readings: list[Reading]) -> dict[str, str]:
    """Instances read without image metadata, on an image no reading of their region owns: named from
    DescribeImages if it is still visible to their account (another account's, shared), else gone. Returns the
    account-regions where that could not be asked (they are "unknown family", and named in failures)."""
    failures: dict[str, str] = {}
    known: dict[str, set[str]] = defaultdict(set)
    for reading in readings:
        known[reading.region].update(image.id for image in reading.images)
    for reading in readings:
        if reading.named or reading.running is None or reading.handle is None:
            continue
        try:
            name_leftovers(reading.handle, reading.region, reading.running, known[reading.region])
            reading.named = True
        except AwsError as error:
            label = f"{reading.handle.account.label}, {reading.region}" if reading.handle.account.id else reading.region
            failures[f"{label} (images of its instances)"] = error.message
    return failures


def combine(readings: list[Reading], family_tag: str, now: datetime, family: str | None = None,
            names: dict[str, str] | None = None) -> Drift:
    """THE drift (no AWS call): per region, the instances of every reading against the families of every
    reading's images — an instance in prod on the bake account's image is judged by bake's current version.
    `/ami drift`, the digest and the Home tab all come here, so their numbers agree. Name the readings first
    (`name`); an unnamed one counts instances on images it does not own as of unknown family."""
    total = Drift()
    per_region: dict[str, list[Reading]] = defaultdict(list)
    for reading in readings:
        per_region[reading.region].append(reading)
    for region, found in per_region.items():
        images = [image for reading in found for image in reading.images]
        sources = {reading.source for reading in found if reading.running is not None}
        if not sources:
            continue
        running = [instance for reading in found for instance in reading.running or []]
        result = summarize(region, images, running, family_tag, now,
                           METADATA if sources == {METADATA} else INSTANCES, family, names)
        total.families += result.families
        total.unknown_family += result.unknown_family
        total.sources.update(result.sources)
    total.families.sort(key=lambda d: (d.family, d.region))
    return total


def fleet_drift(aws, family_tag: str, now: datetime, family: str | None = None, names: dict[str, str] | None = None,
                regions: list[str] | None = None, accounts: list | None = None) -> Drift:
    """Drift of the whole fleet (every managed account × region, or the bot's own regions without accounts;
    `accounts` narrows whose instances are read, never whose images count). A failed account-region is named in
    ``failures``, never left out."""
    every = aws.targets(regions=regions)
    running_from = {(target.account.id, target.region) for target in aws.targets(accounts, regions)}
    failures: dict[str, str] = {}
    readings = []
    results = aws.each_target(lambda handle, region: read(handle, region, family_tag,
                                                          instances=(handle.account.id, region) in running_from),
                              every)
    for target, result in results.items():
        if isinstance(result, AwsError):
            failures[target.label] = result.message
        else:
            readings.append(result)
    failures.update(name(readings))
    total = combine(readings, family_tag, now, family, names)
    total.failures.update(failures)
    return total


def region_drift(aws: Aws, region: str, family_tag: str, now: datetime, only: str | None = None,
                 names: dict[str, str] | None = None) -> Drift:
    """One account's drift in one region: the same `combine`."""
    readings = [read(aws, region, family_tag)]
    failures = name(readings)
    total = combine(readings, family_tag, now, only, names)
    total.failures.update(failures)
    return total


def summarize(region: str, images: list[Image], running: list[Running], family_tag: str, now: datetime,
              source: str, only: str | None = None, names: dict[str, str] | None = None) -> Drift:
    """Group the instances of one region by family and image against each family's current version."""
    result = Drift(sources={region: source})
    by_id = {image.id: image for image in images}
    for instance in running:
        if instance.gone and not instance.image_name and names and instance.image_id in names:
            instance.image_name = names[instance.image_id]
    families: dict[str, list[Image]] = defaultdict(list)
    for image in images:
        if image.family:
            families[image.family].append(image)
    currents = {name: _current(members, now) for name, members in families.items()}
    drifts: dict[str, FamilyDrift] = {}
    groups: dict[tuple[str, str], DriftGroup] = {}
    for instance in running:
        image = by_id.get(instance.image_id)
        family = image.family if image else (family_of(instance.image_name, {}, family_tag)
                                             if instance.gone and instance.image_name else "")
        if not family or (image is None and not instance.gone) or (only and family != only):
            if not only:
                result.unknown_family += 1
            continue
        current = currents.get(family)
        drift = drifts.setdefault(family, FamilyDrift(family, region, current))
        status = _status(image, current, now)
        if status is None:
            drift.on_current += 1
            continue
        key = (family, instance.image_id)
        if key not in groups:
            groups[key] = DriftGroup(family, instance.image_id, image.name if image else instance.image_name, status)
            groups[key].behind, groups[key].days_older = _distance(image, current, families.get(family, []))
            drift.groups.append(groups[key])
        groups[key].instances.append(instance.instance_id)
        groups[key].running.append(instance)
        if instance.account:
            groups[key].by_account[instance.account] = groups[key].by_account.get(instance.account, 0) + 1
    for drift in drifts.values():
        drift.groups.sort(key=lambda group: (-len(group.instances), group.image_name))
    result.families = sorted(drifts.values(), key=lambda d: d.family)
    return result


def _current(members: list[Image], now: datetime) -> Image | None:
    promoted = [image for image in members if is_current(image)]
    if promoted:
        return promoted[0]
    launchable = [image for image in members if image.state == "available"
                  and not (image.deprecation_time and image.deprecation_time <= now)]
    versions = ordered_versions(launchable)
    return versions[0].image if versions else None


def _status(image: Image | None, current: Image | None, now: datetime) -> str | None:
    if image is None:
        return GONE
    if image.state == "disabled":
        return DISABLED
    if image.deprecation_time and image.deprecation_time <= now:
        return DEPRECATED
    if current is not None and image.id == current.id:
        return None
    return BEHIND


def _distance(image: Image | None, current: Image | None, members: list[Image]) -> tuple[int | None, int | None]:
    if image is None or current is None:
        return None, None
    order = [version.image.id for version in ordered_versions(members)]  # newest first
    behind = order.index(image.id) - order.index(current.id) if image.id in order and current.id in order else None
    days = None
    if image.created and current.created:
        days = int((current.created - image.created).total_seconds() // 86400)
    return behind, days


def drift(aws: Aws, regions: list[str], family_tag: str, now: datetime, family: str | None = None,
          names: dict[str, str] | None = None) -> Drift:
    """One account's drift across `regions` (a region that cannot be checked is named in ``failures``)."""
    results = aws.each_region(lambda region: read(aws, region, family_tag), regions)
    failures = {region: result.message for region, result in results.items() if isinstance(result, AwsError)}
    readings = [result for result in results.values() if not isinstance(result, AwsError)]
    failures.update(name(readings))
    total = combine(readings, family_tag, now, family, names)
    total.failures.update(failures)
    return total


def name_leftovers(aws: Aws, region: str, running: list[Running], known: set[str]) -> None:
    """Instances read without image metadata, on an image not in `known`: named from DescribeImages if it is
    still visible (another account's, shared), else gone."""
    leftover = sorted({r.image_id for r in running if r.image_id and r.image_id not in known})
    visible = _visible(aws, region, leftover) if leftover else {}
    for instance in running:
        if instance.image_id in visible:
            data = visible[instance.image_id]
            instance.image_name, instance.image_owner = str(data.get("Name") or ""), data.get("OwnerId")
        elif instance.image_id and instance.image_id not in known:
            instance.gone = True


def drift_after_change(aws, owner: Aws, region: str, family_tag: str, now: datetime, family: str,
                       names: dict[str, str] | None = None) -> Drift:
    """The family's drift in the region a change (a promotion, a rollback) was made in: in the owner's account, or
    — with many accounts, where prod runs the bake account's images — in every managed one (as `/ami drift`), so
    the Auto Scaling groups to roll out to are found where they run. `aws`: the managed accounts (AwsAccounts)."""
    if aws.many:
        return fleet_drift(aws, family_tag, now, family, names, regions=[region])
    return drift(owner, [region], family_tag, now, family, names)
