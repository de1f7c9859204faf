"""Launching instances from an image, within the [launch] policy or after an approval.

An image reference resolves in this order: an AMI id, an exact image name, a family (the family's
current version, bot.services.versions.current_image). The image must be launchable (available; a
deprecated one only with --force); an instance type outside [launch].allowed_instance_types or a
count above [launch].max_count is not refused but turned into an approval request, with the reasons.

Instances carry the tags Name, amibot:requested-by (the Slack user) and amibot:request (the approval
request id, or the command's launch reference recorded in the audit row), on the instances and their
volumes, so anyone looking at the account can trace who launched what and why.

With many accounts the image is found in whichever account owns it, and the instances run in that account,
or in the one `--account` names (the common case: an image baked in one account, shared with and launched in
a workload account; EC2 then needs the image shared with that account, which is checked first). Approval
requests carry both: "account" is where the instances run (its approvers apply), "image_account" the owner.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.aws.clients import Aws, call, paginate, requires
from bot.core import authority
from bot.core.config import SUBNET
from bot.core.errors import AmibotError, AwsError, NotFound, PolicyViolation, UsageError
from bot.core.ids import AMI_ID
from bot.core.text import escape, named
from bot.durable.steps import DONE, PLANNED, Resumed, Step, Steps
from bot.services import allowed as allowed_amis
from bot.services import approvals
from bot.services.images import Image, find_image, find_images, shares_of
from bot.services.versions import current_image

KIND = "launch"
WAIT_SECONDS = 300.0  # how long a launch waits for its instances to run before saying "still pending"
POLL_SECONDS = 5.0
HARD_MAX_COUNT = 100  # even with an approval: a typo of 1000 should not become a bill
MAX_NAME = 255  # EC2 tag values are at most 256 characters
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")  # t3.micro, c7gn.16xlarge, u-6tb1.metal
FAILED_STATES = {"shutting-down", "terminated", "stopping", "stopped"}
TAG_REQUESTED_BY = "amibot:requested-by"
TAG_REQUEST = "amibot:request"
FAMILY_PREFIX = "family:"  # the launch form's family options; a plain ref may also be a family


@dataclass
class LaunchOrder:
    """What someone asked to launch, before the image is resolved."""

    image_ref: str
    instance_type: str
    count: int = 1
    name: str | None = None
    subnet_id: str | None = None
    region: str | None = None
    force: bool = False
    account: str | None = None  # the account id to launch into (`--account`); None: the image's own


@dataclass
class InstanceStatus:
    id: str
    state: str
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES


@dataclass
class LaunchResult:
    image: Image
    instance_ids: list[str]
    statuses: list[InstanceStatus] = field(default_factory=list)

    @property
    def running(self) -> list[InstanceStatus]:
        return [status for status in self.statuses if status.state == "running"]

    @property
    def failed(self) -> list[InstanceStatus]:
        return [status for status in self.statuses if status.failed]

    @property
    def pending(self) -> list[InstanceStatus]:
        return [status for status in self.statuses if not status.failed and status.state != "running"]


# --- input -----------------------------------------------------------------------------------------

def parse_instance_type(text: str | None, default: str) -> str:
    value = (text or default).strip().lower()
    if not INSTANCE_TYPE.match(value) or len(value) > 40:
        raise UsageError(f"`{escape(value[:40])}` is not an instance type (e.g. t3.micro).")
    return value


def parse_count(text: str | int | None) -> int:
    if text is None or text == "":
        return 1
    value = str(text).strip()
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"`{escape(value[:20])}` is not a number of instances (a whole number from 1).")
    if int(value) > HARD_MAX_COUNT:
        raise UsageError(f"amibot launches at most {HARD_MAX_COUNT} instances at once, not {int(value):,}.")
    return int(value)


def parse_name(text: str | None) -> str | None:
    value = (text or "").strip()
    if len(value) > MAX_NAME:
        raise UsageError(f"The name is {len(value)} characters long; EC2 allows at most {MAX_NAME}.")
    return value or None


def parse_subnet(text: str | None) -> str | None:
    if text and not SUBNET.match(text):
        raise UsageError(f"`{escape(text[:40])}` is not a subnet id (e.g. subnet-0abc1234def567890).")
    return text or None


# --- resolving the image -----------------------------------------------------------------------------

def resolve_image(ctx, ref: str, region: str | None = None) -> Image:
    """An AMI id, else an exact image name, else a family's current version, in every managed account (an id in
    whichever owns it; a name in several accounts asks which). Raises NotFound."""
    family_tag = ctx.policy.digest.family_tag
    regions = [region] if region else None
    if ref.startswith(FAMILY_PREFIX):
        return family_image(ctx, ref[len(FAMILY_PREFIX):], region)
    try:  # `--account` says where to launch, not where the image is: it does not narrow the lookup
        return find_image(ctx.aws, ref, family_tag, regions, account_flag=False)
    except NotFound:
        if AMI_ID.match(ref):
            raise
        return family_image(ctx, ref, region)


def family_image(ctx, family: str, region: str | None) -> Image:
    image = current_image(ctx, family, region)
    if image is None:
        where = region or ", ".join(ctx.aws.regions)
        raise NotFound(f"No AMI id, image name or family “{escape(family)}” with an available image in {where}. "
                       "`/ami list` shows what there is.")
    return image


# --- which account ---------------------------------------------------------------------------------

def launching_account(ctx, image: Image, order: LaunchOrder):
    """The handle of the account the instances run in: `--account`, else the image's own."""
    return ctx.aws.of(order.account if order.account else image.account)


