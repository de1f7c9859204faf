"""EC2 Image Builder and SSM Automation, emulated for `amibot demo` on top of moto, the way bot.devtools.emulation
emulates the Recycle Bin: ``before-call.<service>.<Operation>`` handlers on one boto3 session answer the calls
themselves (botocore's Stubber does the same), so the request is never sent and moto never sees it.

What moto 5.2.5 lacks, and only that, is answered here:

- ``imagebuilder`` (moto has no Image Builder at all): StartImagePipelineExecution (``clientToken`` idempotent:
  the same token gives the same ``imageBuildVersionArn``), GetImage, GetImagePipeline, ListImagePipelineImages,
  CancelImageCreation. A build's ``state.status`` moves PENDING → BUILDING → TESTING → DISTRIBUTING → AVAILABLE,
  one stage every ``stage_seconds`` of the injected clock; on AVAILABLE its AMI is registered in moto (a CopyImage
  of the pipeline's parent image, through moto's in-process EC2 backend, tagged as Image Builder tags its output)
  and reported in ``outputResources.amis``.
- SSM Automation (moto serves Parameter Store, Run Command, documents, but not StartAutomationExecution,
  GetAutomationExecution or StopAutomationExecution): a run of an ``AWS-UpdateLinuxAmi``-like runbook (any
  document name) steps through launchInstance → updateOSSoftware → stopInstance → createImage →
  terminateInstance, one step every ``stage_seconds``; ``createImage`` registers the AMI in moto (a copy of the
  run's ``SourceAmiId``, named by ``TargetAmiName``), and a successful run's Outputs are
  ``{"createImage.ImageId": [ami]}``. ``ClientToken`` is idempotent.
- Lineage moto does not record: DescribeImages (moto's answer) gains ``SourceImageId`` / ``SourceImageRegion`` for
  the images made here, as AWS reports them for images made from another.

Every other call — every other SSM call included — goes to moto. Failures are configured (``fail_next_build``,
``fail_next_automation``): the next run fails at the named stage or step with the given reason, as AWS reports it
(``state.status`` FAILED with ``state.reason``; the step and the execution Failed with their FailureMessage).
Response shapes follow botocore's service models (tests/test_bake_emulation.py validates them with botocore's
Stubber). Single-account (moto's default account), like the rest of the demo.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.devtools.emulation import EmulatedError, answered

BUILD_STAGES = ("PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE")
AUTOMATION_STEPS = (("launchInstance", "aws:runInstances"), ("updateOSSoftware", "aws:runCommand"),
                    ("stopInstance", "aws:changeInstanceState"), ("createImage", "aws:createImage"),
                    ("terminateInstance", "aws:changeInstanceState"))
FINISHED_STEP_STATUSES = ("Success", "Failed", "Cancelled", "TimedOut")


@dataclass
class Pipeline:
    arn: str
    name: str
    region: str
    parent_image: str
    version: str = "1.0.0"
    created: datetime | None = None
    last_run: datetime | None = None
    last_status: str | None = None
    builds: int = 0


@dataclass
class Build:
    """One Image Builder image (a pipeline execution)."""

    arn: str
    pipeline: Pipeline
    token: str
    started: datetime
    version: str
    fail: tuple[str, str] | None = None  # (the stage it fails in, the reason)
    ended: str | None = None  # CANCELLED or FAILED, once it is
    reason: str | None = None
    ami: dict | None = None  # the registered AMI's outputResources entry


@dataclass
class Automation:
    """One SSM Automation execution."""

    id: str
    document: str
    region: str
    token: str | None
    parameters: dict[str, list[str]]
    started: datetime
    fail: tuple[str, str] | None = None  # (the step it fails in, the message)
    cancelled_at: datetime | None = None
    image_id: str | None = None
    step_ends: dict[str, datetime] = field(default_factory=dict)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class BakeEmulation:
    """The emulated Image Builder and SSM Automation; ``install(session)`` makes every client of that session use
    them. ``clock`` (default: the real one) decides how far each run has got; ``stage_seconds`` is each stage's
    (or step's) length. ``registered(region, image_id)``, if given, is told of each image a run registers (the
    demo gives it Inspector's scan there, as AWS scans a new image)."""

    def __init__(self, account_id: str | None = None, clock: Callable[[], datetime] | None = None,
                 stage_seconds: float = 2.0, registered: Callable[[str, str], None] | None = None):
        from moto.core import DEFAULT_ACCOUNT_ID

        self.account_id = account_id or DEFAULT_ACCOUNT_ID
        self.registered = registered
        self.clock = clock or (lambda: datetime.now(UTC))
        self.stage = timedelta(seconds=stage_seconds)
        self._lock = threading.RLock()
        self._pipelines: dict[str, Pipeline] = {}
        self._builds: dict[str, Build] = {}
        self._build_tokens: dict[str, str] = {}  # clientToken -> image build version ARN
        self._cancel_tokens: dict[str, str] = {}  # CancelImageCreation's clientToken -> image build version ARN
        self._automations: dict[str, Automation] = {}
        self._automation_tokens: dict[str, str] = {}
        self._sources: dict[tuple[str, str], str] = {}  # (region, image made here) -> the image it was made from
        self._fail_builds: list[tuple[str | None, str, str]] = []  # (pipeline ARN or any, stage, reason)
        self._fail_automations: list[tuple[str | None, str, str]] = []  # (document or any, step, message)
        self._requests = itertools.count(1)
        self._imagebuilder: dict[str, Callable[[str, dict], dict]] = {
            "StartImagePipelineExecution": self._start_build, "GetImage": self._get_image,
            "GetImagePipeline": self._get_pipeline, "ListImagePipelineImages": self._list_pipeline_images,
            "CancelImageCreation": self._cancel_build,
        }
        self._ssm: dict[str, Callable[[str, dict], dict]] = {
            "StartAutomationExecution": self._start_automation, "GetAutomationExecution": self._get_automation,
            "StopAutomationExecution": self._stop_automation,
        }

    # --- wiring ------------------------------------------------------------------------------------------
    def install(self, session) -> BakeEmulation:
        """Register the handlers on a boto3 (or botocore) session, before any client is made from it."""
        events = getattr(session, "events", None) or session.get_component("event_emitter")
        for service in ("imagebuilder", "ssm"):
            events.register(f"before-parameter-build.{service}", self._remember_params,
                            unique_id=f"amibot-bake-emulation-p-{service}")
        events.register("before-call.imagebuilder", self._before_imagebuilder, unique_id="amibot-bake-imagebuilder")
        events.register("before-call.ssm", self._before_ssm, unique_id="amibot-bake-ssm")
        events.register("before-call.ec2.DescribeImages", self._before_describe_images,
                        unique_id="amibot-bake-describe-images")
        events.register("after-call.ec2.DescribeImages", self._after_describe_images,
                        unique_id="amibot-bake-after-describe-images")
        return self

    @staticmethod
    def _remember_params(params, context, **_):
        context["amibot_bake_params"] = copy.deepcopy(params)

    def _before_imagebuilder(self, model, context, **_):
        return self._answer(self._imagebuilder, model, context)

    def _before_ssm(self, model, context, **_):
        return self._answer(self._ssm, model, context)

    def _answer(self, table, model, context):
        handler = table.get(model.name)
        if handler is None:
            return None  # moto serves it (SSM parameters, documents…)
        region = context.get("client_region") or "us-east-1"
        params = context.get("amibot_bake_params") or {}

        def run():
            with self._lock:
                return handler(region, params)
        return answered(model.name, run)

    def _before_describe_images(self, context, **_):
        # a run that finished while nobody asked has registered its image by the time anyone lists images
        with self._lock:
            self.advance()
        return None

    def _after_describe_images(self, http_response, parsed, context, **_):
        if getattr(http_response, "status_code", 500) >= 300:
            return
        region = context.get("client_region") or "us-east-1"
        with self._lock:
            for image in parsed.get("Images") or []:
                source = self._sources.get((region, image.get("ImageId")))
                if source is not None:
                    image["SourceImageId"], image["SourceImageRegion"] = source, region

    def _request_id(self) -> str:
        return str(uuid.UUID(int=next(self._requests)))

    # --- seeding and failures, for the demo's fleet and the tests -----------------------------------------
    def add_pipeline(self, region: str, name: str, parent_image: str, version: str = "1.0.0") -> str:
        """An Image Builder pipeline whose recipe builds on `parent_image` (an AMI in moto); returns its ARN."""
        arn = f"arn:aws:imagebuilder:{region}:{self.account_id}:image-pipeline/{name.lower()}"
        with self._lock:
            self._pipelines[arn] = Pipeline(arn, name, region, parent_image, version, created=self.clock())
        return arn

    def fail_next_build(self, stage: str, reason: str, pipeline_arn: str | None = None) -> None:
        """The next build (of `pipeline_arn`, or of any pipeline) fails in `stage` (BUILDING, TESTING or
        DISTRIBUTING) with `reason`."""
        if stage not in BUILD_STAGES[1:-1]:
            raise ValueError(f"a build fails in one of {', '.join(BUILD_STAGES[1:-1])}, not {stage}")
        with self._lock:
            self._fail_builds.append((pipeline_arn, stage, reason))

    def fail_next_automation(self, step: str, message: str, document: str | None = None) -> None:
        """The next Automation run (of `document`, or of any) fails at `step` with `message`."""
        if step not in [name for name, _ in AUTOMATION_STEPS]:
            raise ValueError(f"no step {step} in the emulated runbook")
        with self._lock:
            self._fail_automations.append((document, step, message))

    def source_of(self, region: str, image_id: str) -> str | None:
        """The image an image made here was made from."""
        with self._lock:
            return self._sources.get((region, image_id))

    def advance(self) -> None:
        """Bring every run up to the clock (registering the images of those that got that far)."""
        with self._lock:
            for build in self._builds.values():
                self._build_state(build)
            for run in self._automations.values():
                self._steps(run)

    # --- moto's EC2: the output image ------------------------------------------------------------------------
    def _register(self, region: str, source: str, name: str, description: str, tags: dict[str, str]) -> str:
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[self.account_id][region]
        ami = backend.copy_image(source, region, name=name, description=description)
        backend.create_tags([ami.id], tags)
        self._sources[(region, ami.id)] = source
        if self.registered is not None:
            self.registered(region, ami.id)
        return ami.id

    # --- Image Builder ---------------------------------------------------------------------------------------
    def _pipeline(self, arn: str | None) -> Pipeline:
        pipeline = self._pipelines.get(arn or "")
        if pipeline is None:
            raise EmulatedError("ResourceNotFoundException", f"The resource ARN '{arn}' does not exist.", 404)
        return pipeline

    def _start_build(self, region: str, params: dict) -> dict:
        token = params.get("clientToken") or ""
        pipeline = self._pipeline(params.get("imagePipelineArn"))
        known = self._build_tokens.get(token)
        if known is not None:
            if self._builds[known].pipeline is not pipeline:
                raise EmulatedError("IdempotentParameterMismatchException",
                                    "The client token was already used with different parameters.")
            return {"requestId": self._request_id(), "clientToken": token, "imageBuildVersionArn": known}
        pipeline.builds += 1
        arn = (f"arn:aws:imagebuilder:{pipeline.region}:{self.account_id}:image/{pipeline.name.lower()}/"
               f"{pipeline.version}/{pipeline.builds}")
        planned = next((item for item in self._fail_builds if item[0] in (None, pipeline.arn)), None)
        if planned is not None:
            self._fail_builds.remove(planned)
        build = Build(arn, pipeline, token, self.clock(), f"{pipeline.version}/{pipeline.builds}",
                      planned[1:] if planned else None)
        self._builds[arn] = build
        self._build_tokens[token] = arn
        pipeline.last_run = build.started
        return {"requestId": self._request_id(), "clientToken": token, "imageBuildVersionArn": arn}

    def _build(self, arn: str | None) -> Build:
        build = self._builds.get(arn or "")
        if build is None:
            raise EmulatedError("ResourceNotFoundException", f"The resource ARN '{arn}' does not exist.", 404)
        return build

    def _build_state(self, build: Build) -> dict:
        """Where the build is now; registers its image the first time it is AVAILABLE."""
        if build.ended:
            return {"status": build.ended, **({"reason": build.reason} if build.reason else {})}
        reached = min(int((self.clock() - build.started) / self.stage), len(BUILD_STAGES) - 1)
        if build.fail is not None:
            stage, reason = build.fail
            if reached > BUILD_STAGES.index(stage):  # it would have moved on: it failed there instead
                build.ended, build.reason = "FAILED", reason
                build.pipeline.last_status = "FAILED"
                return {"status": "FAILED", "reason": reason}
        status = BUILD_STAGES[reached]
        if status == "AVAILABLE" and build.ami is None:
            pipeline = build.pipeline
            name = f"{pipeline.name} {build.started.strftime('%Y-%m-%dT%H-%M-%SZ')}"
            image_id = self._register(pipeline.region, pipeline.parent_image, name,
                                      f"Built by EC2 Image Builder ({build.arn})",
                                      {"CreatedBy": "EC2 Image Builder", "Ec2ImageBuilderArn": build.arn})
            build.ami = {"region": pipeline.region, "image": image_id, "name": name, "accountId": self.account_id,
                         "state": {"status": "AVAILABLE"}}
            pipeline.last_status = "AVAILABLE"
        return {"status": status}

    def _image(self, build: Build) -> dict:
        state = self._build_state(build)
        image = {"arn": build.arn, "type": "AMI", "name": build.pipeline.name.lower(),
                 "version": build.version, "platform": "Linux", "state": state,
                 "sourcePipelineName": build.pipeline.name, "sourcePipelineArn": build.pipeline.arn,
                 "dateCreated": _iso(build.started), "buildType": "USER_INITIATED",
                 "outputResources": {"amis": [dict(build.ami)] if build.ami else []}}
        return image

    def _get_image(self, region: str, params: dict) -> dict:
        return {"requestId": self._request_id(), "image": self._image(self._build(params.get("imageBuildVersionArn")))}

    def _get_pipeline(self, region: str, params: dict) -> dict:
        pipeline = self._pipeline(params.get("imagePipelineArn"))
        for build in self._builds.values():
            if build.pipeline is pipeline:
                self._build_state(build)
        prefix = f"arn:aws:imagebuilder:{pipeline.region}:{self.account_id}"
        name = pipeline.name.lower()
        answer = {"arn": pipeline.arn, "name": pipeline.name, "platform": "Linux", "status": "ENABLED",
                  "imageRecipeArn": f"{prefix}:image-recipe/{name}/{pipeline.version}",
                  "infrastructureConfigurationArn": f"{prefix}:infrastructure-configuration/{name}",
                  "distributionConfigurationArn": f"{prefix}:distribution-configuration/{name}",
                  "dateCreated": _iso(pipeline.created or self.clock())}
        if pipeline.last_run:
            answer["dateLastRun"] = _iso(pipeline.last_run)
        if pipeline.last_status:
            answer["lastRunStatus"] = pipeline.last_status
        return {"requestId": self._request_id(), "imagePipeline": answer}

    def _list_pipeline_images(self, region: str, params: dict) -> dict:
        pipeline = self._pipeline(params.get("imagePipelineArn"))
        summaries = []
        for build in self._builds.values():
            if build.pipeline is not pipeline:
                continue
            image = self._image(build)
            summaries.append({key: image[key] for key in ("arn", "name", "type", "version", "platform", "state",
                                                          "dateCreated", "outputResources", "buildType")}
                             | {"owner": self.account_id})
        size = params.get("maxResults") or 25
        start = 0
        if params.get("nextToken"):
            try:
                start = int(str(params["nextToken"]).removeprefix("emulated-"))
            except ValueError:
                raise EmulatedError("InvalidPaginationTokenException", "The pagination token is not valid.") from None
        answer = {"requestId": self._request_id(), "imageSummaryList": summaries[start:start + size]}
        if start + size < len(summaries):
            answer["nextToken"] = f"emulated-{start + size}"
        return answer

    def _cancel_build(self, region: str, params: dict) -> dict:
        token, arn = params.get("clientToken") or "", params.get("imageBuildVersionArn")
        if self._cancel_tokens.get(token) == arn:  # the same cancellation again
            return {"requestId": self._request_id(), "clientToken": token, "imageBuildVersionArn": arn}
        build = self._build(arn)
        status = self._build_state(build)["status"]
        if status in ("AVAILABLE", "FAILED", "CANCELLED"):
            raise EmulatedError("ResourceInUseException",
                                f"The image '{arn}' cannot be cancelled because it is in the {status} state.")
        build.ended, build.reason = "CANCELLED", "Image creation was cancelled."
        build.pipeline.last_status = "CANCELLED"
        self._cancel_tokens[token] = arn
        return {"requestId": self._request_id(), "clientToken": token, "imageBuildVersionArn": arn}

    # --- SSM Automation --------------------------------------------------------------------------------------
    def _start_automation(self, region: str, params: dict) -> dict:
        document, token = params.get("DocumentName") or "", params.get("ClientToken")
        parameters = {key: list(values) for key, values in (params.get("Parameters") or {}).items()}
        if token and token in self._automation_tokens:
            known = self._automations[self._automation_tokens[token]]
            if known.document != document or known.parameters != parameters:
                raise EmulatedError("IdempotentParameterMismatch",
                                    "The client token was already used with different parameters.")
            return {"AutomationExecutionId": known.id}
        source = (parameters.get("SourceAmiId") or [""])[0]
        if not source:
            raise EmulatedError("InvalidAutomationExecutionParametersException",
                                "The following required parameters are missing: SourceAmiId")
        from moto.ec2.models import ec2_backends

        if source not in ec2_backends[self.account_id][region].amis:
            raise EmulatedError("InvalidAutomationExecutionParametersException",
                                f"Parameter SourceAmiId: the image {source} does not exist in {region}")
        planned = next((item for item in self._fail_automations if item[0] in (None, document)), None)
        if planned is not None:
            self._fail_automations.remove(planned)
        run = Automation(str(uuid.uuid4()), document, region, token, parameters, self.clock(),
                         planned[1:] if planned else None)
        self._automations[run.id] = run
        if token:
            self._automation_tokens[token] = run.id
        return {"AutomationExecutionId": run.id}

    def _automation(self, execution_id: str | None) -> Automation:
        run = self._automations.get(execution_id or "")
        if run is None:
            raise EmulatedError("AutomationExecutionNotFoundException",
                                f"Automation execution {execution_id} was not found.")
        return run

    def _steps(self, run: Automation) -> tuple[str, list[dict], str | None]:
        """The run's status, its started steps as AWS lists them, and its failure message."""
        now = run.cancelled_at or self.clock()
        steps, status, failure = [], "InProgress", None
        for index, (name, action) in enumerate(AUTOMATION_STEPS):
            begins = run.started + index * self.stage
            if begins > now:
                break
            ends = begins + self.stage
            step = {"StepName": name, "Action": action, "ExecutionStartTime": begins,
                    "StepExecutionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run.id}/{name}")), "OnFailure": "Abort"}
            if run.fail is not None and run.fail[0] == name and ends <= now:
                step.update(StepStatus="Failed", ExecutionEndTime=ends, FailureMessage=run.fail[1])
                steps.append(step)
                status, failure = "Failed", f"Step fails when it is executing. {run.fail[1]}"
                break
            if ends > now:
                step["StepStatus"] = "Cancelled" if run.cancelled_at else "InProgress"
                if run.cancelled_at:
                    step["ExecutionEndTime"] = run.cancelled_at
                steps.append(step)
                break
            step.update(StepStatus="Success", ExecutionEndTime=ends)
            if name == "createImage":
                step["Outputs"] = {"ImageId": [self._automation_image(run)]}
            steps.append(step)
        else:
            status = "Success"
        if run.cancelled_at and status == "InProgress":
            status = "Cancelled"
        return status, steps, failure

    def _automation_image(self, run: Automation) -> str:
        if run.image_id is None:
            source = run.parameters["SourceAmiId"][0]
            stamp = run.started.strftime("%Y-%m-%d_%H.%M.%S")
            name = (run.parameters.get("TargetAmiName") or [f"UpdateLinuxAmi_from_{source}_on_{stamp}"])[0]
            name = name.replace("{{SourceAmiId}}", source).replace("{{global:DATE_TIME}}", stamp)
            run.image_id = self._register(run.region, source, name,
                                          f"AMI Generated by EC2 Automation on {stamp} from {source}",
                                          {"CreatedBy": "SSM Automation", "AutomationExecutionId": run.id})
        return run.image_id

    def _get_automation(self, region: str, params: dict) -> dict:
        run = self._automation(params.get("AutomationExecutionId"))
        status, steps, failure = self._steps(run)
        execution: dict[str, Any] = {
            "AutomationExecutionId": run.id, "DocumentName": run.document, "DocumentVersion": "1",
            "ExecutionStartTime": run.started, "AutomationExecutionStatus": status, "StepExecutions": steps,
            "StepExecutionsTruncated": False, "Mode": "Auto", "ExecutedBy": f"arn:aws:iam::{self.account_id}:root"}
        if run.parameters:
            execution["Parameters"] = copy.deepcopy(run.parameters)
        if status in FINISHED_STEP_STATUSES:
            execution["ExecutionEndTime"] = steps[-1].get("ExecutionEndTime") if steps else run.started
        else:
            execution["CurrentStepName"], execution["CurrentAction"] = steps[-1]["StepName"], steps[-1]["Action"]
        if status == "Success":
            execution["Outputs"] = {"createImage.ImageId": [run.image_id]}
        if failure:
            execution["FailureMessage"] = failure
        return {"AutomationExecution": execution}

    def _stop_automation(self, region: str, params: dict) -> dict:
        run = self._automation(params.get("AutomationExecutionId"))
        status, _, _ = self._steps(run)
        if status in FINISHED_STEP_STATUSES:
            raise EmulatedError("InvalidAutomationStatusUpdateException",
                                f"The execution {run.id} is already {status} and cannot be stopped.")
        run.cancelled_at = self.clock()
        return {}
