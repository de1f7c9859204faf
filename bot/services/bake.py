"""Baking a family's next version: an EC2 Image Builder pipeline, an SSM Automation runbook (AWS-UpdateLinuxAmi…)
or CreateImage from a builder instance, as [[bakes]] configures (bot/core/config.py); then what the run made joins
the family (tags Family, Version = the next version, lineage tags), is copied to `copy_to`, and is proposed for
promotion (an approval request, or a Promote button).

Exactly once. A bake is durable steps (bot/durable/steps.py), owner ``bake:<bake id>``: post the message, start the
run, watch it, join the family, propose. The bake id and the AWS idempotency token (Image Builder ``clientToken``,
Automation ``ClientToken``) are derived from the delivery (a command's trigger, a schedule's fire time), and the
run's id is stored the moment AWS returns it, so a replay, a double click or a restart never starts a second run;
a restart resumes watching the stored run. CreateImage takes no token: the instance bake names its image from the
bake id and looks for it before making it.

This module returns data; the message is rendered by bot/render/bake.py and posted by handlers/commands/bake.py.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from bot.aws.clients import Aws, call, requires
from bot.core.config import RUNBOOK_REQUIRED, Bake, bake_of
from bot.core.errors import AmibotError, AwsError, NotFound, PolicyViolation, UsageError
from bot.core.text import escape
from bot.durable import steps as steps_table
from bot.durable.steps import DONE, PLANNED, Step, Steps
from bot.services import approvals
from bot.services.allowed import warning_for
from bot.services.copy import CopyOrder, copy_image
from bot.services.create import Instance, Labels, create_from_instance, find_instance, wait_for_image
from bot.services.drift import drift_after_change, retired_names, rollout_words
from bot.services.findings import findings_of
from bot.services.images import Image, describe_own_images
from bot.services.versions import (
    current_image,
    family_images,
    is_promoted,
    next_version,
    ordered_versions,
    promote,
)

OWNER = "bake:"
POST, START, WATCH, JOIN, PROPOSE = "post_message", "start_run", "watch_run", "join_family", "propose"
SCAN = "await_scan"  # the request's Inspector line, from "scan pending" to the counts
KIND = "bake-promote"  # the approval kind: promote a baked version
DETAILS_VIEW = "bake-promotion"
TAG_SOURCE, TAG_BAKE = "amibot:source-image", "amibot:bake"
SCHEDULER = "amibot"  # who starts a scheduled bake (and so cannot approve its promotion)

# How long a run is watched before it is reported as outliving the watch (not forgotten: /ami bakes shows it).
DEADLINE_SECONDS = {"pipeline": 4 * 3600.0, "automation": 3 * 3600.0, "instance": 3600.0}
POLL_SECONDS, MAX_POLL_SECONDS = 30.0, 300.0

PIPELINE_DONE = {"AVAILABLE"}
PIPELINE_FAILED = {"FAILED", "DELETED", "DEPRECATED", "DISABLED"}
PIPELINE_CANCELLED = {"CANCELLED"}
AUTOMATION_DONE = {"Success", "CompletedWithSuccess"}
AUTOMATION_FAILED = {"Failed", "TimedOut", "CompletedWithFailure", "Rejected"}
AUTOMATION_CANCELLED = {"Cancelled"}
IMAGE_OUTPUT_KEYS = ("createImage.ImageId", "CreateImage.ImageId")


# --- ids, tokens, the configuration ------------------------------------------------------------------

def bake_id_for(key: str) -> str:
    """The bake's id, from what identifies its delivery (a command's delivery key, a schedule's claim)."""
    return "bake-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def client_token(bake_id: str) -> str:
    """The idempotency token of the AWS start call: a UUID (Automation insists), 36 characters (Image Builder's
    limit), the same for every retry of the same bake."""
    return str(uuid.UUID(bytes=hashlib.sha256(f"amibot:{bake_id}".encode()).digest()[:16]))


def entry_example(family: str, region: str) -> str:
    """The [[bakes]] table to add for a family that has none."""
    return (f'[[bakes]]\nfamily = "{family}"\nregion = "{region}"\n'
            f'pipeline = "arn:aws:imagebuilder:{region}:123456789012:image-pipeline/{family.lower()}"\n'
            f'# or: automation = "AWS-UpdateLinuxAmi" with parameters = {{ IamInstanceProfileName = "…", '
            f'AutomationAssumeRole = "arn:aws:iam::…:role/…" }}\n# or: instance = "i-…"\n'
            f'copy_to = []\npromote = "approval"')


