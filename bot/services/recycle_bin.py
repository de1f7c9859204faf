"""The Recycle Bin: the undo for deregistration.

A retention rule (rbin) for EC2 images keeps a deregistered image recoverable for its retention period; a
matching rule for EBS snapshots keeps the snapshots deleted with it. amibot reads the rules and what is in
the bin, creates a pair of rules (with approval), and restores an image together with the snapshots that
were deleted with it — snapshots first, so the restored image can launch at once.

Every call is feature-detected: an endpoint without the Recycle Bin (moto, LocalStack, older partitions)
gives "unknown" (``None``) with the reason, never an empty list that would read as "nothing".
Restoring is idempotent: each piece is looked up first, so running it again after a crash finishes what
is left and reports what was already back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.aws.clients import Aws, call, paginate, requires
from bot.core.errors import AmibotError, AwsError, NotFound, UsageError
from bot.durable import steps
from bot.services import approvals
from bot.services.images import Image

log = logging.getLogger(__name__)

IMAGE, SNAPSHOT = "EC2_IMAGE", "EBS_SNAPSHOT"
ENABLE_KIND = "recycle-bin-enable"
DEFAULT_DAYS = 14
MAX_DAYS = 365  # what rbin allows
EXPIRING_SOON = timedelta(days=7)
UNIT_DAYS = {"DAYS": 1}


@dataclass
class RetentionRule:
    id: str
    resource_type: str
    days: int | None
    tags: list[tuple[str, str]] = field(default_factory=list)  # empty: every resource of the type in the region
    excluded: list[tuple[str, str]] = field(default_factory=list)
    lock_state: str = "unlocked"  # locked | pending_unlock | unlocked (AWS omits it for rules never locked)
    status: str = "available"
    description: str = ""

    def covers(self, tags: dict[str, str]) -> bool:
        """A rule without resource tags covers every resource of its type in the region, less the excluded tags;
        a rule with tags covers resources with any of them."""
        have = set(tags.items())
        return (not self.tags or bool(set(self.tags) & have)) and not (set(self.excluded) & have)

    @property
    def scope(self) -> str:
        if not self.tags:
            scope = "all"
        else:
            scope = "tags " + ", ".join(f"{key}={value}" if value else key for key, value in self.tags)
        if self.excluded:
            scope += " except " + ", ".join(f"{key}={value}" if value else key for key, value in self.excluded)
        return scope


@dataclass
class BinItem:
    id: str
    name: str
    entered: datetime | None
    expires: datetime | None
    description: str = ""


@dataclass
class RegionBin:
    """One region's Recycle Bin. ``None`` means unknown (the reason is in ``errors``), never "none"."""

    region: str
    rules: list[RetentionRule] | None = None
    images: list[BinItem] | None = None
    snapshots: list[BinItem] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _pairs(values) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        if isinstance(value, dict) and value.get("ResourceTagKey"):
            pairs.append((str(value["ResourceTagKey"]), str(value.get("ResourceTagValue") or "")))
    return pairs


def _days(period) -> int | None:
    if not isinstance(period, dict):
        return None
    value, unit = period.get("RetentionPeriodValue"), period.get("RetentionPeriodUnit", "DAYS")
    if not isinstance(value, int) or unit not in UNIT_DAYS:
        return None
    return value * UNIT_DAYS[unit]


def rule_from(data: dict) -> RetentionRule:
    return RetentionRule(id=str(data.get("Identifier") or "?"), resource_type=str(data.get("ResourceType") or ""),
                         days=_days(data.get("RetentionPeriod")), tags=_pairs(data.get("ResourceTags")),
                         excluded=_pairs(data.get("ExcludeResourceTags")),
                         lock_state=str(data.get("LockState") or "unlocked"),
                         status=str(data.get("Status") or "available"), description=str(data.get("Description") or ""))


def _rbin(aws: Aws, region: str):
    return aws.client("rbin", region, max_attempts=1)  # probing support: do not retry an endpoint's 500s


