"""Use of a shared image by *other* accounts: AWS's image usage report.

For an image shared with accounts, an organisation, an OU or everyone, nothing this account can list
shows whether the others launch it. AWS can: ``CreateImageUsageReport`` starts an asynchronous report,
``DescribeImageUsageReports`` says when it is ``available`` and ``DescribeImageUsageReportEntries`` gives,
per account, how many instances, launch templates and Image Builder recipes reference the image.

The deregistration request starts (or reuses) a report and shows "use by the N accounts it is shared
with: unknown" as a danger line until it is ready; a durable job (``WATCH_JOB``, registered in
handlers/actions/deregister.py) polls it, bounded, and the request's message then shows the accounts.
Where the endpoint has no such API (moto, older partitions) it stays unknown — never "nothing".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta

from bot.aws.clients import Aws, call, paginate, requires
from bot.core.errors import AwsError, Unsupported
from bot.services.images import Image, Shares

log = logging.getLogger(__name__)

WATCH_JOB = "deregister.usage-report"
DEFAULT_WAIT_SECONDS = 1200.0  # then the message says the report is still pending
DEFAULT_POLL_SECONDS = 30.0
REUSE_WITHIN = timedelta(hours=24)  # a ready report this recent answers at once
PENDING, AVAILABLE, ERROR, UNSUPPORTED, FAILED = "pending", "available", "error", "unsupported", "failed"
RESOURCE_TYPES = [{"ResourceType": kind} for kind in
                  ("ec2:Instance", "ec2:LaunchTemplate", "imagebuilder:ImageRecipe", "imagebuilder:ContainerRecipe")]
RESOURCE_NAMES = {"ec2:Instance": "instance", "ec2:LaunchTemplate": "launch template",
                  "imagebuilder:ImageRecipe": "image recipe", "imagebuilder:ContainerRecipe": "container recipe"}


@dataclass
class OtherAccounts:
    """What is known of the image's use by the accounts it is shared with."""

    shared_with: str  # "the 2 accounts it is shared with", "the accounts of organisation o-…"
    state: str  # pending | available | error | unsupported | failed
    region: str = ""
    image_id: str = ""
    report_id: str | None = None
    reason: str = ""
    accounts: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> resource type -> count
    timed_out: bool = False
    account: str = ""  # the account that owns the image (and the report); "": the bot's own, single-account

    @property
    def known(self) -> bool:
        return self.state == AVAILABLE

    def to_payload(self) -> dict:
        return asdict(self)

    @classmethod
    def from_payload(cls, data: dict) -> OtherAccounts:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


NAMED_AT_MOST = 5  # accounts named in the phrase; more are counted


def shared_phrase(shares: Shares, named: bool = False) -> str:
    """Who the shares reach, for the "Use by …: unknown" line. `named` (many accounts configured): each account
    is named, and said to be one amibot does not manage (the managed ones are scanned, not reported)."""
    if named:
        return _named_phrase(shares)
    parts = []
    if shares.public:
        parts.append("everyone (it is public)")
    if shares.accounts:
        parts.append(f"the {len(shares.accounts)} account{'s' if len(shares.accounts) != 1 else ''} it is shared with")
    if shares.organizations:
        parts.append(f"the accounts of {len(shares.organizations)} organisation(s)")
    if shares.organizational_units:
        parts.append(f"the accounts of {len(shares.organizational_units)} OU(s)")
    return ", ".join(parts)


def _named_phrase(shares: Shares) -> str:
    parts = []
    if shares.public:
        parts.append("everyone (it is public)")
    if shares.accounts:
        listed = ", ".join(shares.accounts[:NAMED_AT_MOST])
        more = f" and {len(shares.accounts) - NAMED_AT_MOST} more" if len(shares.accounts) > NAMED_AT_MOST else ""
        parts.append(f"account{'s' if len(shares.accounts) != 1 else ''} {listed}{more}")
    parts += [f"organisation {arn}" for arn in shares.organizations[:NAMED_AT_MOST]]
    parts += [f"OU {arn}" for arn in shares.organizational_units[:NAMED_AT_MOST]]
    return ", ".join(parts) + " (not managed by amibot)"