def configured(ctx, family: str, account: str | None = None, region: str | None = None) -> Bake:
    """The family's [[bakes]] entry (narrowed by --account / --region). NotFound says what to add."""
    entries = bake_of(ctx.policy, family)
    if account:
        entries = [b for b in entries if _account_id(ctx, b.account) == _account_id(ctx, account)]
    if region:
        entries = [b for b in entries if region_of(ctx, b) == region]
    if not entries:
        known = ", ".join(sorted({b.family for b in ctx.policy.bakes})) or "none yet"
        where = region or (ctx.aws.regions[0] if ctx.aws.regions else "us-east-1")
        raise NotFound(f"No bake is configured for family “{escape(family)}”"
                       f"{' there' if account or region else ''} (configured: {escape(known)}). Add to the policy "
                       f"file:\n```{escape(entry_example(family, where))}```")
    if len(entries) > 1:
        places = "; ".join(f"--account {b.account or 'home'} --region {region_of(ctx, b)}" for b in entries)
        raise UsageError(f"{escape(family)} is baked in several places; say which: {escape(places)}.")
    return entries[0]


def _account_id(ctx, ref: str | None) -> str:
    return ctx.aws.of(ref or None).account.id if ref else ctx.aws.home.account.id


def region_of(ctx, bake: Bake) -> str:
    return bake.region or ctx.aws.regions[0]


def console_link(mechanism: str, region: str, run_id: str | None) -> str:
    base = f"https://{region}.console.aws.amazon.com"
    if not run_id:
        return ""
    if mechanism == "pipeline":
        return f"{base}/imagebuilder/home?region={region}#/images/{quote(run_id, safe='')}"
    if mechanism == "automation":
        return f"{base}/systems-manager/automation/execution/{run_id}?region={region}"
    return f"{base}/ec2/home?region={region}#ImageDetails:imageId={run_id}"


def automation_problems(aws, policy) -> list[str]:
    """`amibot check-config --aws`: an automation bake of a family with no image to patch (no current version in
    its region) cannot run; each is named. `aws`: the managed accounts (bot.aws.clients.AwsAccounts)."""
    problems = []
    for bake in policy.bakes:
        if bake.mechanism != "automation":
            continue
        region = bake.region or aws.regions[0]
        if bake.source not in RUNBOOK_REQUIRED:  # AWS's own two are checked without AWS (bot/core/config.py)
            problems += runbook_problems(aws, bake, region)
        try:
            handle = aws.of(bake.account or None)
            images, failures = family_images(aws, bake.family, policy.digest.family_tag, [region], [handle.account])
        except AmibotError as error:
            problems.append(f"[[bakes]] {bake.family}: cannot check its current version: {error.message}")
            continue
        if failures:
            problems.append(f"[[bakes]] {bake.family}: cannot check its current version: "
                            f"{next(iter(failures.values())).message}")
        elif not any(image.state == "available" for image in images):
            problems.append(f"[[bakes]] {bake.family}: automation patches the family's current version "
                            f"(SourceAmiId), and {bake.family} has none in {region}: bake it once with a pipeline "
                            "or an instance, or promote an image of it first")
    return problems


@requires("ssm:DescribeDocument")
def _runbook_parameters(handle: Aws, bake: Bake, region: str) -> list[dict]:
    answer = call(handle.client("ssm", region), "describe_document", resource=bake.source, Name=bake.source)
    return (answer.get("Document") or {}).get("Parameters") or []


def runbook_problems(aws, bake: Bake, region: str) -> list[str]:
    """A custom runbook's required parameters (those without a default, SourceAmiId apart: the bake gives it) that
    the entry's `parameters` do not give, each named; a runbook that cannot be described "could not be checked"."""
    try:
        declared = _runbook_parameters(aws.of(bake.account or None), bake, region)
    except AmibotError as error:
        return [f"[[bakes]] {bake.family}: the runbook {bake.source}'s required parameters could not be checked: "
                f"{error.message}"]
    given = {key for key, _value in bake.parameters}
    missing = [item["Name"] for item in declared if "DefaultValue" not in item
               and item.get("Name") and item["Name"] != "SourceAmiId" and item["Name"] not in given]
    return [f"[[bakes]] {bake.family}: the runbook {bake.source} requires the parameter {name}, which `parameters` "
            "does not give" for name in missing]


# --- starting ------------------------------------------------------------------------------------------

@dataclass
class Source:
    """What the run starts from: words for the message, and the source image when there is one."""

    text: str
    image: Image | None = None
    instance: Instance | None = None


def source_of(ctx, handle: Aws, bake: Bake) -> Source:
    """What runs: the pipeline, the runbook on the family's current version (a family with none cannot use a
    runbook: said), or the builder instance (looked up)."""
    region = region_of(ctx, bake)
    if bake.mechanism == "pipeline":
        return Source(f"Image Builder pipeline {bake.pipeline_name}")
    if bake.mechanism == "automation":
        current = current_image(ctx, bake.family, region, [handle.account])
        if current is None:
            raise PolicyViolation(f"{escape(bake.family)} has no current version in {region}, and the runbook "
                                  f"{escape(bake.source)} patches one (SourceAmiId). Bake it once with a pipeline or "
                                  "an instance, or `/ami promote` an image of the family first.")
        label = current.version or current.name
        return Source(f"runbook {bake.source} on {label} ({current.id})", image=current)
    instance = find_instance(handle, bake.source, [region])
    return Source(f"builder instance {instance.id}" + (f" ({instance.name})" if instance.name else ""),
                  instance=instance)


