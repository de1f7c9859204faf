"""Sharing an image with other accounts, organisations, OUs or everyone — and taking it back.

What [sharing] allows happens at once; anything else becomes an approval request. A share also
grants createVolumePermission on the image's own snapshots to the account (so the receiver can copy
the image, not only launch it); organisations and OUs have no such form, and public images keep
their snapshots private. For encrypted images the message names the KMS keys the receiver must be
granted: amibot never changes key policies.

With many accounts, an account may be named as configured (`staging`), and everything acts in the account that
owns the image: its launch permission, its snapshots, its image block public access. `[sharing].
allow_configured_accounts = true` lets a share with any managed account go without approval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.aws.clients import Aws, call, paginate, requires
from bot.core.accounts import Account
from bot.core.accounts import find as find_account
from bot.core.errors import AwsError, PolicyViolation, Unsupported, UsageError
from bot.core.text import escape
from bot.durable.steps import DONE, FAILED, Resumed, Step, Steps
from bot.services import approvals
from bot.services.images import Image, Shares, shares_of
from bot.services.images import find_image as find_one_image

KIND = "share"
ACCOUNT, ORGANIZATION, OU, PUBLIC = "account", "organization", "organizational unit", "public"
ACCOUNT_ID = re.compile(r"^\d{12}$")
ORG_ARN = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
OU_ARN = re.compile(r"^arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$")
ORG_EXAMPLE = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
OU_EXAMPLE = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56"
BLOCKED, UNBLOCKED, UNKNOWN = "block-new-sharing", "unblocked", "unknown"


@dataclass(frozen=True)
class Target:
    """Who an image is shared with: an account, an organisation, an OU, or everyone."""

    kind: str
    value: str  # the account id or the ARN; "all" for public
    name: str = ""  # a managed account's name, when it is one

    @property
    def label(self) -> str:
        if self.kind == PUBLIC:
            return "everyone (public)"
        return f"{self.kind} {self.name} ({self.value})" if self.name else f"{self.kind} {self.value}"

    def permission(self) -> dict[str, str]:
        """The LaunchPermission entry EC2 expects."""
        key = {ACCOUNT: "UserId", ORGANIZATION: "OrganizationArn", OU: "OrganizationalUnitArn",
               PUBLIC: "Group"}[self.kind]
        return {key: self.value}

    def granted_in(self, shares: Shares) -> bool:
        if self.kind == PUBLIC:
            return shares.public
        granted = {ACCOUNT: shares.accounts, ORGANIZATION: shares.organizations, OU: shares.organizational_units}
        return self.value in granted[self.kind]


def parse_target(text: str, accounts: Iterable[Account] = ()) -> Target:
    """`123456789012`, a managed account's name (from `accounts`), `org:<organization ARN>`, `ou:<OU ARN>`
    (the prefixes are optional) or `public`. No AWS call: safe before the ack."""
    value = text.strip()
    accounts = list(accounts)
    if value.lower() in ("public", "all", "everyone"):
        return Target(PUBLIC, "all")
    named = find_account(accounts, value)
    if named is not None:
        return Target(ACCOUNT, named.id, named.name)
    if value.isdigit() or re.fullmatch(r"[\d-]+", value):
        if ACCOUNT_ID.match(value):
            return Target(ACCOUNT, value)
        raise UsageError(f"`{escape(value[:40])}` is not an AWS account id: it has 12 digits, e.g. 123456789012.")
    prefix, _, arn = value.partition(":")
    if prefix.lower() == "org" or (prefix == "arn" and ":organization/" in value):
        arn = arn if prefix.lower() == "org" else value
        if ORG_ARN.match(arn):
            return Target(ORGANIZATION, arn)
        raise UsageError(f"`{escape(arn[:80])}` is not an organization ARN; it looks like `org:{ORG_EXAMPLE}`.")
    if prefix.lower() == "ou" or (prefix == "arn" and ":ou/" in value):
        arn = arn if prefix.lower() == "ou" else value
        if OU_ARN.match(arn):
            return Target(OU, arn)
        raise UsageError(f"`{escape(arn[:80])}` is not an organizational unit ARN; it looks like `ou:{OU_EXAMPLE}`.")
    if accounts and ":" not in value:
        names = ", ".join(f"`{account.name}`" for account in accounts if account.name)
        raise UsageError(f"`{escape(value[:40])}` is not an account amibot manages"
                         + (f" (it knows {names})" if names else "")
                         + "; or give a 12-digit account id, `org:<organization ARN>`, `ou:<OU ARN>` or `public`.")
    raise UsageError(f"`{escape(value[:40])}` is not something to share with: give a 12-digit account id, "
                     f"`org:<organization ARN>`, `ou:<OU ARN>` or `public`.")


def owner(aws: Aws, image: Image) -> Aws:
    """The handle of the account that owns the image: every share step acts there."""
    return aws.of(image.account)


# --- what the image is made of ---------------------------------------------------------------------

@dataclass
class SnapshotInfo:
    id: str
    encrypted: bool
    kms_key_id: str | None


DETAILS_VIEW = "share"  # the view that renders a share request's details (bot/render/share.py share_details)


def approval_details(image: Image, target: Target, snapshots: list[SnapshotInfo], public_block: str | None) -> dict:
    """A share request's details as data: rendered with the request's message."""
    return {"view": DETAILS_VIEW, "image": image.shown(), "target": asdict(target),
            "snapshots": [asdict(snapshot) for snapshot in snapshots], "public_block": public_block}


@requires("ec2:DescribeSnapshots")
def own_snapshots(aws: Aws, image: Image) -> list[SnapshotInfo]:
    """The image's snapshots this account owns (only those can be shared), with their encryption. `aws`: the
    owning account's handle (`owner`), as for every step below."""
    if not image.snapshot_ids:
        return []
    account = aws.account_id()
    found = paginate(aws.ec2(image.region), "describe_snapshots", "Snapshots", SnapshotIds=image.snapshot_ids)
    return [SnapshotInfo(item["SnapshotId"], bool(item.get("Encrypted")), item.get("KmsKeyId"))
            for item in found if item.get("OwnerId") in (None, account)]