@requires("ec2:DescribeImageUsageReports", "ec2:CreateImageUsageReport")
def start(aws: Aws, image: Image, shares: Shares, now: datetime, named: bool = False) -> OtherAccounts:
    """A recent ready report of the image if there is one (read at once), else a pending one, else a new one.
    `aws` is the owning account's handle; `shares` the ones no managed account covers."""
    other = OtherAccounts(shared_phrase(shares, named), PENDING, image.region, image.id, account=image.account)
    ec2 = aws.ec2(image.region)
    try:
        reports = list(paginate(ec2, "describe_image_usage_reports", "ImageUsageReports", ImageIds=[image.id]))
        ready = [r for r in reports if r.get("State") == AVAILABLE and _recent(r.get("CreationTime"), now)]
        waiting = [r for r in reports if r.get("State") == PENDING]
        if ready:  # its state is known already: only its entries are left to read
            other.report_id = max(ready, key=lambda r: r["CreationTime"])["ReportId"]
            other.state = AVAILABLE
            return _with_entries(ec2, other)
        if waiting:
            other.report_id = waiting[0].get("ReportId")
            return other
        other.report_id = call(ec2, "create_image_usage_report", resource=f"AMI {image.id}", ImageId=image.id,
                               ResourceTypes=RESOURCE_TYPES).get("ReportId")
        if not other.report_id:
            other.state, other.reason = FAILED, "AWS started no report (no ReportId in its answer)"
        return other
    except Unsupported as error:
        other.state, other.reason = UNSUPPORTED, error.message
    except AwsError as error:
        other.state, other.reason = FAILED, error.message
    return other


def _recent(created, now: datetime) -> bool:
    return isinstance(created, datetime) and now - created <= REUSE_WITHIN


@requires("ec2:DescribeImageUsageReports", "ec2:DescribeImageUsageReportEntries")
def read(aws: Aws, other: OtherAccounts) -> OtherAccounts:
    """The report's state now, and its entries once it is available."""
    ec2 = aws.ec2(other.region)
    reports = list(paginate(ec2, "describe_image_usage_reports", "ImageUsageReports", ReportIds=[other.report_id]))
    state = reports[0].get("State", PENDING) if reports else ERROR
    updated = OtherAccounts(**{**other.to_payload(), "state": state})
    if state == ERROR:
        updated.reason = (reports[0].get("StateReason") if reports else None) or "AWS could not make the report"
    if state != AVAILABLE:
        return updated
    return _with_entries(ec2, updated)


def _with_entries(ec2, updated: OtherAccounts) -> OtherAccounts:
    """An available report's entries: which accounts use the image, with how many resources of each kind."""
    for entry in paginate(ec2, "describe_image_usage_report_entries", "ImageUsageReportEntries",
                          ReportIds=[updated.report_id]):
        account, kind = entry.get("AccountId"), entry.get("ResourceType", "resource")
        count = entry.get("UsageCount")
        if not isinstance(account, str) or not isinstance(count, int):
            log.warning("usage report %s: an entry without an account or count skipped: %r", updated.report_id, entry)
            continue
        if count > 0:
            kinds = updated.accounts.setdefault(account, {})
            kinds[kind] = kinds.get(kind, 0) + count
    return updated


def wait(aws: Aws, other: OtherAccounts, timeout: float, interval: float,
         sleep: Callable[[float], None] = time.sleep) -> OtherAccounts:
    """Poll until the report is available or failed, at most `timeout` seconds; then as it is."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = read(aws, other)
        except AwsError as error:
            return OtherAccounts(**{**other.to_payload(), "state": FAILED, "reason": error.message})
        if current.state != PENDING:
            return current
        if time.monotonic() >= deadline:
            current.timed_out = True
            return current
        sleep(max(0.0, min(interval, deadline - time.monotonic())))
