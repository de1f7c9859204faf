"""Allowed AMIs: the account's per-region criteria for which images may be discovered and launched.

GetAllowedImagesSettings gives the state (enabled, audit-mode, disabled) and up to ten criteria; an image is
allowed when it meets *any* criterion, and meets a criterion when it meets *every* condition in it.
amibot evaluates its own images against them so that `/ami promote` and `/ami launch` can warn before EC2
refuses (or, in audit mode, flags) a launch. A condition amibot cannot evaluate from the image alone
(watermarks, Inspector scan results) or a field AWS did not send makes the verdict "unknown", never "allowed".
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from datetime import datetime

from bot.aws.clients import Aws, call, requires
from bot.core.errors import AwsError
from bot.services.images import Image

log = logging.getLogger(__name__)

ENABLED, AUDIT, DISABLED = "enabled", "audit-mode", "disabled"
ALLOWED, BLOCKED, UNKNOWN = "allowed", "blocked", "unknown"


@dataclass
class AllowedSettings:
    region: str
    state: str | None = None  # None: could not be read (see error)
    criteria: list[dict] = field(default_factory=list)
    managed_by: str = ""
    error: str | None = None

    @property
    def enforced(self) -> bool:
        return self.state == ENABLED


@dataclass
class Verdict:
    result: str  # allowed | blocked | unknown
    reason: str = ""


@requires("ec2:GetAllowedImagesSettings")
def settings_in(aws: Aws, region: str) -> AllowedSettings:
    """One region's Allowed AMIs settings; an endpoint without the API gives state None and the reason."""
    try:
        data = call(aws.client("ec2", region, max_attempts=1), "get_allowed_images_settings")
    except AwsError as error:
        return AllowedSettings(region, error=error.message)
    criteria = [criterion for criterion in data.get("ImageCriteria") or [] if isinstance(criterion, dict)]
    return AllowedSettings(region, state=str(data.get("State") or "") or None, criteria=criteria,
                           managed_by=str(data.get("ManagedBy") or ""),
                           error=None if data.get("State") else "AWS did not say whether Allowed AMIs is on")


def settings(aws: Aws, regions: list[str]) -> list[AllowedSettings]:
    results = aws.each_region(lambda region: settings_in(aws, region), regions)
    return [result if isinstance(result, AllowedSettings) else AllowedSettings(region, error=result.message)
            for region, result in results.items()]


def _days_since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else (now - moment).total_seconds() / 86400


def meets(criterion: dict, image: Image, account_id: str | None, now: datetime) -> bool | None:
    """Whether the image meets every condition of one criterion; None when one cannot be told."""
    answers: list[bool | None] = []
    providers = criterion.get("ImageProviders")
    if providers:
        owner, alias = image.owner_id or None, image.raw.get("ImageOwnerAlias")
        if owner in providers or (alias and alias in providers):
            answers.append(True)
        elif owner is None:
            answers.append(None)
        elif "none" in providers:  # "your own account only"
            answers.append(None if account_id is None else owner == account_id)
        else:
            answers.append(False)
    names = criterion.get("ImageNames")
    if names:
        answers.append(any(fnmatch.fnmatchcase(image.name or "", pattern) for pattern in names))
    codes = criterion.get("MarketplaceProductCodes")
    if codes:
        have = {str(code.get("ProductCodeId")) for code in image.raw.get("ProductCodes") or []
                if isinstance(code, dict)}
        answers.append(bool(have & set(codes)))
    created = (criterion.get("CreationDateCondition") or {}).get("MaximumDaysSinceCreated")
    if isinstance(created, int):
        age = _days_since(image.created, now)
        answers.append(None if age is None else age <= created)
    deprecated = (criterion.get("DeprecationTimeCondition") or {}).get("MaximumDaysSinceDeprecated")
    if isinstance(deprecated, int):
        since = _days_since(image.deprecation_time, now)
        answers.append(True if since is None or since < 0 else since <= deprecated)
    if criterion.get("ImageWatermarks") or criterion.get("ScanResultCondition"):
        answers.append(None)  # needs the image's watermarks or Inspector results, which amibot does not evaluate
    if False in answers:
        return False
    return None if None in answers else True


def verdict(found: AllowedSettings, image: Image, account_id: str | None, now: datetime) -> Verdict:
    if found.state is None:
        return Verdict(UNKNOWN, f"Allowed AMIs settings unknown in {found.region}: {found.error}")
    if found.state == DISABLED:
        return Verdict(ALLOWED, "Allowed AMIs is disabled")
    if not found.criteria:
        return Verdict(BLOCKED, f"Allowed AMIs is {found.state} in {found.region} with no criteria: no image passes")
    answers = [meets(criterion, image, account_id, now) for criterion in found.criteria]
    if True in answers:
        return Verdict(ALLOWED, f"meets Allowed AMIs criterion {answers.index(True) + 1} in {found.region}")
    if None in answers:
        return Verdict(UNKNOWN, f"amibot cannot tell whether {image.id} meets the Allowed AMIs criteria in "
                                f"{found.region} (watermarks, scan results or fields it cannot check)")
    mode = "EC2 will refuse to launch it" if found.enforced else "audit mode would flag its launches"
    return Verdict(BLOCKED, f"{image.id} meets none of the {len(found.criteria)} Allowed AMIs criteria in "
                            f"{found.region}: {mode}")


def warning_for(aws: Aws, image: Image, now: datetime) -> str | None:
    """One line for `/ami promote` and `/ami launch` when the image would be blocked (or cannot be told while
    Allowed AMIs is on); None when it is allowed or Allowed AMIs is off or unreadable (said by `/ami allowed`)."""
    found = settings_in(aws, image.region)
    if found.state is None or found.state == DISABLED:
        return None
    try:
        account_id = aws.account_id()
    except AwsError:
        account_id = None
    result = verdict(found, image, account_id, now)
    if result.result == BLOCKED:
        return f":no_entry: {result.reason}."
    if result.result == UNKNOWN:
        return f":grey_question: {result.reason}."
    return None