def check_shared_with(ctx, image: Image, into) -> None:
    """Launching into another account needs the image shared with it (EC2 refuses otherwise, with a less helpful
    message). Shared with an organisation or OU, or not readable: EC2 decides."""
    if into.account.id == image.account or not ctx.aws.many:
        return
    try:
        shares = shares_of(ctx.aws.of(image.account), image)
    except AwsError:
        return
    if shares.public or shares.organizations or shares.organizational_units or into.account.id in shares.accounts:
        return
    owner = ctx.aws.of(image.account).account
    raise PolicyViolation(f"{image.id} belongs to {owner.label} and is not shared with {into.account.label}, so "
                          f"instances there cannot start from it. `/ami share {image.id} {into.account.short}` "
                          "first.")


# --- policy ------------------------------------------------------------------------------------------

def check_launchable(image: Image, force: bool, now: datetime) -> None:
    """Refuse images that cannot or should not be launched; no approval changes these."""
    label = f"{image.id} ({escape(image.name)})" if image.name else image.id
    if image.state == "disabled":
        raise PolicyViolation(f"{label} is disabled and cannot be launched; `/ami enable {image.id}` first.")
    if image.state == "pending":
        raise PolicyViolation(f"{label} is still being created; launch it once it is available.")
    if image.state != "available":
        raise PolicyViolation(f"{label} is {image.state} and cannot be launched.")
    if image.deprecation_time and image.deprecation_time <= now and not force:
        since = image.deprecation_time.strftime("%Y-%m-%d")
        raise PolicyViolation(f"{label} has been deprecated since {since}. Launch it anyway with `--force`, "
                              "or launch its family's current version.")


def approval_reasons(policy, order: LaunchOrder) -> list[str]:
    """Why this launch is outside [launch] policy; empty when it is within."""
    reasons = []
    allowed = policy.launch.allowed_instance_types
    if not any(fnmatch.fnmatchcase(order.instance_type, pattern) for pattern in allowed):
        listed = ", ".join(f"`{pattern}`" for pattern in allowed) if allowed else "none"
        reasons.append(f"instance type {order.instance_type} is not in [launch].allowed_instance_types ({listed})")
    if order.count > policy.launch.max_count:
        reasons.append(f"{order.count} instances is more than [launch].max_count ({policy.launch.max_count})")
    return reasons


# --- launching ---------------------------------------------------------------------------------------

def _tags(name: str, requested_by: str, request_ref: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": name}, {"Key": TAG_REQUESTED_BY, "Value": requested_by},
            {"Key": TAG_REQUEST, "Value": request_ref}]


def launch_reference(origin: str | None) -> str:
    """The reference of a launch made without an approval request — its `amibot:request` tag and EC2's
    ClientToken — derived from what asked for it (the Slack delivery key: the command's trigger, the form's
    submission), not drawn per run: a redelivered request or a re-run job names the same launch, and AWS starts
    the instances of one ClientToken once. A launch after approval uses the request id the same way."""
    if not origin:  # a job recorded before references were derived: nothing to derive it from
        return f"launch-{uuid.uuid4().hex[:16]}"
    return "launch-" + hashlib.sha256(origin.encode("utf-8")).hexdigest()[:16]


