"""What can go and what it costs: stale images and orphaned snapshots, from an inventory, the policy
and the time. Pure: no AWS, no Slack, no clock of its own — everything it knows is passed in, so each
rule is tested on its own with hand-made images.

An image is stale when it is owned (the inventory holds only own images), older than
stale_after_days, not among the keep_latest newest available images of its family in its region,
not referenced by anything bot.services.references knows (an instance in any state but terminated, a
launch template's $Default/$Latest version, a launch configuration, an Auto Scaling group or fleet —
the template version it pins included —, an SSM parameter of type aws:ec2:image, an Image Builder
recipe), nor by AWS's own reference check where the inventory carries one (asked only about the
candidates), not launched within stale_after_days when AWS reports LastLaunchedTime, and not snoozed.
Disabled images are ranked out of keep_latest (nobody can launch or roll back to them) and are marked
"disabled, ready to deregister".

A snapshot is orphaned when its description names an image (see bot.services.inventory) that no
longer exists and no existing image references it.

Cost: size in GiB × price per GB-month; an image costs the sum of its snapshots. The totals count
each snapshot once and leave out snapshots that an image being kept still references, so they are
what retiring everything listed would really save. (EBS bills the blocks a snapshot stores, which is
at most its volume size: the figures are an upper bound.)
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.core.accounts import HOME, Account
from bot.services.images import Image
from bot.services.inventory import Inventory, Snapshot

log = logging.getLogger(__name__)

SKIPPED_STATES = {"pending", "transient", "deregistered"}  # not (yet / any more) an image one could retire
DISABLED = "disabled"
SNOOZE_DAYS = 30  # how long "Snooze" keeps an image out of the digest


@dataclass(frozen=True)
class Rules:
    stale_after_days: int
    keep_latest: int
    price_per_gb_month: float

    @classmethod
    def from_policy(cls, digest) -> Rules:
        return cls(digest.stale_after_days, digest.keep_latest, digest.snapshot_price_per_gb_month)

    def cost(self, size_gb: float) -> float:
        return size_gb * self.price_per_gb_month


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """What a finding keeps of an image: the digest may hold thousands, so not the whole response."""

    id: str
    name: str
    region: str
    family: str
    state: str
    created: datetime | None
    snapshot_ids: tuple[str, ...]
    account: str = ""  # the managed account's id ("": the bot's own, no accounts configured)

    @classmethod
    def of(cls, image: Image) -> ImageSummary:
        return cls(image.id, image.name, image.region, image.family, image.state, image.created,
                   tuple(image.snapshot_ids), image.account)


@dataclass(frozen=True, slots=True)
class StaleImage:
    image: ImageSummary
    age_days: int
    size_gb: int | None  # None: a snapshot's size is unknown (its cost then counts the sizes known)
    monthly_cost: float

    @property
    def disabled(self) -> bool:
        return self.image.state == DISABLED

    @property
    def note(self) -> str:
        return "disabled, ready to deregister" if self.disabled else ""


@dataclass(frozen=True, slots=True)
class OrphanSnapshot:
    snapshot: Snapshot
    age_days: int | None
    monthly_cost: float

    @property
    def account(self) -> str:
        return self.snapshot.account


@dataclass
class RegionFindings:
    region: str
    stale: list[StaleImage] = field(default_factory=list)  # costliest first
    orphans: list[OrphanSnapshot] = field(default_factory=list)  # costliest first
    saving_gb: int = 0  # what retiring all of it frees, each snapshot counted once
    monthly_cost: float = 0.0
    images_seen: int = 0
    snapshots_seen: int = 0
    kept: Counter = field(default_factory=Counter)  # why images were not stale: reason -> count
    error: str | None = None  # the region could not be scanned; nothing is reported for it
    images: list = field(default_factory=list)  # its own images, from the same scan (for drift, then dropped)
    instances: list = field(default_factory=list)  # its instances (drift.Running), from the same scan, likewise
    account: Account = HOME  # which managed account this region is of (HOME: no accounts configured)
    foreign_uses: dict[str, str] = field(default_factory=dict)  # others' images used here (see foreign_uses)
    # families whose current version is old and that no [[bakes]] entry re-bakes (bot.services.digest.Unbaked): advice
    unbaked: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """How messages name it: the region, or "prod (111111111111), us-east-1" in a managed account."""
        return where(self.account, self.region)

    @property
    def stale_gb(self) -> int:
        """GiB of the stale images whose size is known (the digest names the others: render.digest.gib_total)."""
        return sum(item.size_gb or 0 for item in self.stale)

    @property
    def orphan_gb(self) -> int:
        return sum(item.snapshot.size_gb or 0 for item in self.orphans)


@dataclass
class Findings:
    regions: list[RegionFindings]
    generated_at: datetime
    rules: Rules
    health: Any = None  # bot.services.fleet_health.FleetHealth: bin, drift, vulnerabilities, Allowed AMIs
    trend: list = field(default_factory=list)  # bot.services.dashboard.DayTotals of the past days, oldest first

    @property
    def drifted_instances(self) -> int | None:
        return self.health.drifted if self.health is not None else None

    @property
    def stale(self) -> list[StaleImage]:
        return sorted((item for region in self.regions for item in region.stale), key=_image_order)

    @property
    def orphans(self) -> list[OrphanSnapshot]:
        return sorted((item for region in self.regions for item in region.orphans), key=_orphan_order)

    @property
    def monthly_cost(self) -> float:
        return sum(region.monthly_cost for region in self.regions)

    @property
    def saving_gb(self) -> int:
        return sum(region.saving_gb for region in self.regions)

    @property
    def unbaked(self) -> list:
        """Families with an old current version and no bake (advice: they do not make the fleet unclean)."""
        return [item for region in self.regions for item in region.unbaked]

    @property
    def failures(self) -> list[RegionFindings]:
        return [region for region in self.regions if region.error]

    @property
    def clean(self) -> bool:
        return not any(region.stale or region.orphans for region in self.regions)

    @property
    def accounts(self) -> list[Account]:
        """The accounts the regions belong to, in the order scanned ([HOME] without accounts configured)."""
        return list({region.account.id: region.account for region in self.regions}.values())

    @property
    def many(self) -> bool:
        """More than one account: the digest gives totals per account and names each item's account."""
        return len(self.accounts) > 1

    def account_named(self, account_id: str) -> Account:
        return next((account for account in self.accounts if account.id == account_id), HOME)

    def by_account(self) -> list[AccountTotals]:
        """Totals per account, in the order scanned."""
        totals: dict[str, AccountTotals] = {}
        for region in self.regions:
            total = totals.setdefault(region.account.id, AccountTotals(region.account))
            total.add(region)
        return list(totals.values())