# iam:PassRole (the pipeline's own roles are passed by Image Builder): bot/iam_policy.py, narrowed to the configured
# roles, so it is not a @requires here.
@requires("imagebuilder:StartImagePipelineExecution")
def _start_pipeline(handle: Aws, bake: Bake, region: str, token: str) -> str:
    answer = call(handle.client("imagebuilder", region), "start_image_pipeline_execution",
                  resource=bake.pipeline_name, imagePipelineArn=bake.source, clientToken=token)
    return answer["imageBuildVersionArn"]


@requires("ssm:StartAutomationExecution")  # + iam:PassRole of AutomationAssumeRole: bot/iam_policy.py
def _start_automation(handle: Aws, bake: Bake, region: str, token: str, source: Image) -> str:
    parameters = {key: list(value) if isinstance(value, tuple) else [value] for key, value in bake.parameters}
    parameters["SourceAmiId"] = [source.id]
    answer = call(handle.client("ssm", region), "start_automation_execution", resource=bake.source,
                  DocumentName=bake.source, Parameters=parameters, ClientToken=token)
    return answer["AutomationExecutionId"]


def bake_tag(record: dict) -> str:
    """The ``amibot:bake`` tag: what made the image and which bake, ``pipeline:NAME/ID``, ``runbook:NAME/ID`` or
    ``instance:i-…/ID`` (bot/services/lineage.py reads it back for /ami show and /ami lineage)."""
    mechanism = record.get("mechanism")
    if mechanism == "pipeline":
        what = f"pipeline:{record.get('pipeline') or record.get('source')}"
    elif mechanism == "automation":
        what = f"runbook:{record.get('source')}"
    elif mechanism == "instance":
        what = f"instance:{record.get('source')}"
    else:
        return record["id"]  # found elsewhere: no run of ours
    return f"{what}/{record.get('build') or record['id']}"  # build: a pipeline's own run (its build version ARN)


def image_name(family: str, version: str, bake_id: str) -> str:
    return f"{family}-{version}-{bake_id[5:11]}"[:128]


def start(ctx, handle: Aws, bake: Bake, record: dict, source: Source) -> str:
    """Start the run; returns its id (Image Builder: the image build version ARN; Automation: the execution id;
    instance: the new image's id). Safe to repeat for the same bake (the token; the instance image's name)."""
    region = record["region"]
    if bake.mechanism == "pipeline":
        return _start_pipeline(handle, bake, region, record["token"])
    if bake.mechanism == "automation":
        return _start_automation(handle, bake, region, record["token"], source.image)
    name = image_name(bake.family, record["version"], record["id"])
    made = describe_own_images(handle, region, ctx.policy.digest.family_tag, name=[name])
    if made:  # made before a restart: the same bake, not a second one
        return made[0].id
    instance = source.instance or find_instance(handle, bake.source, [region])
    labels = Labels(bake.family, record["version"], record["user"], {TAG_BAKE: bake_tag(record)})
    return create_from_instance(handle, instance, name, labels, ctx.policy.digest.family_tag, reboot=False)


def plan_steps(record: dict) -> list[Step]:
    return [Step(POST, record["id"], {}), Step(START, record["id"], dict(record)), Step(WATCH, record["id"], {}),
            Step(JOIN, record["id"], {}), Step(PROPOSE, record["id"], {}), Step(SCAN, record["id"], {})]


def new_record(ctx, bake: Bake, bake_id: str, user: str, channel: str | None, response_url: str | None,
               source: Source, handle: Aws, scheduled: bool = False) -> dict:
    """What a bake keeps about itself (the START step's data)."""
    region = region_of(ctx, bake)
    versions = [image.version for image in family_images(ctx.aws, bake.family, ctx.policy.digest.family_tag, None,
                                                         [handle.account])[0]]
    return {"id": bake_id, "family": bake.family, "mechanism": bake.mechanism, "source": bake.source,
            "pipeline": bake.pipeline_name if bake.mechanism == "pipeline" else None,
            "what": source.text,
            "source_image": source.image.id if source.image else source.instance.image_id if source.instance else None,
            "source_version": (source.image.version or source.image.name) if source.image else None,
            "account": handle.account.id, "account_label": handle.account.label if ctx.aws.many else "",
            "region": region, "copy_to": list(bake.copy_to), "promote": bake.promote, "user": user,
            "channel": channel, "response_url": response_url, "scheduled": scheduled,
            "started_at": ctx.clock().isoformat(), "token": client_token(bake_id),
            "version": next_version([v for v in versions if v], ctx.clock())}


# --- watching --------------------------------------------------------------------------------------------