@requires("ec2:GetImageBlockPublicAccessState")
def block_public_access(aws: Aws, region: str) -> str:
    """'block-new-sharing', 'unblocked', or 'unknown' when the endpoint does not have the API."""
    try:
        result = call(aws.client("ec2", region, max_attempts=1), "get_image_block_public_access_state")
    except Unsupported:
        return UNKNOWN
    return result.get("ImageBlockPublicAccessState") or UNKNOWN


# --- deciding ------------------------------------------------------------------------------------

@dataclass
class ShareCheck:
    image: Image
    target: Target
    already: bool
    reason: str | None = None  # why approval is needed; None: share now
    public_block: str | None = None  # for public shares


def check(ctx, image: Image, target: Target) -> ShareCheck:
    """Decide: already shared, share now, or ask for approval (with why). Refuses what policy forbids."""
    aws = owner(ctx.aws, image)
    already = target.granted_in(shares_of(aws, image))
    if already:
        return ShareCheck(image, target, True)
    sharing = ctx.policy.sharing
    if target.kind == ACCOUNT:
        if target.value == aws.account_id():
            where = "this account" if not aws.account.id else aws.account.label
            raise UsageError(f"{target.value} is {where}: it owns the image already.")
        if target.value in sharing.allowed_accounts:
            return ShareCheck(image, target, False)
        managed = any(account.id == target.value for account in ctx.aws.accounts)
        if managed and sharing.allow_configured_accounts:
            return ShareCheck(image, target, False)
        reason = f"account {target.value} is not in [sharing].allowed_accounts"
        if managed:
            reason = (f"account {target.name or target.value} is not in [sharing].allowed_accounts (and "
                      "[sharing].allow_configured_accounts is off)")
        return ShareCheck(image, target, False, reason)
    if target.kind in (ORGANIZATION, OU):
        return ShareCheck(image, target, False, f"sharing with a whole {target.kind} always needs approval")
    if not sharing.allow_public:
        raise PolicyViolation("Making images public is turned off here ([sharing].allow_public = false).")
    state = check_public_allowed(aws, image)
    reason = "making an image public always needs approval"
    if state == UNKNOWN:
        reason += "; the account's image block public access state is unknown (this endpoint cannot tell)"
    return ShareCheck(image, target, False, reason, state)


def check_public_allowed(aws: Aws, image: Image) -> str:
    state = block_public_access(aws, image.region)
    if state == BLOCKED:
        raise PolicyViolation(f"Image block public access is on for this account in {image.region}, so AWS will "
                              f"not let {image.id} be made public. Turn it off in the EC2 console (Data protection "
                              "and security) only if you really mean to publish images.")
    return state