@dataclass
class AccountTotals:
    """One account's share of the digest: what could go there, what it costs, and what was not checked."""

    account: Account
    stale: int = 0
    orphans: int = 0
    stale_gb: int = 0
    orphan_gb: int = 0
    monthly_cost: float = 0.0
    images_seen: int = 0
    checked: list[str] = field(default_factory=list)  # regions
    failures: list[RegionFindings] = field(default_factory=list)

    def add(self, region: RegionFindings) -> None:
        if region.error:
            self.failures.append(region)
            return
        self.checked.append(region.region)
        self.stale += len(region.stale)
        self.orphans += len(region.orphans)
        self.stale_gb += region.stale_gb
        self.orphan_gb += region.orphan_gb
        self.monthly_cost += region.monthly_cost
        self.images_seen += region.images_seen


def where(account: Account, region: str) -> str:
    """The region, or "prod (111111111111), us-east-1" in a managed account (as bot.aws.clients.Target.label)."""
    return f"{account.label}, {region}" if account.id else region


def _image_order(item: StaleImage):
    return (-item.monthly_cost, item.image.created, item.image.id)


def _orphan_order(item: OrphanSnapshot):
    return (-item.monthly_cost, -(item.age_days or 0), item.snapshot.id)


def _days(since: datetime | None, now: datetime) -> int | None:
    return None if since is None else int((now - since) / timedelta(days=1))


