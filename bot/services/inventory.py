"""The digest's inventory: everything one region holds that bears on stale images and orphaned snapshots.

Per region, a fixed number of paginated listings whatever the number of images: own images (disabled
ones too: they still cost money), own snapshots made for images, and every kind of reference through
bot.services.references — the same scan and model `/ami show` and deregistration use (instances,
templates, launch configurations, Auto Scaling groups and the template versions they pin, fleets, SSM
parameters, Image Builder recipes). A source that could hide something launching instances and could
not be read fails the region (a warning line in the digest, never "all clean"). AWS's own reference check
is asked only about the digest's stale candidates, 10 a call (``Inventory.check_with_aws``). Accounts ×
regions are scanned in parallel by the caller, in one bounded pool (``AwsAccounts.each_target``).

Snapshots are narrowed server-side: only descriptions AWS gives snapshots it makes for images
(``AMI_SNAPSHOT_DESCRIPTIONS``), so the plain backup snapshots of a busy account are neither sent
nor parsed — in the benchmark that is a third fewer snapshots to parse. And they are filtered by
owner id as well as OwnerIds=self, because some endpoints (moto) ignore OwnerIds.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import boto3

from bot.aws import data as awsdata
from bot.aws.clients import Aws, paginate, requires
from bot.core.errors import AwsError
from bot.services.images import Image, describe_own_images
from bot.services.references import References, check_with_aws, scan

# The three descriptions AWS writes on snapshots it creates for an image, and how to read the AMI id.
AMI_SNAPSHOT_DESCRIPTIONS = [
    "Created by CreateImage(*) for ami-*",  # CreateImage: "… for ami-… from vol-…"
    "Copied for DestinationAmi ami-*",  # CopyImage: "… from SourceAmi ami-… for SourceSnapshot snap-…"
    "Auto-created snapshot for AMI ami-*",  # RegisterImage/CopyImage on some paths, and moto
]
AMI_IN_DESCRIPTION = re.compile(
    r"^(?:Created by CreateImage\([^)]*\) for|Copied for DestinationAmi|Auto-created snapshot for AMI)"
    r" (ami-[0-9a-f]+)\b")

Progress = Callable[[str, str], None]  # (region, what happened)


def ami_of(description: str | None) -> str | None:
    """The AMI a snapshot was made for, read from the description AWS gave it; None for other snapshots."""
    match = AMI_IN_DESCRIPTION.match(description or "")
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    region: str
    size_gb: int | None  # None: unknown (AWS sent a size that cannot be read)
    ami_id: str | None  # the image it was made for, from its description
    started: datetime | None
    description: str = ""
    account: str = ""  # the managed account's id ("": the bot's own, no accounts configured)


@dataclass
class Inventory:
    """One region's images, AMI snapshots and references; the input of bot.services.staleness."""

    region: str
    images: list[Image]
    snapshots: list[Snapshot]
    references: References
    # AWS's own reference check for the given image ids, unioned into `references` (None: not available here)
    check_with_aws: Callable[[list[str]], None] | None = None


@requires("ec2:DescribeSnapshots")
def describe_ami_snapshots(aws: Aws, region: str, account_id: str) -> list[Snapshot]:
    """Own snapshots whose description says they were made for an image (server-side filtered)."""
    filters = [{"Name": "owner-id", "Values": [account_id]},
               {"Name": "description", "Values": AMI_SNAPSHOT_DESCRIPTIONS}]
    found = []
    account = aws.account.id  # "" without accounts configured
    for item in paginate(aws.ec2(region), "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters,
                         PaginationConfig={"PageSize": 1000}):  # AWS's maximum: bounded pages, few requests
        if item.get("OwnerId") != account_id:  # in case an endpoint ignores both OwnerIds and the filter
            continue
        snapshot_id, size, description = item.get("SnapshotId"), item.get("VolumeSize"), item.get("Description") or ""
        started = item.get("StartTime")
        if type(snapshot_id) is str and type(size) is int and type(description) is str and (
                started is None or type(started) is datetime):  # the fast path: nothing unexpected
            found.append(Snapshot(snapshot_id, region, size, ami_of(description), started, description, account))
        else:
            snapshot = snapshot_from_messy(item, region, account)
            if snapshot is not None:
                found.append(snapshot)
    return found


