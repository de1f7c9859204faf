"""Safe deregistration: preflight (the blast radius), a four-eyes request, then deregister and clean
up the image's own snapshots, reporting each outcome.

Refused up front when deregistration protection is on, or when an instance or a launch template's
$Default/$Latest version (or a launch configuration) uses the image — unless --force, which the
approval message then shows as dangerous. Usage is checked again at execution time, because the
world may have changed while the request waited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot import approvals
from bot.aws import call, paginate, requires
from bot.errors import AmibotError, AwsError, NotFound, PolicyViolation, Unsupported
from bot.render import deregister as render
from bot.services.images import Image, Shares, describe_own_images, find_images, shares_of
from bot.services.references import Usage, scan
from bot.services.snapshots import delete_snapshots

KIND = "deregister"
MAX_LISTED = 10


@dataclass
class SnapshotPlan:
    id: str
    size_gb: int
    monthly_cost: float
    kept_for: list[str] = field(default_factory=list)  # other images still using it


@dataclass
class Preflight:
    image: Image
    usage: Usage
    shares: Shares | None
    snapshots: list[SnapshotPlan]
    protection: str | None  # "enabled", "disabled", or None when the endpoint cannot tell
    recycle_days: int | None  # retention of a Recycle Bin rule covering the image
    recycle_known: bool
    notes: list[str] = field(default_factory=list)

    @property
    def blocking_use(self) -> bool:
        return bool(self.usage.instances or self.usage.templates or self.usage.launch_configs)

    @property
    def deletable(self) -> list[SnapshotPlan]:
        return [snapshot for snapshot in self.snapshots if not snapshot.kept_for]

    @property
    def monthly_cost(self) -> float:
        return round(sum(snapshot.monthly_cost for snapshot in self.deletable), 2)


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


@requires("rbin:ListRules", "rbin:GetRule")
def recycle_bin_days(aws, image: Image) -> tuple[int | None, bool]:
    """(retention days of a rule covering the image or None, whether the Recycle Bin could be read).

    ListRules gives only summaries; the tags that decide coverage come from GetRule (rules are few)."""
    client = aws.client("rbin", image.region, max_attempts=1)
    try:
        summaries = list(paginate(client, "list_rules", "Rules", ResourceType="EC2_IMAGE"))
        rules = [call(client, "get_rule", Identifier=summary["Identifier"]) for summary in summaries]
    except AwsError:
        return None, False
    covering = [int(rule.get("RetentionPeriod", {}).get("RetentionPeriodValue", 0))
                for rule in rules if rule.get("Status", "available") == "available" and covers(rule, image.tags)]
    return (max(covering) if covering else None), True


def covers(rule: dict, tags: dict[str, str]) -> bool:
    """A rule without resource tags covers every image of its region, less the excluded tags."""
    def pairs(key: str) -> set[tuple[str, str]]:
        return {(t["ResourceTagKey"], t.get("ResourceTagValue", "")) for t in rule.get(key, [])}

    wanted, excluded, have = pairs("ResourceTags"), pairs("ExcludeResourceTags"), set(tags.items())
    return (not wanted or bool(wanted & have)) and not (excluded & have)


def preflight(ctx, image: Image) -> Preflight:
    aws, price = ctx.aws, ctx.policy.digest.snapshot_price_per_gb_month
    usage = scan(aws, image.region, [image.id]).of(image.id)
    notes = []
    try:
        shares = shares_of(aws, image)
    except AwsError as error:
        shares = None
        notes.append(f"could not read launch permissions: {error.message}")
    others = _snapshot_users(ctx, image)
    snapshots = [SnapshotPlan(device.snapshot_id, device.size_gb or 0, round((device.size_gb or 0) * price, 2),
                              sorted(others.get(device.snapshot_id, [])))
                 for device in image.devices if device.snapshot_id]
    protection = protection_of(aws, image)
    days, known = recycle_bin_days(aws, image)
    return Preflight(image, usage, shares, snapshots, protection, days, known, notes)


def _snapshot_users(ctx, image: Image) -> dict[str, list[str]]:
    """snapshot id → other own images in the region that reference it (one DescribeImages call)."""
    users: dict[str, list[str]] = {}
    for other in describe_own_images(ctx.aws, image.region, ctx.policy.digest.family_tag):
        if other.id == image.id:
            continue
        for snapshot_id in other.snapshot_ids:
            users.setdefault(snapshot_id, []).append(other.id)
    return users


def locate(ctx, image_id: str, region: str | None = None) -> Image:
    images = find_images(ctx.aws, image_id, ctx.policy.digest.family_tag, [region] if region else None)
    return images[0]


def request_deregistration(ctx, image_id: str, region: str | None, requester: str, channel: str,
                           force: bool = False, keep_snapshots: bool = False) -> approvals.Request:
    """Preflight and open an approval request; raise PolicyViolation with the reason when refused."""
    image = locate(ctx, image_id, region)
    check = preflight(ctx, image)
    if check.protection == "enabled":
        raise PolicyViolation(f"Deregistration protection is on for {image.id}. Lift it first with "
                              f"`/ami unprotect {image.id}` (that may need its own approval).")
    if check.blocking_use and not force:
        raise PolicyViolation(f"{image.id} is in use, so it was not put up for deregistration:\n"
                              f"{render.usage_lines(check.usage, MAX_LISTED)}\n"
                              f"Move those off it first, or ask again with `--force`.")
    params = {"image_id": image.id, "region": image.region, "name": image.name, "force": force,
              "keep_snapshots": keep_snapshots}
    return approvals.create_request(
        ctx, kind=KIND, params=params, requester=requester, channel=channel,
        title=f"Deregister {image.name or image.id} ({image.id}, {image.region})",
        details=render.preflight_blocks(check, force, keep_snapshots, ctx.clock()),
        reason="deregistering an image cannot be undone" + (
            "" if check.recycle_days is None else f" (recoverable from the Recycle Bin for {check.recycle_days} days)"),
        danger=force)


@requires("ec2:DeregisterImage")
def execute(ctx, request: approvals.Request, progress) -> str:
    params = request.params
    try:
        image = locate(ctx, params["image_id"], params["region"])
    except NotFound:
        raise AmibotError(f"{params['image_id']} no longer exists in {params['region']}; nothing was done.") from None
    check = preflight(ctx, image)
    if check.blocking_use and not params.get("force"):
        raise AmibotError(f"Nothing was done: {image.id} came into use while the request waited:\n"
                          f"{render.usage_lines(check.usage, MAX_LISTED)}")
    ec2 = ctx.aws.ec2(image.region)
    call(ec2, "deregister_image", resource=f"AMI {image.id}", ImageId=image.id)
    progress(f":wastebasket: Deregistered {image.id} in {image.region}.")
    if params.get("keep_snapshots"):
        kept = ", ".join(s.id for s in check.snapshots) or "none"
        return (f"Deregistered {image.id}; kept its snapshots as asked ({kept}), which cost "
                f"${sum(s.monthly_cost for s in check.snapshots):.2f}/month.")
    kept = [f"{s.id} (still used by {', '.join(s.kept_for)})" for s in check.snapshots if s.kept_for]
    by_id = {s.id: s for s in check.deletable}
    outcome = delete_snapshots(ec2, list(by_id), lambda snapshot_id: progress(
        f":broom: Deleted {snapshot_id} ({by_id[snapshot_id].size_gb} GiB, "
        f"${by_id[snapshot_id].monthly_cost:.2f}/month)."))
    deleted = [by_id[snapshot_id] for snapshot_id in outcome.deleted]
    kept += outcome.skipped
    failed = outcome.failed
    saved = sum(s.monthly_cost for s in deleted)
    summary = (f"Deregistered {image.id}; deleted {len(deleted)} snapshot(s) "
               f"({sum(s.size_gb for s in deleted)} GiB, ${saved:.2f}/month saved)")
    if kept:
        summary += f"; kept {', '.join(kept)}"
    if failed:
        raise AmibotError(f"{summary}; but could NOT delete {'; '.join(failed)}. Delete those by hand.")
    return summary + "."


def reconcile(ctx, request: approvals.Request) -> str | None:
    try:
        locate(ctx, request.params["image_id"], request.params["region"])
    except NotFound:
        return approvals.SUCCEEDED
    return None


def confirm_text(params: dict) -> str:
    text = f"Deregister {params['image_id']} in {params['region']}. This cannot be undone"
    if not params.get("keep_snapshots"):
        text += "; its snapshots will be deleted too"
    if params.get("force"):
        text += ". It is IN USE (--force)"
    return text + "."


approvals.register_kind(approvals.Kind(KIND, execute=execute, reconcile=reconcile, confirm_text=confirm_text))