def newest_of_families(images: Iterable[Image], keep_latest: int) -> set[str]:
    """Ids of the keep_latest newest *available* images of each family (disabled ones do not count)."""
    families: dict[str, list[Image]] = defaultdict(list)
    for image in images:
        if image.state == "available" and image.created is not None:
            families[image.family or image.id].append(image)
    kept: set[str] = set()
    for members in families.values():
        members.sort(key=lambda image: (image.created, image.id), reverse=True)
        kept.update(image.id for image in members[:keep_latest])
    return kept


USED_BY = [("instances", "used by an instance"), ("templates", "used by a launch template"),
           ("launch_configs", "used by a launch configuration"), ("groups", "used by an Auto Scaling group"),
           ("fleets", "used by a fleet"), ("parameters", "named by an SSM parameter"),
           ("recipes", "parent of an Image Builder recipe"), ("others", "referenced, per AWS's check")]


def used_by(usage) -> str | None:
    """What a reference entry (bot.services.references) says uses the image, as a keep reason; None: nothing."""
    if usage is not None:
        for kind, label in USED_BY:
            if getattr(usage, kind):
                return label
    return None


USED_IN_ANOTHER_ACCOUNT = "used in another managed account"


def foreign_uses(inventory: Inventory) -> dict[str, str]:
    """The images this account-region's instances, templates, groups… use but it does not own (image id → what
    uses it): with many accounts, the bake account's images run in the others."""
    own = {image.id for image in inventory.images}
    uses = {}
    for image_id, usage in inventory.references.by_image.items():
        if image_id not in own:
            label = used_by(usage)
            if label:
                uses[image_id] = label
    return uses


def keep_what_other_accounts_use(regions: list[RegionFindings], rules: Rules) -> None:
    """An image one managed account owns and another's fleet uses is not stale. Each account-region is judged on
    its own scan (so memory holds one at a time), so the uses found in the others are applied once all are in:
    such an image leaves the stale list and its cost, and is counted as kept ("used in another managed
    account"); the log names the account and what uses it."""
    uses: dict[tuple[str, str], str] = {}
    for region in regions:
        for image_id, label in region.foreign_uses.items():
            uses.setdefault((region.region, image_id), f"{label} in {region.account.label}")
    if not uses:
        return
    for region in regions:
        used = [item for item in region.stale if (region.region, item.image.id) in uses]
        if not used:
            continue
        region.stale = [item for item in region.stale if (region.region, item.image.id) not in uses]
        for item in used:
            region.kept[USED_IN_ANOTHER_ACCOUNT] += 1
            log.info("digest: %s in %s is not stale: %s", item.image.id, region.label,
                     uses[(region.region, item.image.id)])
        region.saving_gb = max(0, region.saving_gb - sum(item.size_gb or 0 for item in used))
        region.monthly_cost = rules.cost(region.saving_gb)


def keep_reason(image: Image, inventory: Inventory, rules: Rules, now: datetime, newest: set[str],
                snoozed: Collection[str]) -> str | None:
    """Why the image is not stale (a short label), or None when it is stale."""
    if image.state in SKIPPED_STATES:
        return f"state {image.state}"
    if image.created is None:
        return "creation date unknown"
    if _days(image.created, now) < rules.stale_after_days:
        return "younger than stale_after_days"
    if image.id in newest:
        return "among the keep_latest newest of its family"
    usage = inventory.references.by_image.get(image.id)
    label = used_by(usage)
    if label:
        return label
    if usage is not None and usage.blocking_unknown:  # an item naming it could not be read: it may be in use
        return "its use could not be checked"
    if image.last_launched is not None and _days(image.last_launched, now) < rules.stale_after_days:
        return "launched within stale_after_days"
    if image.id in snoozed:
        return "snoozed"
    return None