# --- doing -----------------------------------------------------------------------------------------

@dataclass
class ShareResult:
    image: Image
    target: Target
    snapshots: list[str] = field(default_factory=list)  # snapshot ids whose createVolumePermission changed
    kms_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@requires("ec2:ModifySnapshotAttribute")
def _snapshot_permission(ec2, snapshot_id: str, account: str, operation: str) -> None:
    """Grant or remove createVolumePermission; granting again what is granted is a no-op, so safe to resume."""
    call(ec2, "modify_snapshot_attribute", resource=f"snapshot {snapshot_id}", SnapshotId=snapshot_id,
         Attribute="createVolumePermission", OperationType=operation, UserIds=[account])


def _plan(steps: Steps | None, image: Image, snapshot_ids: list[str]) -> list[Step]:
    """With steps (an approved request): the launch permission, then each snapshot's, durable before any runs."""
    if steps is None:
        return []
    return steps.plan([Step("launch_permission", image.id, {"region": image.region}),
                       *[Step("snapshot_permission", snapshot_id) for snapshot_id in snapshot_ids]])


def _mark(steps: Steps | None, plan: list[Step], index: int, state: str, result: str) -> None:
    if steps is not None:
        steps.mark(plan[index], state, result)


@requires("ec2:ModifyImageAttribute")
def _apply(aws: Aws, image: Image, target: Target, operation: str, steps: Steps | None = None) -> ShareResult:
    """operation "add" or "remove": launch permission first, then the snapshots' volume permission. With
    ``steps``, each is recorded as it goes, so a crash between them is finished by reconcile()."""
    ec2 = aws.ec2(image.region)
    change = {"Add" if operation == "add" else "Remove": [target.permission()]}
    result = ShareResult(image, target)
    snapshots = own_snapshots(aws, image)  # first: the plan names every snapshot before anything changes
    per_snapshot = snapshots if target.kind == ACCOUNT else []
    plan = _plan(steps, image, [snapshot.id for snapshot in per_snapshot])
    try:
        call(ec2, "modify_image_attribute", resource=f"AMI {image.id}", ImageId=image.id, LaunchPermission=change)
    except AwsError as error:
        _mark(steps, plan, 0, FAILED, error.message)
        raise
    _mark(steps, plan, 0, DONE, "launch permission changed")
    result.kms_keys = sorted({s.kms_key_id for s in snapshots if s.encrypted and s.kms_key_id})
    for index, snapshot in enumerate(per_snapshot, start=1):
        try:
            _snapshot_permission(ec2, snapshot.id, target.value, operation)
        except AwsError as error:
            _mark(steps, plan, index, FAILED, error.message)
            raise
        _mark(steps, plan, index, DONE, "createVolumePermission changed")
        result.snapshots.append(snapshot.id)
    if target.kind in (ORGANIZATION, OU) and snapshots and operation == "add":
        result.notes.append(f"Snapshots cannot be shared with a whole {target.kind}, so its accounts can launch "
                            "the image but not copy it; share with single accounts for that.")
    elif target.kind == PUBLIC and snapshots and operation == "add":
        result.notes.append("The snapshots stay private: anyone can launch the image, nobody else can copy its "
                            "volumes.")
    if operation == "add" and result.kms_keys:
        result.notes.append("The image is encrypted: the receiver must be granted use of KMS key(s) "
                            f"{', '.join(result.kms_keys)} (kms:Decrypt, kms:DescribeKey, kms:CreateGrant). "
                            "amibot does not change key policies.")
    return result


def share(aws: Aws, image: Image, target: Target, steps: Steps | None = None) -> ShareResult:
    if target.kind == PUBLIC:
        check_public_allowed(aws, image)  # it may have changed while a request waited
    return _apply(aws, image, target, "add", steps)


def unshare(aws: Aws, image: Image, target: Target) -> ShareResult:
    return _apply(aws, image, target, "remove")


def summary(result: ShareResult, shared: bool) -> str:
    where = f"{result.image.id} ({result.image.region}) with {result.target.label}"
    snapshots = ", ".join(result.snapshots)
    if shared:
        return f"Shared {where}" + (f"; createVolumePermission granted on {snapshots}" if snapshots else "")
    return f"Stopped sharing {where}" + (f"; createVolumePermission removed from {snapshots}" if snapshots else "")


