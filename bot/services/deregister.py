"""Safe deregistration: preflight (the blast radius), a four-eyes request, then deregister and clean
up the image's own snapshots, reporting each outcome.

Refused up front when deregistration protection is on, or when anything that can launch an instance
uses the image (see bot.services.references: instances, templates reached by any path, launch
configurations, Auto Scaling groups, fleets, aws:ec2:image SSM parameters), or when a source that could
hide such a use could not be checked — unless --force, which the approval message then shows as
dangerous. Image Builder recipes and the use by other accounts are shown, as warnings, and do not
refuse. Usage is checked again at execution time, because the world may have changed while the
request waited.

The blast radius spans accounts: when the image is shared with accounts amibot manages (by id, or through the
organisation when [organization] is enabled), each of those accounts is scanned too, in the image's region and
with the same reference kinds, through one bounded pool (AwsAccounts.each_target). A use there refuses exactly as one in
the owning account; a managed account that cannot be read (its role cannot be assumed) is unknown for that
account and refuses too, unless --force. Shares no managed account covers (other accounts, OUs, everyone) are
left to AWS's image usage report (bot.services.usage_reports): unknown until it says.

This module renders nothing (services never import bot/render): the request stores the preflight as data
(``approval_details``), which bot/render/deregister.py renders with the request's message, and the caller renders
``InUse`` refusals itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.aws.clients import Aws, call, requires
from bot.core.accounts import HOME, Account
from bot.core.errors import AmibotError, AwsError, NotFound, PolicyViolation, Unsupported
from bot.core.text import named
from bot.durable.steps import DONE, FAILED, PLANNED, SKIPPED, Resumed, Step, Steps
from bot.services import approvals, recycle_bin, usage_reports
from bot.services.blast_radius import AccountUsage, split_shares, usage_across
from bot.services.images import Image, Shares, describe_own_images, find_image, shares_of
from bot.services.references import Usage, kinds_phrase
from bot.services.snapshots import delete_step, deleted_phrase
from bot.services.usage_reports import OtherAccounts

KIND = "deregister"
MAX_LISTED = 10


@dataclass
class SnapshotPlan:
    id: str
    size_gb: int
    monthly_cost: float
    kept_for: list[str] = field(default_factory=list)  # other images still using it
    bin_days: int | None = None  # days a Recycle Bin snapshot rule keeps it once deleted (None: no rule does)


@dataclass
class Preflight:
    image: Image
    usage: Usage  # in the owning account
    shares: Shares | None
    snapshots: list[SnapshotPlan]
    protection: str | None  # "enabled", "disabled", or None when the endpoint cannot tell
    recycle_days: int | None  # retention of a Recycle Bin rule covering the image
    recycle_known: bool
    notes: list[str] = field(default_factory=list)
    other_accounts: OtherAccounts | None = None  # None: not asked (not shared, or the re-check at execution)
    owner: Account = HOME  # the account that owns the image (HOME: single-account)
    elsewhere: list[AccountUsage] = field(default_factory=list)  # managed accounts it is shared with, scanned
    unmanaged: Shares | None = None  # the shares no managed account covers (None: launch permissions unknown)
    many: bool = False  # more than one managed account: messages name the accounts
    snapshot_rules_known: bool = False  # the Recycle Bin's snapshot rules (SnapshotPlan.bin_days) could be read

    @property
    def blocking_use(self) -> bool:
        """Something that can launch an instance uses the image — here or in a managed account it is shared
        with — or a source (or an account) that could hide one was not read."""
        return self.usage.blocking or bool(self.usage.blocking_unknown) or \
            any(other.blocking for other in self.elsewhere)

    @property
    def blocking_elsewhere(self) -> list[AccountUsage]:
        return [other for other in self.elsewhere if other.blocking]

    def by_account(self) -> list[AccountUsage]:
        """The owning account's use first, then each managed account's it is shared with."""
        return [AccountUsage(self.owner, self.usage)] + list(self.elsewhere)

    def summary(self, limit: int = MAX_LISTED) -> str:
        """Plain text of every use, grouped by account (for errors and logs; bot/render shows it in Slack)."""
        if not self.elsewhere and not self.many:
            return self.usage.summary(limit)
        parts = []
        for other in self.by_account():
            if other.usage is None:
                parts.append(f"{other.account.label}: unknown ({other.reason})")
            elif other.usage.in_use or other.usage.unknown:
                parts.append(f"{other.account.label}: {kinds_phrase(other.usage) or 'nothing found'}\n"
                             f"{other.usage.summary(limit)}")
        return "\n".join(parts) or "• nothing"

    def to_data(self) -> dict[str, Any]:
        """What the request's message shows of the preflight, JSON-able (accounts by id and name only: never a
        role or an external id); from_data reads it back."""
        def account(which: Account) -> dict[str, str]:
            return {"id": which.id, "name": which.name}
        image = {**self.image.shown(), "state": self.image.state,
                 "created": self.image.created.isoformat() if self.image.created else None}
        return {"image": image, "usage": self.usage.to_data(), "shares": asdict(self.shares) if self.shares else None,
                "snapshots": [asdict(snapshot) for snapshot in self.snapshots], "protection": self.protection,
                "recycle_days": self.recycle_days, "recycle_known": self.recycle_known, "notes": list(self.notes),
                "snapshot_rules_known": self.snapshot_rules_known,
                "other_accounts": self.other_accounts.to_payload() if self.other_accounts else None,
                "owner": account(self.owner), "many": self.many,
                "elsewhere": [{"account": account(other.account), "reason": other.reason,
                               "usage": other.usage.to_data() if other.usage is not None else None}
                              for other in self.elsewhere]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Preflight:
        shown = data["image"]
        image = Image.stand_in(shown["id"], shown.get("name") or "", shown["region"])
        image.state = shown.get("state") or "unknown"
        image.created = datetime.fromisoformat(shown["created"]) if shown.get("created") else None
        other = data.get("other_accounts")
        return cls(image=image, usage=Usage.from_data(data.get("usage") or {}),
                   shares=Shares(**data["shares"]) if data.get("shares") is not None else None,
                   snapshots=[SnapshotPlan(**snapshot) for snapshot in data.get("snapshots") or []],
                   protection=data.get("protection"), recycle_days=data.get("recycle_days"),
                   recycle_known=bool(data.get("recycle_known")), notes=list(data.get("notes") or []),
                   snapshot_rules_known=bool(data.get("snapshot_rules_known")),
                   other_accounts=OtherAccounts.from_payload(other) if other else None,
                   owner=Account(**data["owner"]) if data.get("owner") else HOME, many=bool(data.get("many")),
                   elsewhere=[AccountUsage(Account(**item["account"]),
                                           Usage.from_data(item["usage"]) if item.get("usage") is not None else None,
                                           item.get("reason") or "") for item in data.get("elsewhere") or []])

    @property
    def deletable(self) -> list[SnapshotPlan]:
        return [snapshot for snapshot in self.snapshots if not snapshot.kept_for]

    @property
    def monthly_cost(self) -> float:
        return round(sum(snapshot.monthly_cost for snapshot in self.deletable), 2)


RECOVERABLE, IRREVERSIBLE, UNKNOWN = "recoverable", "irreversible", "unknown"
IMAGE, SNAPSHOTS = "image", "snapshots"  # whose Recycle Bin rules decide whether it can be undone


@dataclass
class Undo:
    """Whether a deregistration can be undone, as its preflight found it — the one story every place tells (the
    request's reason, its details, the Approve confirmation, the outcome)."""

    state: str  # RECOVERABLE | IRREVERSIBLE | UNKNOWN
    image_id: str
    days: int | None = None  # the covering rule's retention (with snapshots deleted: the shorter of the two)
    since: datetime | None = None  # the bin counts from the deregistration: at the earliest, then
    snapshots_deleted: bool = False  # its snapshots are deleted with it
    cause: str = IMAGE  # what decides: the image's rules (IMAGE) or its snapshots' (SNAPSHOTS)

    @property
    def until(self) -> datetime | None:
        return self.since + timedelta(days=self.days) if self.state == RECOVERABLE and self.since else None

    @property
    def command(self) -> str:
        return f"/ami restore {self.image_id}"

    def before(self) -> str:
        """Plain words for before it is done (the confirmation: Slack shows them as typed)."""
        if self.state == RECOVERABLE:
            until = f"until at least {self.until:%Y-%m-%d}" if self.until else f"for {self.days} days"
            snapshots = " Its snapshots go to the bin too." if self.snapshots_deleted else ""
            return f"Recoverable {until} with {self.command} (Recycle Bin, {self.days} days).{snapshots}"
        if self.cause == SNAPSHOTS:
            if self.state == IRREVERSIBLE:
                return ("This cannot be undone: its snapshots are deleted for good (no Recycle Bin rule keeps "
                        "them); --keep-snapshots would keep it restorable.")
            return ("Whether it can be undone is unknown: the Recycle Bin's snapshot rules could not be read; "
                    "assume it cannot.")
        snapshots = " Its snapshots are deleted too." if self.snapshots_deleted else ""
        if self.state == IRREVERSIBLE:
            return f"This cannot be undone: no Recycle Bin rule covers it.{snapshots}"
        return f"Whether it can be undone is unknown: the Recycle Bin could not be read; assume it cannot.{snapshots}"

    def reason(self) -> str:
        """Why the request needs approval, with the same undo facts."""
        if self.state == RECOVERABLE:
            return (f"deregistering removes the image for everyone who uses it; recoverable from the Recycle Bin for "
                    f"{self.days} days" + (f" (until at least {self.until:%Y-%m-%d})" if self.until else ""))
        if self.state == IRREVERSIBLE and self.cause == SNAPSHOTS:
            return ("deregistering this image cannot be undone: a Recycle Bin rule keeps the image, but its snapshots "
                    "are deleted for good (no rule keeps them), and an image cannot be restored without them")
        if self.state == IRREVERSIBLE:
            return "deregistering an image cannot be undone: no Recycle Bin rule covers it"
        unread = "its snapshot rules" if self.cause == SNAPSHOTS else "the Recycle Bin"
        return ("deregistering removes the image for everyone who uses it; whether it can be undone is unknown "
                f"({unread} could not be read)")


def undo_of(check: Preflight, since: datetime | None, keep_snapshots: bool = False) -> Undo:
    """Whether the deregistration can be undone. An image restored from the Recycle Bin is usable only with its
    snapshots, so when they are deleted with it, the snapshots' rules decide too: both must keep them, and the
    shorter retention is the window."""
    image_id = check.image.id
    deleted = [] if keep_snapshots else check.deletable
    if not check.recycle_known:
        return Undo(UNKNOWN, image_id, snapshots_deleted=bool(deleted))
    if not check.recycle_days:
        return Undo(IRREVERSIBLE, image_id, snapshots_deleted=bool(deleted))
    if not deleted:
        return Undo(RECOVERABLE, image_id, check.recycle_days, since)
    if not check.snapshot_rules_known:
        return Undo(UNKNOWN, image_id, snapshots_deleted=True, cause=SNAPSHOTS)
    kept = [snapshot.bin_days for snapshot in deleted]
    if any(not days for days in kept):
        return Undo(IRREVERSIBLE, image_id, snapshots_deleted=True, cause=SNAPSHOTS)
    return Undo(RECOVERABLE, image_id, min([check.recycle_days, *kept]), since, snapshots_deleted=True)


def undo_in(params: dict, details: Any) -> Undo:
    """The undo facts a deregistration request stored (its preflight); unknown when it stored none."""
    image_id = str(params.get("image_id") or "")
    if not isinstance(details, dict) or not isinstance(details.get("preflight"), dict):
        return Undo(UNKNOWN, image_id)
    since = None
    try:
        since = datetime.fromisoformat(details["at"]) if details.get("at") else None
        check = Preflight.from_data(details["preflight"])
    except (KeyError, TypeError, ValueError):
        return Undo(UNKNOWN, image_id)
    return undo_of(check, since, bool(params.get("keep_snapshots")))


@requires("ec2:DescribeImageAttribute")
def protection_of(aws, image: Image) -> str | None:
    try:
        result = call(aws.ec2(image.region), "describe_image_attribute", resource=f"AMI {image.id}",
                      ImageId=image.id, Attribute="deregistrationProtection")
    except Unsupported:
        return None
    except AwsError as error:
        if error.code in ("InvalidRequest", "InvalidParameterValue"):  # endpoints that predate the attribute
            return None
        raise
    value = (result.get("DeregistrationProtection") or {}).get("Value", "disabled")
    return "disabled" if value == "disabled" else "enabled"


def recycle_bin_days(aws, image: Image) -> tuple[int | None, bool]:
    """(retention days of a rule covering the image or None, whether the Recycle Bin could be read)."""
    try:
        rules = recycle_bin.rules_in(aws, image.region, recycle_bin.IMAGE)
    except AwsError:
        return None, False
    covering = [rule.days for rule in rules if rule.status == "available" and rule.days and rule.covers(image.tags)]
    return (max(covering) if covering else None), True


@requires("ec2:DescribeSnapshots")
def snapshot_bin_days(aws, region: str, snapshot_ids: list[str]) -> tuple[dict[str, int | None], bool]:
    """(snapshot id → days a Recycle Bin snapshot rule keeps it once deleted, or None; whether that is known).
    A rule with tags (or exclusions) is judged on the snapshot's own tags, read only when such a rule exists."""
    if not snapshot_ids:
        return {}, True
    try:
        rules = [rule for rule in recycle_bin.rules_in(aws, region, recycle_bin.SNAPSHOT)
                 if rule.status == "available" and rule.days]
        tags: dict[str, dict[str, str]] = {snapshot_id: {} for snapshot_id in snapshot_ids}
        if any(rule.tags or rule.excluded for rule in rules):
            answer = call(aws.ec2(region), "describe_snapshots",
                          Filters=[{"Name": "snapshot-id", "Values": list(snapshot_ids)}])
            for item in answer.get("Snapshots") or []:
                if isinstance(item, dict) and item.get("SnapshotId") in tags:
                    tags[item["SnapshotId"]] = {str(tag.get("Key")): str(tag.get("Value") or "")
                                                for tag in item.get("Tags") or []
                                                if isinstance(tag, dict) and tag.get("Key")}
    except AwsError:
        return {snapshot_id: None for snapshot_id in snapshot_ids}, False
    kept = {}
    for snapshot_id, have in tags.items():
        days = [rule.days for rule in rules if rule.covers(have)]
        kept[snapshot_id] = max(days) if days else None
    return kept, True


def preflight(ctx, image: Image) -> Preflight:
    """The blast radius, in the owning account and in every managed account the image is shared with. Use by
    unmanaged accounts (an image usage report) is added by request_deregistration, once the request is not
    refused: a refused one starts no report in AWS."""
    owner = ctx.aws.of(image.account)
    price = ctx.policy.digest.snapshot_price_per_gb_month
    notes = []
    try:
        shares = shares_of(owner, image)
    except AwsError as error:
        shares = None
        notes.append(f"could not read launch permissions: {error.message}")
    reached, unmanaged = split_shares(ctx, owner.account, shares)
    usage, elsewhere = usage_across(ctx.aws, owner.account, reached, image)
    others = _snapshot_users(ctx, owner, image)
    snapshots = [SnapshotPlan(device.snapshot_id, device.size_gb or 0, round((device.size_gb or 0) * price, 2),
                              sorted(others.get(device.snapshot_id, [])))
                 for device in image.devices if device.snapshot_id]
    protection = protection_of(owner, image)
    days, known = recycle_bin_days(owner, image)
    rules_known = False
    if days:  # the image's rules keep it: whether its snapshots are kept too decides if it can come back
        kept, rules_known = snapshot_bin_days(owner, image.region, [snapshot.id for snapshot in snapshots
                                                                    if not snapshot.kept_for])
        for snapshot in snapshots:
            snapshot.bin_days = kept.get(snapshot.id)
    return Preflight(image, usage, shares, snapshots, protection, days, known, notes, None, owner=owner.account,
                     elsewhere=elsewhere, unmanaged=unmanaged, many=ctx.aws.many, snapshot_rules_known=rules_known)


def _snapshot_users(ctx, owner: Aws, image: Image) -> dict[str, list[str]]:
    """snapshot id → other own images in the region that reference it (one DescribeImages call)."""
    users: dict[str, list[str]] = {}
    for other in describe_own_images(owner, image.region, ctx.policy.digest.family_tag):
        if other.id == image.id:
            continue
        for snapshot_id in other.snapshot_ids:
            users.setdefault(snapshot_id, []).append(other.id)
    return users


def locate(ctx, image_id: str, region: str | None = None, account: str | None = None) -> Image:
    """The image by id or unique name (bot.services.images.find_image), in `account` when given (a request's
    "account"; "" or missing: wherever it is). A name several images share raises Ambiguous: nothing is opened."""
    accounts = [account] if account else None
    return find_image(ctx.aws, image_id, ctx.policy.digest.family_tag, [region] if region else None, accounts)


def owner_of(ctx, params: dict) -> Aws:
    """The handle of the account a stored request acts in; an account no longer managed is a clear refusal."""
    try:
        return ctx.aws.of(params.get("account") or "")
    except NotFound as error:
        raise AmibotError(f"Nothing was done: {error.message}, so {params.get('image_id')} cannot be "
                          "deregistered from here any more.") from None


class InUse(PolicyViolation):
    """Refused because the image is in use (or its use could not be checked); the caller renders `check`."""

    def __init__(self, check: Preflight):
        super().__init__(f"{check.image.id} is in use, so it was not put up for deregistration:\n"
                         f"{check.summary(MAX_LISTED)}\nMove those off it first, or ask again with `--force`.")
        self.check = check


DETAILS_VIEW = "deregister"  # renders a deregistration request's details (bot/render/deregister.py)


def approval_details(check: Preflight, force: bool, keep_snapshots: bool, at: datetime) -> dict[str, Any]:
    """A deregistration request's details as data: the preflight as of `at` (ages are said as of then)."""
    return {"view": DETAILS_VIEW, "preflight": check.to_data(), "force": force, "keep_snapshots": keep_snapshots,
            "at": at.isoformat()}


def with_other_accounts(details: dict[str, Any], other: OtherAccounts) -> dict[str, Any]:
    """The request's details with what AWS's usage report said of the other accounts (the report's job)."""
    return {**details, "preflight": {**details["preflight"], "other_accounts": other.to_payload()}}


def request_deregistration(ctx, image_id: str, region: str | None, requester: str, channel: str,
                           force: bool = False, keep_snapshots: bool = False, *, account: str | None = None,
                           authorize: Callable[[Image], object] | None = None) -> approvals.Request:
    """Preflight and open an approval request whose message shows the preflight. Raises PolicyViolation
    when protection is on, InUse when something uses the image (without --force), here or in a managed account
    it is shared with. `account` (an id or name) narrows where the image is looked for; `authorize(image)` may
    refuse (AccessDenied) once the owning account is known."""
    image = locate(ctx, image_id, region, account)
    if authorize is not None:
        authorize(image)
    check = preflight(ctx, image)
    if check.protection == "enabled":
        raise PolicyViolation(f"Deregistration protection is on for {image.id}. Lift it first with "
                              f"`/ami unprotect {image.id}` (that may need its own approval).")
    if check.blocking_use and not force:
        raise InUse(check)
    if check.unmanaged and check.unmanaged.any:  # shares no managed account covers: AWS's usage report
        check.other_accounts = usage_reports.start(ctx.aws.of(image.account), image, check.unmanaged, ctx.clock(),
                                                   named=check.many)
    params = {"image_id": image.id, "region": image.region, "name": image.name, "force": force,
              "keep_snapshots": keep_snapshots, "account": image.account}
    request = approvals.create_request(
        ctx, kind=KIND, params=params, requester=requester, channel=channel,
        title=f"Deregister {image.name or image.id} ({image.id}, {image.region})",
        details=approval_details(check, force, keep_snapshots, ctx.clock()),
        reason=undo_of(check, ctx.clock(), keep_snapshots).reason(),
        danger=force)
    _follow_usage_report(ctx, request, check.other_accounts)
    return request


def _follow_usage_report(ctx, request: approvals.Request, other: OtherAccounts | None) -> None:
    """A pending report of other accounts' use is watched by a durable job that updates the request's message."""
    if other is None or other.state != usage_reports.PENDING or not other.report_id:
        return
    wait = ctx.waits.usage_report_wait_seconds
    ctx.jobs.submit(usage_reports.WATCH_JOB, {"request_id": request.id, "other": other.to_payload(),
                                              "deadline": time.time() + wait})


def _plan(check: Preflight, image: Image, keep_snapshots: bool) -> list[Step]:
    """Deregister first, then each snapshot: those kept (asked for, or used by another image) are skipped now."""
    plan = [Step("deregister_image", image.id, {"region": image.region})]
    for snapshot in check.snapshots:
        data = {"size_gb": snapshot.size_gb, "monthly_cost": snapshot.monthly_cost}
        if keep_snapshots:
            plan.append(Step("delete_snapshot", snapshot.id, data, SKIPPED, "kept as asked"))
        elif snapshot.kept_for:
            plan.append(Step("delete_snapshot", snapshot.id, data, SKIPPED,
                             f"still used by {', '.join(snapshot.kept_for)}"))
        else:
            plan.append(Step("delete_snapshot", snapshot.id, data))
    return plan


@requires("ec2:DeregisterImage")
def execute(ctx, request: approvals.Request, progress) -> str:
    params = request.params
    owner = owner_of(ctx, params)
    try:
        image = locate(ctx, params["image_id"], params["region"], params.get("account"))
    except NotFound:
        where = f"{owner.account.label}, {params['region']}" if ctx.aws.many else params["region"]
        raise AmibotError(f"{params['image_id']} no longer exists in {where}; nothing was done.") from None
    check = preflight(ctx, image)  # the world may have changed while the request waited, in any account
    if check.blocking_use and not params.get("force"):
        used = check.usage.blocking or any(other.usage is not None and other.usage.blocking
                                           for other in check.elsewhere)
        why = "came into use while the request waited" if used else "could not be fully checked for use now"
        raise AmibotError(f"Nothing was done: {image.id} {why}:\n{check.summary(MAX_LISTED)}")
    ec2 = ctx.aws.of(image.account).ec2(image.region)
    # The plan is durable before the first AWS call: a crash from here on is resumed by reconcile().
    steps = Steps(ctx.store, f"request:{request.id}")
    deregistration, *snapshot_steps = steps.plan(_plan(check, image, bool(params.get("keep_snapshots"))))
    try:
        call(ec2, "deregister_image", resource=f"AMI {image.id}", ImageId=image.id)
    except AwsError as error:
        steps.mark(deregistration, FAILED, error.message)
        for step in snapshot_steps:
            if step.open:
                steps.mark(step, SKIPPED, "not attempted: the deregistration failed")
        raise
    steps.mark(deregistration, DONE, "deregistered")
    undo = recovery_note(check, ctx.clock(), bool(params.get("keep_snapshots")))
    progress(f":wastebasket: Deregistered {image.id} in {image.region}.{undo}")
    if params.get("keep_snapshots"):
        kept = ", ".join(s.id for s in check.snapshots) or "none"
        return (f"Deregistered {image.id}; kept its snapshots as asked ({kept}), which cost "
                f"${sum(s.monthly_cost for s in check.snapshots):.2f}/month.{undo}")
    for step in snapshot_steps:
        if step.open and delete_step(ec2, steps, step).result == "deleted":
            progress(f":broom: Deleted {step.target} ({step.data['size_gb']} GiB, "
                     f"${step.data['monthly_cost']:.2f}/month).")
    return _summary(image.id, snapshot_steps, undo)


def recovery_note(check: Preflight, now: datetime, keep_snapshots: bool = False) -> str:
    """What the outcome says about undoing it: until when the Recycle Bin keeps the image, or that it cannot."""
    undo = undo_of(check, now, keep_snapshots)
    if undo.state == UNKNOWN:
        unread = "its snapshot rules" if undo.cause == SNAPSHOTS else "the Recycle Bin"
        return f" Whether it can be restored is unknown: {unread} could not be read."
    if undo.state == RECOVERABLE:
        return f" Recoverable until {undo.until:%Y-%m-%d %H:%M} UTC with `{undo.command}`."
    if undo.cause == SNAPSHOTS:
        return " This was irreversible: its snapshots were deleted for good (no Recycle Bin rule keeps them)."
    return " This was irreversible: no Recycle Bin rule covered it."


def _summary(image_id: str, snapshot_steps: list[Step], undo: str = "") -> str:
    deleted = [step for step in snapshot_steps if step.state == DONE and step.result == "deleted"]
    kept = [f"{step.target} ({step.result})" for step in snapshot_steps
            if step.state == SKIPPED or (step.state == DONE and step.result != "deleted")]
    failed = [f"{step.target}: {step.result}" for step in snapshot_steps if step.state in (FAILED, PLANNED)]
    saved = sum(step.data.get("monthly_cost", 0) for step in deleted)
    summary = (f"Deregistered {image_id}; deleted {len(deleted)} snapshot(s) "
               f"({sum(step.data.get('size_gb', 0) for step in deleted)} GiB, ${saved:.2f}/month saved)")
    if kept:
        summary += f"; kept {', '.join(kept)}"
    if failed:
        raise AmibotError(f"{summary}; but could NOT delete {'; '.join(failed)}. Delete those by hand.{undo}")
    return summary + "." + undo


def reconcile(ctx, request: approvals.Request):
    """After a crash mid-execution: look each recorded step up in AWS and finish the snapshot deletions.

    No plan and the image still there → nothing was done (None: the request is reopened for approval).
    The image gone → the deregistration is done; every planned snapshot is deleted now (safe to repeat)."""
    params = request.params
    try:
        owner = owner_of(ctx, params)
    except AmibotError as error:  # the account is no longer managed: nothing can be checked or finished here
        return approvals.Reconciled(approvals.FAILED, error.message)
    steps = Steps(ctx.store, f"request:{request.id}")
    plan = steps.all()
    try:
        locate(ctx, params["image_id"], params["region"], params.get("account"))
        image_gone = False
    except NotFound:
        image_gone = True
    if not plan or plan[0].action != "deregister_image":
        if not image_gone:
            return None
        return approvals.Reconciled(approvals.SUCCEEDED, (
            f"{params['image_id']} is deregistered (checked against AWS); this request kept no record of its "
            "snapshot steps; `/ami digest` lists any snapshots it left orphaned."))
    deregistration, *snapshot_steps = plan
    if deregistration.open:
        if not image_gone:  # the crash came before DeregisterImage: nothing was done
            steps.forget()
            return None
        steps.mark(deregistration, DONE, "deregistered (checked against AWS after a restart)")
    if deregistration.state != DONE:
        return approvals.Reconciled(approvals.FAILED, f"the deregistration had failed: {deregistration.result}")
    resumed = Resumed(before=[f"deregistered {params['image_id']}"])
    ec2 = owner.ec2(params["region"])
    kept = []
    for step in snapshot_steps:
        if step.state == DONE:
            resumed.before.append(deleted_phrase(step))
        elif step.state == SKIPPED:
            kept.append(f"{step.target} ({step.result})")
        elif step.open:
            delete_step(ec2, steps, step)
            if step.state == DONE:
                resumed.after.append(deleted_phrase(step))
            elif step.state == SKIPPED:
                resumed.after.append(f"kept {step.target} ({step.result})")
            else:
                resumed.failed.append(f"delete {step.target}: {step.result}")
    outcome = resumed.sentence()
    if kept:
        outcome += f" Kept {', '.join(kept)}."
    if resumed.failed:
        return approvals.Reconciled(approvals.FAILED, outcome + " Delete those by hand.")
    return approvals.Reconciled(approvals.SUCCEEDED, outcome)


def confirm_text(params: dict, details: Any = None) -> str:
    """The Approve confirmation (plain text, within Slack's 300 characters): the image by name and id, where, and
    whether it can be undone as the preflight found it."""
    where = params["region"] + (f" of account {params['account']}" if params.get("account") else "")
    text = f"Deregister {named(params.get('name'), params['image_id'])} in {where}. {undo_in(params, details).before()}"
    if params.get("force"):
        text += " It is IN USE (--force)."
    return text