def _ec2_bin(aws: Aws, region: str):
    # A client of its own (one attempt: moto answers an unknown action with a 500 botocore would retry); the
    # tests stub this one without touching the ec2 client everything else uses.
    return aws.client("ec2", region, max_attempts=1)


@requires("rbin:ListRules", "rbin:GetRule")
def rules_in(aws: Aws, region: str, resource_type: str) -> list[RetentionRule]:
    """Every retention rule of one resource type, in full (ListRules gives only summaries)."""
    client = _rbin(aws, region)
    summaries = list(paginate(client, "list_rules", "Rules", ResourceType=resource_type))
    rules = []
    for summary in summaries:
        identifier = summary.get("Identifier") if isinstance(summary, dict) else None
        if not identifier:
            log.warning("a Recycle Bin rule in %s has no Identifier; skipped", region)
            continue
        rule = rule_from(call(client, "get_rule", Identifier=identifier))
        rule.resource_type = rule.resource_type or resource_type
        rules.append(rule)
    return rules


def _items(raw: list, id_key: str, name_key: str) -> list[BinItem]:
    items = []
    for data in raw:
        if not isinstance(data, dict) or not data.get(id_key):
            log.warning("an item in the Recycle Bin has no %s; skipped", id_key)
            continue
        entered, expires = data.get("RecycleBinEnterTime"), data.get("RecycleBinExitTime")
        items.append(BinItem(id=str(data[id_key]), name=str(data.get(name_key) or ""),
                             entered=entered if isinstance(entered, datetime) else None,
                             expires=expires if isinstance(expires, datetime) else None,
                             description=str(data.get("Description") or "")))
    items.sort(key=lambda item: (item.expires is None, item.expires or datetime.max))
    return items


@requires("ec2:ListImagesInRecycleBin")
def images_in_bin(aws: Aws, region: str, image_ids: list[str] | None = None) -> list[BinItem]:
    kwargs = {"ImageIds": image_ids} if image_ids else {}
    try:
        raw = list(paginate(_ec2_bin(aws, region), "list_images_in_recycle_bin", "Images", **kwargs))
    except AwsError as error:
        if image_ids and (error.code or "").endswith(".NotFound"):  # asked for ids that are not in the bin
            return []
        raise
    return _items(raw, "ImageId", "Name")


@requires("ec2:ListSnapshotsInRecycleBin")
def snapshots_in_bin(aws: Aws, region: str) -> list[BinItem]:
    return _items(list(paginate(_ec2_bin(aws, region), "list_snapshots_in_recycle_bin", "Snapshots")),
                  "SnapshotId", "SnapshotId")


def read_bin(aws: Aws, region: str) -> RegionBin:
    """Rules for images and snapshots, and the images and snapshots in the bin; each part may be unknown."""
    found = RegionBin(region)
    try:
        found.rules = rules_in(aws, region, IMAGE) + rules_in(aws, region, SNAPSHOT)
    except AwsError as error:
        found.errors["rules"] = error.message
    for part, reader in (("images", images_in_bin), ("snapshots", snapshots_in_bin)):
        try:
            setattr(found, part, reader(aws, region))
        except AwsError as error:
            found.errors[part] = error.message
    return found


def read_bins(aws: Aws, regions: list[str]) -> list[RegionBin]:
    results = aws.each_region(lambda region: read_bin(aws, region), regions)
    bins = []
    for region, result in results.items():
        if isinstance(result, AwsError):  # read_bin catches per part; this is a failure before any call
            bins.append(RegionBin(region, errors={"rules": result.message}))
        else:
            bins.append(result)
    return bins


def expiring(bins: list[RegionBin], now: datetime, within: timedelta = EXPIRING_SOON) -> list[tuple[str, BinItem]]:
    """(region, image) for images in the bin that leave it (for good) within `within`, soonest first."""
    soon = [(found.region, item) for found in bins for item in (found.images or [])
            if item.expires is not None and now <= item.expires <= now + within]
    return sorted(soon, key=lambda pair: pair[1].expires)