def find_image(ctx, image_id: str, region: str | None, account: str | None = None) -> Image:
    """The image by id or unique name (bot.services.images.find_image: several of that name raise Ambiguous), in
    `account` when known (a stored request's owner; else wherever it is)."""
    accounts = [ctx.aws.of(account).account] if account and ctx.aws.accounts else None
    return find_one_image(ctx.aws, image_id, ctx.policy.digest.family_tag, [region] if region else None,
                          accounts=accounts)


def target_of(ctx, params: dict[str, Any]) -> Target:
    """A stored request's target, named again from the managed accounts (names may have changed since)."""
    target = Target(params["target_kind"], params["target"], params.get("target_name") or "")
    if target.kind == ACCOUNT:
        known = find_account(ctx.aws.accounts, target.value)
        if known is not None:
            return Target(ACCOUNT, known.id, known.name)
    return target


# --- after approval --------------------------------------------------------------------------------

def request_params(image: Image, target: Target) -> dict[str, Any]:
    params = {"image_id": image.id, "region": image.region, "image_name": image.name, "target_kind": target.kind,
              "target": target.value, "account": image.account}  # account: the owner, for approvers and audit
    if target.name:
        params["target_name"] = target.name
    return params


def execute(ctx, request, progress) -> str:
    params = request.params
    image = find_image(ctx, params["image_id"], params["region"], params.get("account"))
    result = share(owner(ctx.aws, image), image, target_of(ctx, params), Steps(ctx.store, f"request:{request.id}"))
    for note in result.notes:
        progress(f":information_source: {note}")
    return summary(result, shared=True)


def reconcile(ctx, request):
    """After a crash: the launch permission is in AWS or it is not (then nothing was done: approve again);
    snapshot permissions the crash left undone are granted now (granting twice is harmless)."""
    params = request.params
    target = target_of(ctx, params)
    steps = Steps(ctx.store, f"request:{request.id}")
    plan = steps.all()
    try:
        image = find_image(ctx, params["image_id"], params["region"], params.get("account"))
        granted = target.granted_in(shares_of(ctx.aws.of(image.account), image))
    except AwsError:
        return None
    if not plan:  # a request executed before steps were recorded
        return approvals.SUCCEEDED if granted else None
    if not granted:
        steps.forget()
        return None
    launch_step, *snapshot_steps = plan
    if launch_step.open:
        steps.mark(launch_step, DONE, "launch permission found in AWS after a restart")
    resumed = Resumed(before=[f"shared {image.id} with {target.label}"])
    ec2 = owner(ctx.aws, image).ec2(image.region)
    for step in snapshot_steps:
        if step.state == DONE:
            resumed.before.append(f"granted createVolumePermission on {step.target}")
        elif step.open:
            try:
                _snapshot_permission(ec2, step.target, target.value, "add")
            except AwsError as error:
                steps.mark(step, FAILED, error.message)
                resumed.failed.append(f"grant createVolumePermission on {step.target}: {error.message}")
            else:
                steps.mark(step, DONE, "createVolumePermission changed after a restart")
                resumed.after.append(f"granted createVolumePermission on {step.target}")
    return approvals.Reconciled(approvals.FAILED if resumed.failed else approvals.SUCCEEDED, resumed.sentence())


def confirm_text(params: dict[str, Any], details: Any = None) -> str:
    """The Approve confirmation (plain text, within Slack's 300 characters): the image by name and id, who gets
    it, and how it is taken back — launch access can be; copies already made cannot."""
    target = Target(params["target_kind"], params["target"], params.get("target_name") or "")
    shown = details.get("image") if isinstance(details, dict) else None
    name = str((shown or {}).get("name") or "") if isinstance(shown, dict) else ""
    name = (name[:47] + "…" if len(name) > 48 else name) + " " if name else ""
    argument = {ACCOUNT: target.value, PUBLIC: "public"}.get(target.kind, target.value)
    head = f"Share {name}({params['image_id']}, {params['region']}) with {target.label}?"
    tail = "; copies they already made stay theirs."
    text = f"{head} To undo: /ami unshare {params['image_id']} {argument}{tail}"
    return text if len(text) <= 300 else f"{head} To undo: /ami unshare {params['image_id']} and the same target{tail}"