def judge(inventory: Inventory, rules: Rules, now: datetime, snoozed: Collection[str] = ()) -> RegionFindings:
    """The stale images and orphaned snapshots of one region's inventory."""
    findings = RegionFindings(inventory.region, images_seen=len(inventory.images),
                              snapshots_seen=len(inventory.snapshots))
    sizes = {snapshot.id: snapshot.size_gb for snapshot in inventory.snapshots}
    newest = newest_of_families(inventory.images, rules.keep_latest)
    kept_snapshots: set[str] = set()  # snapshots an image that stays still needs
    freed: dict[str, int] = {}  # snapshot id -> GiB, of the stale images
    reasons = [keep_reason(image, inventory, rules, now, newest, snoozed) for image in inventory.images]
    candidates = [image.id for image, reason in zip(inventory.images, reasons, strict=True) if reason is None]
    if candidates and inventory.check_with_aws is not None:
        inventory.check_with_aws(candidates)  # AWS's own check, for these only; what it finds lands in references
        reasons = [reason or keep_reason(image, inventory, rules, now, newest, snoozed)
                   for image, reason in zip(inventory.images, reasons, strict=True)]
    for image, reason in zip(inventory.images, reasons, strict=True):
        if reason:
            findings.kept[reason] += 1
            kept_snapshots.update(image.snapshot_ids)
            continue
        size = image_size(image, sizes)
        findings.stale.append(StaleImage(ImageSummary.of(image), _days(image.created, now), size,
                                         rules.cost(known_size(image, sizes))))
        for device in image.devices:
            if device.snapshot_id:
                freed[device.snapshot_id] = _size(device, sizes) or 0
    for snapshot_id in kept_snapshots:
        freed.pop(snapshot_id, None)
    findings.orphans = list(orphans_of(inventory, rules, now))
    findings.stale.sort(key=_image_order)
    findings.orphans.sort(key=_orphan_order)
    for orphan in findings.orphans:
        freed[orphan.snapshot.id] = orphan.snapshot.size_gb or 0
    findings.saving_gb = sum(freed.values())
    findings.monthly_cost = rules.cost(findings.saving_gb)
    return findings


def _size(device, snapshot_sizes: dict[str, int | None]) -> int | None:
    """One device's GiB: its snapshot's own size when listed and readable, else the mapping's volume size."""
    return snapshot_sizes.get(device.snapshot_id) or device.size_gb


def image_size(image: Image, snapshot_sizes: dict[str, int | None]) -> int | None:
    """GiB of the image's snapshots; None when one of them has no size that can be read."""
    sizes = [_size(device, snapshot_sizes) for device in image.devices if device.snapshot_id]
    return None if None in sizes else sum(sizes)


def known_size(image: Image, snapshot_sizes: dict[str, int | None]) -> int:
    """GiB of the image's snapshots whose size is known (its cost: a lower bound when one is unknown)."""
    return sum(_size(device, snapshot_sizes) or 0 for device in image.devices if device.snapshot_id)


def orphans_of(inventory: Inventory, rules: Rules, now: datetime) -> Iterable[OrphanSnapshot]:
    existing = {image.id for image in inventory.images}
    referenced = {snapshot_id for image in inventory.images for snapshot_id in image.snapshot_ids}
    for snapshot in inventory.snapshots:
        if snapshot.ami_id and snapshot.ami_id not in existing and snapshot.id not in referenced:
            yield OrphanSnapshot(snapshot, _days(snapshot.started, now), rules.cost(snapshot.size_gb or 0))


def failed_region(region: str, message: str, account: Account = HOME) -> RegionFindings:
    return RegionFindings(region, error=message, account=account)
