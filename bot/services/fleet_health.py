"""The digest's fleet-health part: what is about to leave the Recycle Bin for good, drift, images that are
vulnerable and still in use, stale images with critical findings (ranked first), and families whose current
version the account's Allowed AMIs criteria would block.

Calls per region stay bounded whatever the number of images: one Recycle Bin listing, the drift listings
(own images, instances or instance image metadata), one Allowed AMIs read, and Inspector findings for at
most FINDINGS_PER_REGION images (the images instances run and each family's current version first, then the
costliest stale ones). One probe decides whether the endpoint has Inspector's image findings at all; without
them every finding is "unknown", never "none". A part that fails is a note naming it, and the rest goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from bot.aws.clients import Aws
from bot.core.accounts import HOME, Account
from bot.core.errors import AwsError
from bot.services import allowed as allowed_amis
from bot.services.drift import Drift, Reading, combine, name, read
from bot.services.findings import ImageFindings, findings_of, findings_of_many
from bot.services.images import Image
from bot.services.recycle_bin import EXPIRING_SOON, BinItem, images_in_bin

log = logging.getLogger(__name__)

FINDINGS_PER_REGION = 40


@dataclass
class VulnerableImage:
    image_id: str
    name: str
    family: str
    critical: int
    instances: int
    current: bool = False


@dataclass
class BlockedCurrent:
    family: str
    image_id: str
    name: str
    reason: str


@dataclass
class RegionHealth:
    region: str
    expiring: list[BinItem] | None = None  # None: unknown (see notes)
    in_bin: set[str] = field(default_factory=set)  # every image id in the Recycle Bin now
    held_snapshots: int = 0  # snapshots of images in the bin kept off the orphan list (a restore needs them)
    drift: Drift | None = None  # this account-region's own drift (for what is in use here)
    reading: Reading | None = None  # what the drift was computed from, for the fleet's one drift (FleetHealth.drift)
    vulnerable_in_use: list[VulnerableImage] | None = None
    critical_stale: dict[str, int] = field(default_factory=dict)  # stale image id -> critical findings
    blocked_currents: list[BlockedCurrent] | None = None
    notes: list[str] = field(default_factory=list)
    account: Account = HOME  # which managed account (HOME: no accounts configured)

    @property
    def label(self) -> str:
        """The region, or "prod (111111111111), us-east-1" in a managed account."""
        return f"{self.account.label}, {self.region}" if self.account.id else self.region


@dataclass
class FleetHealth:
    regions: list[RegionHealth] = field(default_factory=list)
    drift: Drift | None = None  # the fleet's drift: drift.combine of every region's reading (as `/ami drift`)

    def combine(self, family_tag: str, now: datetime, names: dict[str, str] | None = None) -> None:
        """The fleet's one drift from what each region read: the same function as `/ami drift` and the Home tab."""
        readings = [region.reading for region in self.regions if region.reading is not None]
        if not readings:
            self.drift = None
            return
        failures = name(readings)
        self.drift = combine(readings, family_tag, now, names=names)
        self.drift.failures.update(failures)

    @property
    def drifted(self) -> int | None:
        return self.drift.drifted if self.drift is not None else None

    @property
    def critical_stale(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for region in self.regions:
            merged.update(region.critical_stale)
        return merged


def _expiring(aws: Aws, region: str, now: datetime, health: RegionHealth) -> None:
    try:
        soon = now + EXPIRING_SOON
        in_bin = images_in_bin(aws, region)
        health.in_bin = {item.id for item in in_bin}
        health.expiring = [item for item in in_bin if item.expires is not None and now <= item.expires <= soon]
    except AwsError as error:
        health.notes.append(f"Recycle Bin: {error.message}")


def _in_use(found: Drift) -> tuple[dict[str, int], dict[str, Image]]:
    """image id -> instances running it, and the families' current images."""
    counts: dict[str, int] = {}
    currents: dict[str, Image] = {}
    for family in found.families:
        if family.current is not None:
            currents[family.current.id] = family.current
            counts[family.current.id] = counts.get(family.current.id, 0) + family.on_current
        for group in family.groups:
            counts[group.image_id] = counts.get(group.image_id, 0) + len(group.instances)
    return counts, currents


def _findings(aws: Aws, images: list[Image], health: RegionHealth) -> dict[str, ImageFindings] | None:
    """Findings for these images, or None when the endpoint has no Inspector image findings (one probe)."""
    if not images:
        return {}
    probe = findings_of(aws, images[0])
    if not probe.known:
        health.notes.append(f"vulnerabilities: unknown ({probe.error})")
        return None
    found = {probe.image_id: probe}
    found.update(findings_of_many(aws, images[1:]))
    return found


def region_health(aws: Aws, region: str, family_tag: str, now: datetime, stale: list,
                  names: dict[str, str] | None = None, images: list[Image] | None = None,
                  listed: list | None = None) -> RegionHealth:
    """`stale`: images (anything with id, name, region, family) to check findings for, costliest first;
    `images`, `listed`: the region's own images and its instances (drift.Running) when the caller's scan
    already read them (the digest's)."""
    health = RegionHealth(region, account=aws.account)
    _expiring(aws, region, now, health)
    try:
        health.reading = read(aws, region, family_tag, images, listed=listed)
        health.drift = combine([health.reading], family_tag, now, names=names)
    except AwsError as error:
        health.notes.append(f"drift: {error.message}")
    counts, currents = _in_use(health.drift) if health.drift else ({}, {})
    by_id = {image.id: image for image in [*currents.values(), *stale]}
    for family in health.drift.families if health.drift else []:
        for group in family.groups:
            if group.image_id not in by_id and group.status != "deregistered":
                by_id[group.image_id] = Image(id=group.image_id, name=group.image_name, region=region,
                                              state="available", owner_id="", created=None, public=False,
                                              family=group.family)
    in_use_ids = sorted((image_id for image_id in by_id if counts.get(image_id) or image_id in currents),
                        key=lambda image_id: -counts.get(image_id, 0))
    order = in_use_ids + [image.id for image in stale if image.id not in in_use_ids]
    findings = _findings(aws, [by_id[image_id] for image_id in order[:FINDINGS_PER_REGION]], health)
    if findings is not None:
        health.vulnerable_in_use = sorted(
            (VulnerableImage(image_id, by_id[image_id].name, by_id[image_id].family, findings[image_id].critical,
                             counts.get(image_id, 0), image_id in currents)
             for image_id in in_use_ids if image_id in findings and findings[image_id].critical),
            key=lambda item: (-item.critical * max(1, item.instances), item.name))
        health.critical_stale = {image.id: findings[image.id].critical for image in stale
                                 if image.id in findings and findings[image.id].critical}
        if len(order) > FINDINGS_PER_REGION:
            health.notes.append(f"vulnerabilities checked for the first {FINDINGS_PER_REGION} of {len(order)} "
                                "images (in use first, then the costliest stale)")
    _blocked(aws, region, now, currents, health)
    return health


def _blocked(aws: Aws, region: str, now: datetime, currents: dict[str, Image], health: RegionHealth) -> None:
    settings = allowed_amis.settings_in(aws, region)
    if settings.state is None:
        health.notes.append(f"Allowed AMIs: {settings.error}")
        return
    health.blocked_currents = []
    if settings.state == allowed_amis.DISABLED or not currents:
        return
    try:
        account_id = aws.account_id()
    except AwsError:
        account_id = None
    for image in currents.values():
        verdict = allowed_amis.verdict(settings, image, account_id, now)
        if verdict.result == allowed_amis.BLOCKED:
            health.blocked_currents.append(BlockedCurrent(image.family, image.id, image.name, verdict.reason))


def fleet_health(aws: Aws, regions: list[str], family_tag: str, now: datetime, stale: dict[str, list],
                 names: dict[str, str] | None = None) -> FleetHealth:
    """Every region's health in parallel; `stale` is region -> the stale images to check findings for, costliest
    first. A region that fails as a whole is a note, never a missing region."""
    results = aws.each_region(lambda region: region_health(aws, region, family_tag, now, stale.get(region, []),
                                                           names), regions)
    health = FleetHealth()
    for region, result in results.items():
        if isinstance(result, RegionHealth):
            health.regions.append(result)
        else:
            health.regions.append(RegionHealth(region, notes=[f"fleet health not checked: {result.message}"],
                                               account=aws.account))
    health.regions.sort(key=lambda region: region.region)
    health.combine(family_tag, now, names)
    return health