@dataclass
class Status:
    """The run as AWS last reported it."""

    state: str  # "running" | "succeeded" | "failed" | "cancelled"
    status: str  # AWS's own word: BUILDING, InProgress, pending…
    steps: list[tuple[str, str]] = field(default_factory=list)  # Automation's step executions (name, state)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (region, image id)
    failure: str = ""
    failed_step: str = ""


@requires("imagebuilder:GetImage")
def _pipeline_status(handle: Aws, region: str, run_id: str) -> Status:
    image = call(handle.client("imagebuilder", region), "get_image", resource=run_id,
                 imageBuildVersionArn=run_id).get("image") or {}
    state = image.get("state") or {}
    status = state.get("status") or "PENDING"
    outputs = [(ami.get("region") or region, ami["image"]) for ami in
               (image.get("outputResources") or {}).get("amis") or [] if ami.get("image")]
    verdict = ("succeeded" if status in PIPELINE_DONE else "failed" if status in PIPELINE_FAILED
               else "cancelled" if status in PIPELINE_CANCELLED else "running")
    return Status(verdict, status, outputs=outputs, failure=state.get("reason") or "")


@requires("ssm:GetAutomationExecution")
def _automation_status(handle: Aws, region: str, run_id: str) -> Status:
    execution = call(handle.client("ssm", region), "get_automation_execution", resource=run_id,
                     AutomationExecutionId=run_id).get("AutomationExecution") or {}
    status = execution.get("AutomationExecutionStatus") or "Pending"
    steps = [(step.get("StepName", "?"), step.get("StepStatus", "?")) for step in execution.get("StepExecutions") or []]
    failed = next((step for step in execution.get("StepExecutions") or []
                   if step.get("StepStatus") in ("Failed", "TimedOut", "Cancelled")), None)
    outputs = execution.get("Outputs") or {}
    images = [image for key in IMAGE_OUTPUT_KEYS for image in outputs.get(key) or [] if image.startswith("ami-")]
    verdict = ("succeeded" if status in AUTOMATION_DONE else "failed" if status in AUTOMATION_FAILED
               else "cancelled" if status in AUTOMATION_CANCELLED else "running")
    failure = (failed or {}).get("FailureMessage") or execution.get("FailureMessage") or ""
    return Status(verdict, status, steps, [(region, image) for image in images], failure,
                  (failed or {}).get("StepName", ""))


def _instance_status(ctx, handle: Aws, region: str, run_id: str) -> Status:
    found = describe_own_images(handle, region, ctx.policy.digest.family_tag, image_id=[run_id])
    if not found:
        return Status("running", "pending")
    image = found[0]
    if image.state == "available":
        return Status("succeeded", "available", outputs=[(region, image.id)])
    if image.state == "pending":
        return Status("running", "pending")
    reason = (image.raw.get("StateReason") or {}).get("Message", "")
    return Status("failed", image.state, outputs=[], failure=reason or f"the image is {image.state}",
                  failed_step="CreateImage")


def status_of(ctx, handle: Aws, record: dict) -> Status:
    region, run_id = record["region"], record["run_id"]
    if record["mechanism"] == "pipeline":
        return _pipeline_status(handle, region, run_id)
    if record["mechanism"] == "automation":
        return _automation_status(handle, region, run_id)
    return _instance_status(ctx, handle, region, run_id)


def watch(ctx, handle: Aws, record: dict, changed: Callable[[Status, float], None],
          cancelled: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep
          ) -> Status | None:
    """Poll the run until it ends or its deadline passes (None: still running then). `changed(status, elapsed)`
    is called whenever what AWS reports changes. The poll backs off (doubling, up to MAX_POLL_SECONDS)."""
    started = datetime.fromisoformat(record["started_at"]).timestamp()
    limit = ctx.waits.bake_deadline_seconds
    deadline = started + (DEADLINE_SECONDS[record["mechanism"]] if limit is None else limit)
    interval = ctx.waits.bake_poll_seconds
    seen = None
    while True:
        status = status_of(ctx, handle, record)
        shown = (status.status, tuple(status.steps))
        if shown != seen:
            seen = shown
            changed(status, time.time() - started)
            interval = ctx.waits.bake_poll_seconds
        if status.state != "running":
            return status
        if cancelled():  # `/ami bake cancel` stopped it (an instance bake's image is simply gone)
            return Status("cancelled", "cancelled")
        if time.time() >= deadline:
            return None
        sleep(min(interval, max(0.0, deadline - time.time())))
        interval = min(interval * 2, max(MAX_POLL_SECONDS, ctx.waits.bake_poll_seconds))