def snapshot_from_messy(item: dict, region: str, account: str = "") -> Snapshot | None:
    """A snapshot read field by field: a malformed field is unknown (logged); without an id it is skipped."""
    snapshot_id = awsdata.item_id(item, "SnapshotId", "snapshot", region)
    if snapshot_id is None:
        return None
    where = awsdata.label("snapshot", snapshot_id, region)
    description = awsdata.text(item, "Description", where)
    # An unknown size stays unknown (None): shown as such, left out of the totals, which say so.
    size = awsdata.integer(item, "VolumeSize", where)
    return Snapshot(snapshot_id, region, size, ami_of(description),
                    awsdata.parse_time(item.get("StartTime"), where, "StartTime"), description, account)


# Regions are scanned in parallel, but within one account their two large listings (images, snapshots) take
# turns: memory then holds one region's images and snapshots per account at a time (each region is judged and
# dropped as soon as it is in), not every region's at once, and a single-process endpoint (moto) answers faster
# one request at a time. Across accounts they run side by side (a queue of 100 account-regions behind one
# semaphore would make the wall time grow with the accounts), so memory is bounded by [aws].max_concurrency
# inventories, never by accounts × images. The small listings are not held back.
LARGE_LISTINGS = threading.BoundedSemaphore(1)  # the bot's own account's, with no accounts configured
_ACCOUNT_LISTINGS: dict[str, threading.BoundedSemaphore] = {}
_ACCOUNT_LISTINGS_LOCK = threading.Lock()


def large_listings(account_id: str) -> threading.BoundedSemaphore:
    """The turn-taking of one account's large listings."""
    if not account_id:
        return LARGE_LISTINGS
    with _ACCOUNT_LISTINGS_LOCK:
        return _ACCOUNT_LISTINGS.setdefault(account_id, threading.BoundedSemaphore(1))


def scan_region(aws: Aws, region: str, family_tag: str, progress: Progress | None = None) -> Inventory:
    """The whole inventory of one region: five listings, each paginated (one more for ASGs)."""
    report = progress or (lambda region, text: None)
    references = scan(aws, region)
    blocking = references.of("").blocking_unknown  # the region's unknown sources that could hide a launch
    if blocking:  # an image in use could look unused: the region is not checked
        source, why = next(iter(blocking.items()))
        raise AwsError(f"{source} in {region} could not be checked: {why}")
    report(region, f"{len(references.by_image):,} images referenced (instances, templates, groups, fleets, SSM, "
                   "recipes)")
    with large_listings(aws.account.id):
        images = describe_own_images(aws, region, family_tag, include_disabled=True)
        report(region, f"{len(images):,} images")
        # Own images carry the account id; asking STS is needed only when a region has none.
        account_id = images[0].owner_id if images and images[0].owner_id else aws.account_id()
        snapshots = describe_ami_snapshots(aws, region, account_id)
        report(region, f"{len(snapshots):,} image snapshots")
    return Inventory(region, images, snapshots, references,
                     lambda image_ids: check_with_aws(aws, region, references, image_ids))


class CallCounter:
    """Counts the AWS API requests a boto3 session makes, by region and operation (for the digest's
    report and the benchmark). Register it on a session before clients are made from it. With many
    accounts, `in_account(label)` gives the counter for one account's session: its regions are counted as
    "prod (111111111111), us-east-1" (bot.aws.clients.Target.label), in the same totals."""

    def __init__(self, account_label: str = "", _shared: CallCounter | None = None) -> None:
        self._lock = _shared._lock if _shared else threading.Lock()
        self.counts: Counter[tuple[str, str]] = _shared.counts if _shared else Counter()
        self.account_label = account_label

    def in_account(self, account_label: str) -> CallCounter:
        return CallCounter(account_label, self)

    def __call__(self, model, context=None, **_: object) -> None:
        region = (context or {}).get("client_region") or "?"
        where = f"{self.account_label}, {region}" if self.account_label else region
        with self._lock:
            self.counts[(where, model.name)] += 1

    def by_region(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (region, _operation), count in self.counts.items():
            totals[region] += count
        return dict(totals)

    def operations(self, region: str) -> dict[str, int]:
        return {operation: count for (where, operation), count in sorted(self.counts.items()) if where == region}


def counting_session(counter: CallCounter, session: boto3.session.Session | None = None) -> boto3.session.Session:
    session = session or boto3.session.Session()
    session.events.register("before-call", counter)
    return session