@requires("ec2:RunInstances", "ec2:CreateTags")
def run_instances(aws: Aws, policy, image: Image, order: LaunchOrder, requested_by: str, request_ref: str) -> list[str]:
    """Start the instances (all or none: MinCount = MaxCount); return their ids.

    The request reference doubles as the ClientToken, so a retried call never launches twice.
    """
    tags = _tags(order.name or image.name or image.id, requested_by, request_ref)
    kwargs: dict[str, Any] = {
        "ImageId": image.id, "InstanceType": order.instance_type, "MinCount": order.count,
        "MaxCount": order.count, "ClientToken": request_ref[:64],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}]}
    subnet = order.subnet_id or policy.launch.subnet_id
    if subnet:
        kwargs["SubnetId"] = subnet
    if policy.launch.security_group_ids:
        kwargs["SecurityGroupIds"] = list(policy.launch.security_group_ids)
    if policy.launch.key_name:
        kwargs["KeyName"] = policy.launch.key_name
    result = call(aws.ec2(image.region), "run_instances", **kwargs)
    return [instance["InstanceId"] for instance in result.get("Instances", [])]


@requires("ec2:DescribeInstances")
def instance_statuses(aws: Aws, region: str, instance_ids: list[str]) -> list[InstanceStatus]:
    try:
        reservations = list(paginate(aws.ec2(region), "describe_instances", "Reservations",
                                     InstanceIds=instance_ids))
    except AwsError as error:
        if error.code == "InvalidInstanceID.NotFound":  # new instances take a moment to be visible
            return [InstanceStatus(instance_id, "pending") for instance_id in instance_ids]
        raise
    found = {instance["InstanceId"]: InstanceStatus(instance["InstanceId"], instance["State"]["Name"],
                                                    (instance.get("StateReason") or {}).get("Message", ""))
             for reservation in reservations for instance in reservation.get("Instances", [])}
    return [found.get(instance_id, InstanceStatus(instance_id, "pending")) for instance_id in instance_ids]


def wait_for_instances(aws: Aws, region: str, instance_ids: list[str], timeout: float | None = None,
                       poll: float | None = None, sleep: Callable[[float], None] = time.sleep,
                       monotonic: Callable[[], float] = time.monotonic) -> list[InstanceStatus]:
    """Poll until every instance is running or has failed, or the bounded wait is over."""
    timeout = WAIT_SECONDS if timeout is None else timeout
    poll = POLL_SECONDS if poll is None else poll
    deadline = monotonic() + timeout
    while True:
        statuses = instance_statuses(aws, region, instance_ids)
        if all(status.state == "running" or status.failed for status in statuses) or monotonic() >= deadline:
            return statuses
        sleep(poll)


def launch(ctx, image: Image, order: LaunchOrder, requested_by: str, request_ref: str,
           started: Callable[[list[str]], None] | None = None, steps: Steps | None = None,
           wait_data: dict[str, Any] | None = None) -> LaunchResult:
    """Run the instances, tell `started` their ids at once, then wait for them to run.

    With ``steps`` the two steps are durable (run_instances, then wait_running with the ids), so a crash while
    waiting leaves a record that recovery finishes: the wait resumed, or the message finished with the truth.
    ``wait_data`` is kept with the wait step for whoever resumes it (who asked, where to report).
    The instances run in `launching_account` (the image's own unless the order names another)."""
    into = launching_account(ctx, image, order)
    where = {"region": image.region, "account": into.account.id}
    plan = steps.plan([Step("run_instances", image.id, where),
                       Step("wait_running", image.id, {**(wait_data or {}), **where})]) if steps else []
    ids = run_instances(into, ctx.policy, image, order, requested_by, request_ref)
    if steps:
        steps.mark(plan[0], DONE, "launched", ids=ids)
        steps.mark(plan[1], PLANNED, None, ids=ids)
    if started:
        started(ids)
    result = LaunchResult(image, ids)
    try:
        result.statuses = wait_for_instances(into, image.region, ids)
    except AwsError as error:  # they were launched; say so rather than lose the ids in an error
        result.statuses = [InstanceStatus(instance_id, "unknown", error.message) for instance_id in ids]
    if steps:
        steps.mark(plan[1], DONE, "; ".join(_parts(result)))
    return result