@requires("imagebuilder:CancelImageCreation", "ssm:StopAutomationExecution", "ec2:DeregisterImage")
def cancel_run(handle: Aws, record: dict) -> str:
    """Stop the run in AWS; returns what was stopped, in words."""
    region, run_id = record["region"], record.get("run_id")
    if not run_id:
        return "nothing had started in AWS yet"
    if record["mechanism"] == "pipeline":
        call(handle.client("imagebuilder", region), "cancel_image_creation", resource=run_id,
             imageBuildVersionArn=run_id, clientToken=client_token(record["id"] + ":cancel"))
        return f"the Image Builder build {run_id.rsplit('/', 2)[-2] if '/' in run_id else run_id}"
    if record["mechanism"] == "automation":
        call(handle.client("ssm", region), "stop_automation_execution", resource=run_id,
             AutomationExecutionId=run_id, Type="Cancel")
        return f"the Automation execution {run_id}"
    call(handle.ec2(region), "deregister_image", resource=f"AMI {run_id}", ImageId=run_id)
    return f"the image {run_id} being made from {record['source']} (deregistered)"


# --- what a finished run makes ----------------------------------------------------------------------

@dataclass
class Joined:
    family: str
    version: str
    images: dict[str, str]  # region -> image id (the output, then its copies)
    notes: list[str] = field(default_factory=list)


@requires("ec2:CreateTags", "ec2:DescribeImages")
def join_family(ctx, handle: Aws, record: dict, outputs: list[tuple[str, str]], done: dict[str, str],
                remember: Callable[[str, str], None]) -> Joined:
    """Tag what the run made into the family (Family, Version, lineage), copy it to copy_to and wait for the copies.
    `done`: region -> image already recorded (a restart repeats nothing); `remember(region, image)` records each
    one the moment AWS returns it."""
    family_tag = ctx.policy.digest.family_tag
    version = record["version"]
    tags = {family_tag: record["family"], "Version": version, TAG_BAKE: bake_tag(record),
            "amibot:created-by": record["user"]}
    if record.get("source_image"):
        tags[TAG_SOURCE] = record["source_image"]
    tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
    images = dict(done)
    for region, image_id in outputs:
        call(handle.ec2(region), "create_tags", resource=f"AMI {image_id}", Resources=[image_id], Tags=tag_list)
        if region not in images:
            images[region] = image_id
            remember(region, image_id)
    first_region, first = outputs[0]
    found = describe_own_images(handle, first_region, family_tag, image_id=[first])
    if not found:
        raise AwsError(f"{first} (made by the bake) is not visible in {first_region}")
    source = found[0]
    notes = []
    for destination in record.get("copy_to") or []:
        if destination in images:
            continue
        order = CopyOrder(source, destination, source.name or f"{record['family']}-{version}")
        copied = copy_image(handle, order, record["user"], client_token(f"{record['id']}:{destination}"))
        call(handle.ec2(destination), "create_tags", resource=f"AMI {copied}", Resources=[copied], Tags=tag_list)
        images[destination] = copied
        remember(destination, copied)
    for destination in record.get("copy_to") or []:
        image = wait_for_image(handle, destination, images[destination], family_tag,
                               ctx.waits.create_wait_seconds, ctx.waits.create_poll_seconds)
        if image is None or image.state != "available":
            notes.append(f"the copy {images[destination]} in {destination} is "
                         f"{image.state if image else 'gone'}")
    return Joined(record["family"], version, images, notes)


# --- proposing: the promotion request ---------------------------------------------------------------

def comparison(ctx, handle: Aws, record: dict, joined: Joined) -> dict:
    """New vs current, side by side (data for bot/render/bake.py)."""
    region = record["region"]
    family_tag = ctx.policy.digest.family_tag
    images, _ = family_images(ctx.aws, record["family"], family_tag, [region], [handle.account])
    new = next((image for image in images if image.id == joined.images.get(region)), None)
    promoted = [v.image for v in ordered_versions(images) if v.current and v.image.id != (new.id if new else "")]
    current = promoted[0] if promoted else None

    def shown(image: Image | None) -> dict | None:
        if image is None:
            return None
        return {"id": image.id, "name": image.name, "version": image.version or "",
                "created": image.created.isoformat() if image.created else "", "size_gb": image.size_gb,
                "findings": findings_shown(handle, image, fresh=image is new)}

    allowed = None
    if new is not None:
        try:
            allowed = warning_for(handle, new, ctx.clock())
        except AmibotError as error:
            allowed = f"Allowed AMIs unknown: {error.message}"
    return {"allowed": allowed or "allowed (or Allowed AMIs is off)",
            "view": DETAILS_VIEW, "family": record["family"], "bake": record["id"], "what": record["what"],
            "new": shown(new) or {"id": joined.images.get(region, ""), "version": joined.version},
            "current": shown(current), "regions": sorted(joined.images), "notes": joined.notes,
            "source_image": record.get("source_image"), "now": ctx.clock().isoformat()}


def findings_shown(handle: Aws, image: Image, fresh: bool = True) -> dict:
    """Amazon Inspector's critical and high counts; "pending" while it reports nothing for a `fresh` image (just
    made: Inspector reports only what it has scanned), "none reported" for an older one (scanned clean, or never
    scanned: Inspector does not say which, so neither is claimed), "unknown" when it cannot be asked."""
    found = findings_of(handle, image)
    if not found.known:
        return {"state": "unknown", "error": found.error or ""}
    if not found.findings:
        return {"state": "pending" if fresh else "none reported"}
    counts = found.counts
    return {"state": "scanned", "critical": counts.get("CRITICAL", 0), "high": counts.get("HIGH", 0)}