# --- enabling: a pair of rules, with approval --------------------------------------------------------

@dataclass
class EnableOrder:
    regions: list[str]
    days: int
    tag: tuple[str, str] | None = None


def parse_days(text: str | None) -> int:
    if text is None:
        return DEFAULT_DAYS
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise UsageError(f"`--days` takes a whole number of days from 1 to {MAX_DAYS}, not `{text[:20]}`.")
    return int(text)


def parse_tag(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or len(key) > 127 or len(value) > 255:
        raise UsageError("`--tag` takes KEY=VALUE, e.g. `--tag Team=web` (only images with that tag are kept).")
    return key.strip(), value.strip()


def enable_params(order: EnableOrder, account: str = "") -> dict:
    return {"regions": order.regions, "days": order.days, "tag": list(order.tag) if order.tag else None,
            "account": account}


ENABLE_DETAILS_VIEW = "recycle-bin-enable"  # renders an enable request's details (bot/render/recycle_bin.py)


def enable_details(params: dict) -> dict:
    """An enable request's details as data (its params say it all): rendered with the request's message."""
    return {"view": ENABLE_DETAILS_VIEW, "params": params}


@requires("rbin:CreateRule", "rbin:TagResource")
def create_rule(aws: Aws, region: str, resource_type: str, days: int, tag: tuple[str, str] | None,
                reference: str) -> str:
    kwargs = {"ResourceType": resource_type, "RetentionPeriod": {"RetentionPeriodValue": days,
                                                                 "RetentionPeriodUnit": "DAYS"},
              "Description": f"amibot {reference}: deregistered images and their snapshots stay {days} days"[:500],
              "Tags": [{"Key": "amibot:request", "Value": reference}]}
    if tag:
        kwargs["ResourceTags"] = [{"ResourceTagKey": tag[0], "ResourceTagValue": tag[1]}]
    return str(call(_rbin(aws, region), "create_rule", **kwargs).get("Identifier") or "?")


def _existing(aws: Aws, region: str, resource_type: str, days: int, tag: tuple[str, str] | None) -> str | None:
    """A rule this request (or an identical earlier one) already made: enabling twice makes no second pair."""
    for rule in rules_in(aws, region, resource_type):
        if rule.days == days and rule.tags == ([tag] if tag else []) and not rule.excluded:
            return rule.id
    return None


def execute_enable(ctx, request, progress) -> str:
    params = request.params
    tag = tuple(params["tag"]) if params.get("tag") else None
    aws = ctx.aws.of(params.get("account"))  # requests made before many accounts: the bot's own
    done, failed = [], []
    for region in params["regions"]:
        for resource_type, label in ((IMAGE, "images"), (SNAPSHOT, "snapshots")):
            try:
                rule_id = _existing(aws, region, resource_type, params["days"], tag)
                if rule_id is None:
                    rule_id = create_rule(aws, region, resource_type, params["days"], tag, request.id)
                    progress(f":recycle: {region}: rule `{rule_id}` keeps deregistered {label} "
                             f"{params['days']} days.")
                done.append(f"{region} {label} ({rule_id})")
            except AwsError as error:
                failed.append(f"{region} {label}: {error.message}")
    summary = f"Recycle Bin rules in place for {', '.join(done) if done else 'nothing'}"
    if failed:
        raise AmibotError(f"{summary}; but could NOT create {'; '.join(failed)}.")
    return summary + "."


def confirm_enable(params: dict) -> str:
    scope = f"images tagged {params['tag'][0]}={params['tag'][1]}" if params.get("tag") else "every image"
    return (f"Keep {scope} (and their snapshots) in the Recycle Bin for {params['days']} days after deregistration, "
            f"in {'account ' + params['account'] + ': ' if params.get('account') else ''}"
            f"{', '.join(params['regions'])}. Retention costs the snapshots' storage for that long.")



# --- restoring ---------------------------------------------------------------------------------------

@dataclass
class Restored:
    image_id: str
    region: str
    image: str = ""  # "restored", "already back", or why not
    snapshots: dict[str, str] = field(default_factory=dict)  # snapshot id -> "restored" / "already back" / error
    ok: bool = True


def locate_in_bin(aws: Aws, image_id: str, regions: list[str]) -> tuple[str, BinItem | None]:
    """The region whose bin holds the image (or where it is back already). Raises NotFound or Unsupported."""
    results = aws.each_region(lambda region: images_in_bin(aws, region, [image_id]), regions)
    errors = []
    for region, result in results.items():
        if isinstance(result, AwsError):
            errors.append(result)
        elif result:
            return region, result[0]
    if errors:
        raise errors[0]
    raise NotFound(f"{image_id} is not in the Recycle Bin of {', '.join(regions)}: it may have expired, been "
                   "restored already, or never been covered by a retention rule (`/ami recycle-bin` shows them).")


def named_in_bin(aws: Aws, name: str, regions: list[str]) -> list[Image]:
    """The images named exactly `name` in this account's Recycle Bin (ListImagesInRecycleBin has no name filter),
    as stand-ins dated by when they entered the bin, for bin-aware name resolution (`/ami restore <name>`): the
    caller picks the one with bot.services.images.only_one. A region that could not be read raises only when no
    region found one."""
    results = aws.each_region(lambda region: images_in_bin(aws, region), regions)
    found, errors = [], []
    for region, result in results.items():
        if isinstance(result, AwsError):
            errors.append(result)
            continue
        for item in result:
            if item.name == name:
                image = Image.stand_in(item.id, item.name, region)
                image.created, image.account = item.entered, aws.account.id
                found.append(image)
    if errors and not found:
        raise errors[0]
    found.sort(key=lambda image: (image.created is not None, image.created), reverse=True)
    return found


def snapshots_deleted_with(ctx, image_id: str, in_bin: list[BinItem]) -> list[str]:
    """The image's own snapshots now in the bin: those AWS described as made for it, and those amibot
    itself deleted when it deregistered the image (recorded in its steps)."""
    ids = [item.id for item in in_bin if image_id in item.description]
    deregisters = [f"request:{request_id}" for request_id, _params
                   in approvals.params_of(ctx.store, "deregister", image_id=image_id)]
    in_bin_ids = {item.id for item in in_bin}
    ids += [target for target in steps.done_targets(ctx.store, deregisters, "delete_snapshot") if target in in_bin_ids]
    return list(dict.fromkeys(ids))


@requires("ec2:RestoreSnapshotFromRecycleBin", "ec2:RestoreImageFromRecycleBin")
def restore(ctx, image_id: str, region: str, snapshot_ids: list[str], aws: Aws | None = None) -> Restored:
    """Snapshots first (so the image can launch once back), then the image, in `aws`'s account (default: the
    bot's own). Each piece already back counts."""
    client = _ec2_bin(aws or ctx.aws.home, region)
    result = Restored(image_id, region)
    for snapshot_id in snapshot_ids:
        try:
            call(client, "restore_snapshot_from_recycle_bin", resource=f"snapshot {snapshot_id}",
                 SnapshotId=snapshot_id)
            result.snapshots[snapshot_id] = "restored"
        except NotFound:
            result.snapshots[snapshot_id] = "already back (or expired)"
        except AwsError as error:
            result.snapshots[snapshot_id] = f"not restored: {error.message}"
            result.ok = False
    try:
        call(client, "restore_image_from_recycle_bin", resource=f"AMI {image_id}", ImageId=image_id)
        result.image = "restored"
    except NotFound:
        result.image = "already back (or expired)"
    except AwsError as error:
        result.image = f"not restored: {error.message}"
        result.ok = False
    return result