def summary(result: LaunchResult) -> str:
    """One line: what is running, what failed and why, what is still pending."""
    return f"{result.image.id} in {result.image.region}: " + "; ".join(_parts(result))


def _parts(result: LaunchResult) -> list[str]:
    parts = []
    if result.running:
        parts.append(f"{len(result.running)} running ({', '.join(s.id for s in result.running)})")
    for status in result.failed:
        parts.append(f"{status.id} {status.state}" + (f": {status.reason}" if status.reason else ""))
    if result.pending:
        parts.append(f"{len(result.pending)} still pending ({', '.join(s.id for s in result.pending)})")
    return parts


# --- the use-case: what `/ami launch` and the launch form both do ---------------------------------------

DETAILS_VIEW = "launch"  # the view that renders a launch request's details (bot/render/launch.py launch_details)


@dataclass
class Started:
    """What starting a launch did, for the edge to say: asked for an approval (`request`, `reasons`) or launched
    (`result`, under `reference`). `where` names the account the instances run in when there are many."""

    image: Image
    where: str
    reasons: list[str] = field(default_factory=list)
    request: Any = None  # an approvals.Request
    result: LaunchResult | None = None
    reference: str = ""


def start_launch(ctx, order: LaunchOrder, user: str, channel: str | None, detail: dict[str, Any],
                 reference: str | None = None, *, warn: Callable[[str], None],
                 started: Callable[[Image, list[str], str, str], tuple[str | None, str | None]]) -> Started:
    """Resolve and check the image, authorize the user in the account the instances run in, then ask for an
    approval (outside [launch] policy) or launch now, durably. The edge is told twice: `warn(text)` when Allowed
    AMIs would block the image (mrkdwn, before anything else), and `started(image, ids, reference, where)` the
    moment the instances exist, answering where it said so ((ts, channel), kept for a resumed wait). `detail`
    (the audit row's) gets what was decided. ``reference`` (launch_reference of the request) tags the instances
    and is EC2's ClientToken."""
    image = resolve_image(ctx, order.image_ref, order.region)
    check_launchable(image, order.force, ctx.clock())
    # the account the instances run in: its operators decide ([[accounts]] operators replace the global ones)
    into = authority.authorize(ctx, launching_account(ctx, image, order).account, "/ami launch")
    check_shared_with(ctx, image, into)
    where = into.account.label if ctx.aws.many else ""  # messages name the account the instances run in
    detail.update(image=image.id, region=image.region, instance_type=order.instance_type, count=order.count)
    if ctx.aws.many:
        detail.update(account=into.account.id, image_account=image.account)
    blocked = allowed_amis.warning_for(into, image, ctx.clock())  # the criteria of the account that launches
    if blocked:  # EC2 decides; amibot says so first, so a refusal (or an audit-mode flag) is no surprise
        detail["allowed_amis"] = blocked
        warn(blocked)
    reasons = approval_reasons(ctx.policy, order)
    if reasons:
        request = approvals.create_request(
            ctx, kind=KIND, params=request_params(image, order, into.account.id), requester=user,
            channel=channel, title=f"Launch {order.count} × {order.instance_type} from {image.name or image.id}"
                                   + (f" in {where}" if where else ""),
            details=approval_details(image, order, order.subnet_id or ctx.policy.launch.subnet_id, where),
            reason="; ".join(reasons))
        detail["approval_request"] = request.id
        return Started(image, where, reasons, request=request)
    request_ref = reference or launch_reference(None)
    detail["request"] = request_ref
    steps = Steps(ctx.store, f"launch:{request_ref}")  # a crash while waiting is resumed by resume_wait

    def tell(ids: list[str]) -> None:
        detail["instances"] = ids
        ts, said_in = started(image, ids, request_ref, where)
        steps.annotate("wait_running", ts=ts, channel=said_in or channel)

    result = launch(ctx, image, order, user, request_ref, started=tell, steps=steps, wait_data={
        "user": user, "channel": channel, "order": dataclasses.asdict(order), "image_name": image.name,
        "reference": request_ref})
    detail["states"] = {status.id: status.state for status in result.statuses}
    return Started(image, where, result=result, reference=request_ref)