def rescan(ctx, request_id: str) -> bool:
    """Look again at the new version's findings; when Inspector has reported, put them in the request's message.
    True when nothing is pending any more."""
    request = approvals.get(ctx, request_id)
    details = dict(request.details) if isinstance(request.details, dict) else {}
    new = details.get("new") or {}
    if (new.get("findings") or {}).get("state") != "pending":
        return True
    handle = ctx.aws.of(request.params.get("account") or None)
    region = request.params["region"]
    found = describe_own_images(handle, region, ctx.policy.digest.family_tag, image_id=[new["id"]])
    if not found:
        return True
    shown = findings_shown(handle, found[0])
    if shown["state"] == "pending":
        return False
    details["new"] = {**new, "findings": shown}
    approvals.update_details(ctx, request_id, details)
    return True


def propose(ctx, handle: Aws, record: dict, joined: Joined) -> str:
    """The promotion request (promote = "approval"); returns its id. The requester is who started the bake (the
    scheduler for a scheduled one), so they cannot approve it; the account's approvers can."""
    details = comparison(ctx, handle, record, joined)
    params = {"family": record["family"], "version": joined.version, "images": joined.images,
              "region": record["region"], "account": record["account"], "bake": record["id"],
              "image_id": joined.images.get(record["region"])}  # what "never asked twice" looks up
    request = approvals.create_request(
        ctx, kind=KIND, params=params, requester=record["user"], channel=record["channel"] or "",
        title=f"Promote {record['family']} {joined.version} ("
              + ("built elsewhere" if record["id"].startswith("found-") else f"baked by {record['id']}") + ")",
        details=details,
        reason=f"baked from {record['what']}")
    return request.id


def built_elsewhere(ctx, bake: Bake) -> list[Image]:
    """Versions of a baked family that amibot did not bake (a pipeline's own schedule, Packer in CI tagging the
    family) and has not proposed: available, newer than the family's current version (a family with none has no
    "new" yet: nothing), not current, never asked about. Oldest first."""
    handle = ctx.aws.of(bake.account or None)
    region = region_of(ctx, bake)
    images, _ = family_images(ctx.aws, bake.family, ctx.policy.digest.family_tag, [region], [handle.account])
    ordered = ordered_versions([image for image in images if image.state == "available"])
    current = next((version.image for version in ordered if version.current), None)
    if current is None:
        return []
    candidates = []
    for version in ordered:  # newest first, down to the current one
        if version.image.id == current.id:
            break
        candidates.append(version.image)
    return [image for image in reversed(candidates) if TAG_BAKE not in image.tags
            and not approvals.params_of(ctx.store, KIND, image_id=image.id)]


def propose_found(ctx, bake: Bake, image: Image, channel: str) -> str | None:
    """The promotion request of a version built elsewhere (None: one exists already)."""
    if approvals.params_of(ctx.store, KIND, image_id=image.id):
        return None
    handle = ctx.aws.of(bake.account or None)
    version = image.version or image.name
    record = {"id": f"found-{image.id}", "family": bake.family, "what": f"{image.name}, built outside amibot",
              "region": image.region, "account": handle.account.id, "user": SCHEDULER, "channel": channel,
              "source_image": image.tags.get(TAG_SOURCE) or (image.raw or {}).get("SourceImageId")}
    return propose(ctx, handle, record, Joined(bake.family, version, {image.region: image.id}))


@dataclass
class PipelineOutput:
    """An AVAILABLE image of a configured pipeline (ListImagePipelineImages)."""

    build: str  # the image build version ARN
    image: str  # its AMI in the bake's region (else its first one)
    outputs: list[tuple[str, str]]  # (region, AMI) of every region it was distributed to
    created: datetime | None


@requires("imagebuilder:ListImagePipelineImages")
def _pipeline_images(handle: Aws, bake: Bake, region: str) -> list[dict]:
    client = handle.client("imagebuilder", region)
    items, token = [], None
    while True:
        kwargs = {"imagePipelineArn": bake.source, **({"nextToken": token} if token else {})}
        answer = call(client, "list_image_pipeline_images", resource=bake.pipeline_name, **kwargs)
        items += answer.get("imageSummaryList") or []
        token = answer.get("nextToken")
        if not token:
            return items


def _made_by_a_bake(store, build: str) -> bool:
    return steps_table.any_with_data(store, START, OWNER, "run_id", build)


