"""Vulnerabilities: Amazon Inspector's findings for an image (EC2 GetImageFindings, paginated).

Counts by severity and the worst critical/high findings for `/ami show`, a count per version for
`/ami versions`, and the check that stops `/ami promote` of an image with critical findings unless --force.
An endpoint (or account) without Inspector's image scanning gives ``findings = None`` with the reason:
"unknown", never "no findings".
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.aws.clients import Aws, paginate, requires
from bot.core.errors import AwsError
from bot.services.images import Image

log = logging.getLogger(__name__)

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")
SERIOUS = ("CRITICAL", "HIGH")


@dataclass
class Finding:
    title: str
    severity: str
    score: float | None = None
    fix_available: bool | None = None


@dataclass
class ImageFindings:
    image_id: str
    region: str
    findings: list[Finding] | None = None  # None: unknown (see error)
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.findings is not None

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings or []:
            counts[finding.severity if finding.severity in counts else "UNTRIAGED"] += 1
        return counts

    @property
    def critical(self) -> int:
        return self.counts["CRITICAL"]

    def worst(self, count: int = 5) -> list[Finding]:
        """The top critical and high findings, critical first, then by score."""
        serious = [finding for finding in self.findings or [] if finding.severity in SERIOUS]
        return sorted(serious, key=lambda f: (SERIOUS.index(f.severity), -(f.score or 0.0), f.title))[:count]


def _finding(data: dict, image_id: str) -> Finding | None:
    if not isinstance(data, dict):
        log.warning("a finding of %s is not an object; skipped", image_id)
        return None
    score = data.get("Score")
    fix = data.get("FixAvailable")
    return Finding(title=str(data.get("Title") or "(untitled finding)"),
                   severity=str(data.get("SeverityLabel") or "UNTRIAGED").upper(),
                   score=float(score) if isinstance(score, int | float) else None,
                   fix_available=fix if isinstance(fix, bool) else None)


@requires("ec2:GetImageFindings")
def findings_of(aws: Aws, image: Image) -> ImageFindings:
    """Every finding of one image. Inspector reports only images it has scanned: none found is not "clean"."""
    client = aws.client("ec2", image.region, max_attempts=1)  # feature probe: do not retry an endpoint's 500
    try:
        raw = list(paginate(client, "get_image_findings", "ImageFindings", ImageId=image.id))
    except AwsError as error:
        return ImageFindings(image.id, image.region, error=error.message)
    findings = [finding for finding in (_finding(item, image.id) for item in raw) if finding]
    return ImageFindings(image.id, image.region, findings)


def findings_of_many(aws: Aws, images: list[Image], workers: int = 8) -> dict[str, ImageFindings]:
    """Findings for the images on a page (one paginated call each, in parallel; only for what is shown)."""
    if not images:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(images))) as pool:
        return {found.image_id: found for found in pool.map(lambda image: findings_of(aws, image), images)}


@dataclass
class PromotionCheck:
    findings: ImageFindings
    refuse: bool = False
    notes: list[str] = field(default_factory=list)


def promotion_check(aws: Aws, image: Image, force: bool) -> PromotionCheck:
    """Critical findings stop a promotion without --force (a family's current version is what new launches
    get); unknown findings are said, not taken for clean."""
    found = findings_of(aws, image)
    check = PromotionCheck(found)
    if not found.known:
        check.notes.append(f"Vulnerabilities: unknown ({found.error}).")
    elif found.critical and not force:
        check.refuse = True
    elif found.critical:
        check.notes.append(f":warning: Promoted with {found.critical} critical finding(s) (--force).")
    return check