def approval_details(image: Image, order: LaunchOrder, subnet: str | None, where: str) -> dict[str, Any]:
    """A launch request's details as data: rendered with the request's message (bot/render/launch.py)."""
    return {"view": DETAILS_VIEW, "image": image.shown(), "order": dataclasses.asdict(order), "subnet": subnet,
            "where": where}


# --- after approval ----------------------------------------------------------------------------------

def request_params(image: Image, order: LaunchOrder, into: str = "") -> dict[str, Any]:
    """`account`: where the instances run (so that account's approvers apply); `image_account`: who owns the
    image (the same unless launched into another account). Both "" in single-account mode."""
    return {"image_id": image.id, "region": image.region, "image_name": image.name,
            "instance_type": order.instance_type, "count": order.count, "name": order.name,
            "subnet_id": order.subnet_id, "force": order.force, "account": into, "image_account": image.account}


def _order_of(params: dict[str, Any]) -> LaunchOrder:
    into = params.get("account") or ""
    return LaunchOrder(image_ref=params["image_id"], instance_type=params["instance_type"], count=params["count"],
                       name=params.get("name"), subnet_id=params.get("subnet_id"), region=params["region"],
                       force=bool(params.get("force")),
                       account=into if into != params.get("image_account", into) else None)


def _accounts_of(params: dict[str, Any]) -> tuple[str, str]:
    """(where the instances run, who owns the image); requests from before accounts carry neither ("")."""
    into = params.get("account") or ""
    return into, params.get("image_account", into) or ""


def execute(ctx, request, progress) -> str:
    """Launch an approved request: the image is checked again (it may have changed while waiting)."""
    params = request.params
    order = _order_of(params)
    _, owner = _accounts_of(params)
    image = find_images(ctx.aws, params["image_id"], ctx.policy.digest.family_tag, [params["region"]], [owner])[0]
    check_launchable(image, order.force, ctx.clock())
    check_shared_with(ctx, image, launching_account(ctx, image, order))
    result = launch(ctx, image, order, request.requester, request.id,
                    started=lambda ids: progress(f":rocket: Launched {', '.join(ids)}; waiting for them to run…"),
                    steps=Steps(ctx.store, f"request:{request.id}"))
    line = summary(result)
    if result.failed or not result.running:
        raise AmibotError(f"Not all instances are running: {line}")
    return f"Launched {line}"


@requires("ec2:DescribeInstances")
def tagged_instances(aws: Aws, region: str, request_ref: str) -> list[str]:
    reservations = paginate(aws.ec2(region), "describe_instances", "Reservations",
                            Filters=[{"Name": f"tag:{TAG_REQUEST}", "Values": [request_ref]}])
    return [instance["InstanceId"] for reservation in reservations for instance in reservation.get("Instances", [])]


def reconcile(ctx, request):
    """After a crash: the ids the run step recorded, or instances tagged with the request id (the ClientToken
    makes the launch happen once) → it ran; their states now are reported. None of either → nothing ran."""
    params = request.params
    steps = Steps(ctx.store, f"request:{request.id}")
    plan = steps.all()
    ran = [step for step in plan if step.action == "run_instances" and step.state == DONE]
    into = ctx.aws.of(_accounts_of(params)[0])
    ids = ran[0].data.get("ids", []) if ran else tagged_instances(into, params["region"], request.id)
    if not ids:
        steps.forget()
        return None
    image = stand_in_image(params["image_id"], params.get("image_name") or "", params["region"])
    result = LaunchResult(image, ids, instance_statuses(into, params["region"], ids))
    for step in plan:
        if step.open:
            steps.mark(step, DONE, "; ".join(_parts(result)) + " (checked after a restart)", ids=ids)
    resumed = Resumed(before=[f"launched {', '.join(ids)}"], after=_parts(result))
    # Recovery looks once rather than wait: instances still pending were launched as approved, and say so.
    return approvals.Reconciled(approvals.FAILED if result.failed else approvals.SUCCEEDED, resumed.sentence())


def stand_in_image(image_id: str, name: str, region: str) -> Image:
    """Enough of an Image to report on instances after a restart (the image itself may be gone by now)."""
    return Image.stand_in(image_id, name, region)


def confirm_text(params: dict[str, Any]) -> str:
    image = named(params.get("image_name"), params["image_id"])
    return (f"Launch {params['count']} × {params['instance_type']} from {image} in {params['region']}? "
            "They run (and cost) until someone terminates them.")