def pipeline_outputs(ctx, bake: Bake) -> list[PipelineOutput]:
    """The pipeline's outputs amibot did not bake (its own schedule, a console run) and has not proposed, oldest
    first: AVAILABLE, newer than the family's current version (a family with none: only the newest output, not the
    pipeline's whole history). Raises Unsupported where the endpoint has no Image Builder (the caller says "not
    checked", never "none")."""
    handle = ctx.aws.of(bake.account or None)
    region = region_of(ctx, bake)
    found = []
    for item in _pipeline_images(handle, bake, region):
        if ((item.get("state") or {}).get("status")) not in PIPELINE_DONE or not item.get("arn"):
            continue
        outputs = [(ami.get("region") or region, ami["image"]) for ami in
                   (item.get("outputResources") or {}).get("amis") or [] if ami.get("image")]
        if not outputs:
            continue
        here = next((image for where, image in outputs if where == region), outputs[0][1])
        created = _parsed(item.get("dateCreated"))
        found.append(PipelineOutput(item["arn"], here, outputs, created))
    found.sort(key=lambda output: (output.created is None, output.created or datetime.min.replace(tzinfo=None)))
    current = _reference(ctx, handle, bake, region)
    if current is None:
        found = found[-1:]
    else:
        found = [output for output in found if output.image != current.id and output.created is not None
                 and current.created is not None and output.created > current.created]
    return [output for output in found if not _made_by_a_bake(ctx.store, output.build)
            and not approvals.params_of(ctx.store, KIND, image_id=output.image)]


def _reference(ctx, handle: Aws, bake: Bake, region: str) -> Image | None:
    """What "new" is measured against: the family's promoted version, else its newest available image that this
    pipeline did not make (a proposed output waiting for approval is not yet the bar the next one must clear)."""
    images, failures = family_images(ctx.aws, bake.family, ctx.policy.digest.family_tag, [region], [handle.account])
    if failures:
        raise next(iter(failures.values()))
    ordered = ordered_versions([image for image in images if image.state == "available"])
    mine = f"pipeline:{bake.pipeline_name}/"
    return (next((version.image for version in ordered if version.current), None)
            or next((version.image for version in ordered
                     if not version.image.tags.get(TAG_BAKE, "").startswith(mine)), None))


def _parsed(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def propose_pipeline_output(ctx, bake: Bake, output: PipelineOutput, channel: str) -> str | None:
    """A pipeline's own output joins the family as a bake's does (Family, Version, ``amibot:bake`` =
    ``pipeline:NAME/<build version ARN>``; copied to copy_to) and gets one promotion request (None: one exists)."""
    if approvals.params_of(ctx.store, KIND, image_id=output.image):
        return None
    handle = ctx.aws.of(bake.account or None)
    region = region_of(ctx, bake)
    family_tag = ctx.policy.digest.family_tag
    record = {"id": f"found-{output.image}", "family": bake.family, "mechanism": "pipeline",
              "pipeline": bake.pipeline_name, "source": bake.source, "build": output.build,
              "what": f"Image Builder pipeline {bake.pipeline_name}, run outside amibot", "region": region,
              "account": handle.account.id, "user": SCHEDULER, "channel": channel, "copy_to": list(bake.copy_to)}
    seen = describe_own_images(handle, region, family_tag, image_id=[output.image])
    if seen and seen[0].tags.get(TAG_BAKE) == bake_tag(record) and seen[0].version:
        record["version"] = seen[0].version  # joined before a restart: the same version, not the next one
    else:
        versions = [image.version for image in family_images(ctx.aws, bake.family, family_tag, None,
                                                             [handle.account])[0]]
        record["version"] = next_version([v for v in versions if v], ctx.clock())
    if seen and (seen[0].raw or {}).get("SourceImageId"):
        record["source_image"] = seen[0].raw["SourceImageId"]
    outputs = sorted(output.outputs, key=lambda pair: pair[0] != region)  # the bake's region first
    joined = join_family(ctx, handle, record, outputs, {}, lambda where, image: None)
    return propose(ctx, handle, record, joined)


def promote_version(ctx, params: dict, user: str, progress: Callable[[str], None]) -> str:
    """Make the baked version current exactly as `/ami promote` does (bot.services.versions.promote), in every
    region it exists in; a region where it already is current is left as it is (a retry after a restart)."""
    handle = ctx.aws.of(params.get("account") or None)
    done = []
    for region, image_id in sorted(params["images"].items()):
        found = describe_own_images(handle, region, ctx.policy.digest.family_tag, image_id=[image_id])
        if not found:
            raise AmibotError(f"{image_id} is gone from {region}; nothing was promoted there.")
        image = found[0]
        if is_promoted(ctx, image):
            done.append(f"{region}: {image_id} (already current)")
            continue
        result = promote(ctx, image, user)
        done.append(f"{region}: {image_id}" + (f" (was {result.previous_image_id})" if result.previous_image_id
                                                else ""))
        progress(f":white_check_mark: {params['family']} {params['version']} is current in {region}: "
                 f"{result.parameter} → {image_id}.")
        done[-1] += f"; {_drift_words(ctx, handle, params['family'], region)}"
    return f"{params['family']} {params['version']} promoted: " + "; ".join(done)


def _drift_words(ctx, handle: Aws, family: str, region: str) -> str:
    """The drift the promotion creates, in words: instances of the family still on another version (in the bake's
    account, or with many accounts in every managed one, where prod runs the bake account's images), and — when
    Auto Scaling groups run another version — the rollout that would move them."""
    tag, now, names = ctx.policy.digest.family_tag, ctx.clock(), retired_names(ctx.store)
    try:
        found = drift_after_change(ctx.aws, handle, region, tag, now, family, names)
    except AmibotError as error:
        return f"drift unknown ({error.message})"
    if region in found.failures:
        return f"drift unknown ({found.failures[region]})"
    unread = f" (not read: {'; '.join(sorted(found.failures))})" if found.failures else ""
    drifted = sum(item.drifted for item in found.families if item.family == family and item.region == region)
    if not drifted:
        return f"every instance of {family} in {region} runs it{unread}"
    hint = rollout_words(family, found.groups_behind(family, region))
    return (f"{drifted} instance(s) of {family} in {region} run another version (/ami drift {family})"
            + (f"; {hint}" if hint else "") + unread)


def execute_promotion(ctx, request, progress) -> str:
    """An approved promotion request."""
    return promote_version(ctx, request.params, request.decided_by or request.requester, progress)


def reconcile_promotion(ctx, request):
    """After a restart mid-promotion: succeeded when the version is current everywhere it exists, else None (the
    request is approved again; the regions already done are left as they are)."""
    params = request.params
    handle = ctx.aws.of(params.get("account") or None)
    for region, image_id in params["images"].items():
        found = describe_own_images(handle, region, ctx.policy.digest.family_tag, image_id=[image_id])
        if not found or not is_promoted(ctx, found[0]):
            return None
    return approvals.SUCCEEDED


def confirm_promotion(params: dict) -> str:
    regions = ", ".join(sorted(params.get("images") or {}))
    return (f"Make {params['family']} {params['version']} the current version in {regions}? Launches that resolve "
            f"/amibot/{params['family']}/current get it from then on.")


# --- listing ----------------------------------------------------------------------------------------

@dataclass
class BakeRun:
    record: dict
    state: str  # starting | running | succeeded | failed | cancelled | overdue | proposed
    result: str = ""
    steps: dict[str, Step] = field(default_factory=dict)


def load(store, bake_id: str) -> BakeRun | None:
    steps = {step.action: step for step in Steps(store, OWNER + bake_id).all()}
    if START not in steps:
        return None
    return _run_of(steps)


def _run_of(steps: dict[str, Step]) -> BakeRun:
    start_step = steps[START]
    record = dict(start_step.data)
    watch_step, join_step, propose_step = steps.get(WATCH), steps.get(JOIN), steps.get(PROPOSE)
    state, result = "starting", ""
    if start_step.state == DONE:
        state = "running"
    elif start_step.state != PLANNED:
        state, result = "failed", start_step.result or ""
    if watch_step and watch_step.state != PLANNED:
        state = watch_step.result or watch_step.state
        result = watch_step.data.get("failure", "")
    if watch_step and watch_step.data.get("cancel"):
        state = "cancelled" if watch_step.state != PLANNED else "cancelling"
    if join_step and join_step.state == DONE:
        images = join_step.data.get("images") or {}
        state, result = "succeeded", f"{record.get('version')}: " + ", ".join(f"{i} ({r})" for r, i in images.items())
    if propose_step and propose_step.state == DONE and propose_step.data.get("request"):
        result += f" — {propose_step.data['request']}"
    return BakeRun(record, state, result, steps)


def runs(store, family: str | None = None, limit: int = 15) -> list[BakeRun]:
    """The latest bakes: running ones first, then the rest, newest first."""
    found = [run for owner in steps_table.owners_with(store, START, OWNER) if (run := load(store, owner[len(OWNER):]))
             and (family is None or run.record.get("family") == family)]
    found.sort(key=lambda run: run.record.get("started_at", ""), reverse=True)
    running = [run for run in found if run.state in ("starting", "running", "cancelling")]
    return (running + [run for run in found if run not in running])[:limit]


def next_scheduled(policy, now: datetime) -> list[tuple[Bake, datetime | None]]:
    """Each configured bake with its next scheduled run (None: not scheduled)."""
    from apscheduler.triggers.cron import CronTrigger

    zone = ZoneInfo(policy.digest.timezone)
    result = []
    for bake in policy.bakes:
        when = None
        if bake.schedule:
            when = CronTrigger.from_crontab(bake.schedule, timezone=zone).get_next_fire_time(None, now.astimezone(zone))
        result.append((bake, when))
    return result


def schedule_key(bake: Bake, fire_time: datetime) -> str:
    """What claims one scheduled run in SQLite (the job's dedupe key): two processes make the same key."""
    return f"bake-schedule:{bake.family}:{bake.account or ''}:{bake.region or ''}:{fire_time:%Y-%m-%dT%H:%M}"
