"""Auto Scaling instance refresh, emulated for `amibot demo` on top of moto, the way bot.devtools.bake_emulation
emulates Image Builder: ``before-call.autoscaling.<Operation>`` handlers on one boto3 session answer the calls
moto 5.2.5 lacks — and only those (it has groups, launch templates and launch configurations, but none of the
instance refresh calls):

- StartInstanceRefresh: refused (``InstanceRefreshInProgress``) while the group has one not finished; keeps the
  ``Preferences`` and ``DesiredConfiguration`` as given and answers an ``InstanceRefreshId``.
- DescribeInstanceRefreshes (newest first): ``Status`` Pending for one step, then InProgress replacing one
  instance every ``step_seconds`` of the injected clock — in moto: the old instance terminated and taken out of the
  group, a new one run on the desired image and put in — with ``PercentageComplete`` and ``InstancesToUpdate``;
  then Successful, when the desired configuration is applied to the group (as AWS does). The desired image: the
  desired configuration's template version, else the group's own template (``resolve:ssm:`` resolved from moto's
  Parameter Store) or launch configuration. With ``SkipMatching``, instances already on it are not replaced.
- CancelInstanceRefresh: Cancelling, then Cancelled at the next step; instances replaced so far stay.
- RollbackInstanceRefresh: RollbackInProgress, replacing the new instances with ones on the group's image (its
  configuration is not changed until success), then RollbackSuccessful. A refresh with ``AutoRollback`` that fails
  rolls back the same way.

A failure is configured with ``fail_next_refresh``: the next refresh (of a group, or of any) fails after replacing
the given number of instances, with the status reason given. Response shapes follow botocore's service model
(tests/test_refresh_emulation.py validates them with botocore's Stubber). One per account (the demo installs one
on each managed account's session): new instances run an image of the account's own or one shared with it, as AWS
launches both; an image the account may not launch fails the refresh with AWS's reason (rolled back with
``AutoRollback``), never the calls that happen to bring it up to the clock.
``CheckpointPercentages`` pause the refresh for ``CheckpointDelay`` seconds of the clock
(InProgress, the checkpoint in ``StatusReason``); alarms are not emulated.
"""

from __future__ import annotations

import copy
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from bot.devtools.emulation import EmulatedError, answered

_MODEL: list = []  # Auto Scaling's botocore service model, loaded once


def _autoscaling_model():
    if not _MODEL:
        import botocore.session

        _MODEL.append(botocore.session.get_session().get_service_model("autoscaling"))
    return _MODEL[0]


def _from_query(shape, form: dict[str, str], prefix: str) -> Any:
    """The query protocol's flat form (``Preferences.CheckpointPercentages.member.1=20``) back into botocore's
    parameters, by the operation's input shape."""
    kind = shape.type_name
    if kind == "structure":
        found = {}
        for name, member in shape.members.items():
            value = _from_query(member, form, f"{prefix}.{name}" if prefix else name)
            if value is not None:
                found[name] = value
        return found or None
    if kind == "list":
        items = []
        while any(key.startswith(f"{prefix}.member.{len(items) + 1}") for key in form):
            items.append(_from_query(shape.member, form, f"{prefix}.member.{len(items) + 1}"))
        return items or (None if prefix not in form else [])
    if prefix not in form:
        return None
    value = form[prefix]
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    if kind == "boolean":
        return value == "true"
    return value


def _to_xml(shape, value: Any) -> str:
    """A parsed answer as the query protocol's XML, by the operation's output shape."""
    kind = shape.type_name
    if kind == "structure":
        return "".join(f"<{name}>{_to_xml(member, value[name])}</{name}>" for name, member in shape.members.items()
                       if isinstance(value, dict) and value.get(name) is not None)
    if kind == "list":
        return "".join(f"<member>{_to_xml(shape.member, item)}</member>" for item in value)
    if kind == "map":
        return "".join(f"<entry><key>{escape(str(key))}</key><value>{_to_xml(shape.value, item)}</value></entry>"
                       for key, item in value.items())
    if kind == "timestamp":
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(value, datetime) else str(value)
    if kind == "boolean":
        return "true" if value else "false"
    return escape(str(value))

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
SSM_PREFIX = "resolve:ssm:"
GROUP_TAG = "aws:autoscaling:groupName"


class LaunchRefused(Exception):
    """The account may not launch the image a refresh would put on its instances (not its own, not shared)."""


@dataclass
class Refresh:
    id: str
    region: str
    group: str
    started: datetime
    preferences: dict
    desired: dict | None
    image_id: str  # what new instances run
    rollback_image: str  # what the group ran before: a rollback's image
    to_update: list[str]  # instance ids to replace, in order
    fail: tuple[int, str] | None = None  # (after how many replacements it fails, the reason)
    status: str = "Pending"
    reason: str = ""
    replaced: list[str] = field(default_factory=list)  # old instance ids replaced so far
    new: list[str] = field(default_factory=list)  # the instances launched by it
    steps_done: int = 0  # steps of the clock already applied
    ended: datetime | None = None
    paused_until: datetime | None = None  # at a checkpoint until then
    checkpoints_reached: list[int] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)


class RefreshEmulation:
    """The emulated instance refresh; ``install(session)`` makes every client of that session use it. ``clock``
    (default: the real one) decides how far each refresh has got; ``step_seconds`` is one instance's replacement."""

    def __init__(self, account_id: str | None = None, clock: Callable[[], datetime] | None = None,
                 step_seconds: float = 2.0):
        from moto.core import DEFAULT_ACCOUNT_ID

        self.account_id = account_id or DEFAULT_ACCOUNT_ID
        self.clock = clock or (lambda: datetime.now(UTC))
        self.step = timedelta(seconds=step_seconds)
        self._lock = threading.RLock()
        self._refreshes: dict[tuple[str, str], list[Refresh]] = {}  # (region, group) -> refreshes, oldest first
        self._fail: list[tuple[str | None, int, str]] = []  # (group or any, replacements before failing, reason)
        self._operations: dict[str, Callable[[str, dict], dict]] = {
            "StartInstanceRefresh": self._start, "DescribeInstanceRefreshes": self._describe,
            "CancelInstanceRefresh": self._cancel, "RollbackInstanceRefresh": self._rollback,
        }

    # --- wiring ------------------------------------------------------------------------------------------
    def install(self, session) -> RefreshEmulation:
        """Register the handlers on a boto3 (or botocore) session, before any client is made from it."""
        events = getattr(session, "events", None) or session.get_component("event_emitter")
        events.register("before-parameter-build.autoscaling", self._remember_params,
                        unique_id="amibot-refresh-emulation-params")
        events.register("before-call.autoscaling", self._before_autoscaling, unique_id="amibot-refresh-autoscaling")
        for operation in ("DescribeInstances", "DescribeInstanceImageMetadata"):
            # a refresh that moved on while nobody asked has replaced its instances by the time anyone lists them
            events.register(f"before-call.ec2.{operation}", self._catch_up, unique_id=f"amibot-refresh-{operation}")
        return self

    @staticmethod
    def _remember_params(params, context, **_):
        context["amibot_refresh_params"] = copy.deepcopy(params)

    def _catch_up(self, **_):
        self.advance()
        return None

    def _before_autoscaling(self, model, context, **_):
        region = context.get("client_region") or "us-east-1"
        params = context.get("amibot_refresh_params") or {}
        return answered(model.name, lambda: self.operate(model.name, region, params))

    def operate(self, operation: str, region: str, params: dict) -> dict | None:
        """One Auto Scaling call's answer (botocore's parsed shape), after bringing every refresh up to the clock;
        None for a call moto serves. Raises EmulatedError as AWS would answer."""
        self.advance()
        handler = self._operations.get(operation)
        if handler is None:
            return None  # moto serves it (groups, launch configurations…)
        with self._lock:
            return handler(region, params)

    # --- over HTTP: in front of a moto server running in this process (moto.server.ThreadedMotoServer) ---------
    def answer_http(self, body: bytes, authorization: str) -> tuple[int, bytes] | None:
        """The answer to one AWS request as a proxy in front of moto's server sees it — the query protocol botocore
        sends Auto Scaling — as (HTTP status, XML) for the calls emulated here; None for the rest (forward them to
        moto: every refresh is brought up to the clock first, as a describe would see it). For a process that
        cannot take a botocore session (`amibot serve` killed and restarted by a test): the state lives here."""
        scope = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/", authorization or "")
        form = dict(urllib.parse.parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        operation = form.get("Action", "")
        if scope is None or scope.group(2) != "autoscaling" or operation not in self._operations:
            self.advance()
            return None
        model = _autoscaling_model().operation_model(operation)
        request_id = str(uuid.uuid4())
        try:
            parsed = self.operate(operation, scope.group(1), _from_query(model.input_shape, form, "") or {})
        except EmulatedError as error:
            return error.status, (f"<ErrorResponse><Error><Type>Sender</Type><Code>{escape(error.code)}</Code>"
                                  f"<Message>{escape(error.message)}</Message></Error>"
                                  f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        result = _to_xml(model.output_shape, parsed or {}) if model.output_shape is not None else ""
        return 200, (f'<{operation}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                     f"<{operation}Result>{result}</{operation}Result><ResponseMetadata><RequestId>{request_id}"
                     f"</RequestId></ResponseMetadata></{operation}Response>").encode()

    # --- failures, for the demo and the tests -----------------------------------------------------------------
    def fail_next_refresh(self, reason: str, after: int = 1, group: str | None = None) -> None:
        """The next refresh (of `group`, or of any) fails after replacing `after` instances, with `reason`."""
        with self._lock:
            self._fail.append((group, after, reason))

    def refreshes_of(self, region: str, group: str) -> list[Refresh]:
        with self._lock:
            return list(self._refreshes.get((region, group), []))

    # --- moto's backends -------------------------------------------------------------------------------------
    def _backends(self, region: str):
        from moto.autoscaling.models import autoscaling_backends
        from moto.ec2.models import ec2_backends

        return autoscaling_backends[self.account_id][region], ec2_backends[self.account_id][region]

    def _group(self, region: str, name: str | None):
        autoscaling, _ec2 = self._backends(region)
        group = autoscaling.autoscaling_groups.get(name or "")
        if group is None:
            raise EmulatedError("ValidationError", f"AutoScalingGroup name not found - {name}")
        return group

    def _resolve(self, region: str, image: str) -> str:
        if not image.startswith(SSM_PREFIX):
            return image
        from moto.ssm.models import ssm_backends

        parameter = ssm_backends[self.account_id][region].get_parameter(image[len(SSM_PREFIX):])
        if parameter is None:
            raise EmulatedError("ValidationError", f"The SSM parameter {image[len(SSM_PREFIX):]} does not exist")
        return parameter.value

    def _template_image(self, region: str, spec: dict) -> str:
        _autoscaling, ec2 = self._backends(region)
        template = (ec2.get_launch_template(spec["LaunchTemplateId"]) if spec.get("LaunchTemplateId")
                    else ec2.get_launch_template_by_name(spec.get("LaunchTemplateName")))
        return self._resolve(region, template.get_version(spec.get("Version") or "$Default").image_id)

    def _group_image(self, region: str, group) -> str:
        if group.ec2_launch_template is not None:
            return self._resolve(region, group.ec2_launch_template.get_version(group.launch_template_version).image_id)
        return group.launch_config.image_id

    def _desired_image(self, region: str, group, desired: dict | None) -> str:
        if desired and desired.get("LaunchTemplate"):
            return self._template_image(region, desired["LaunchTemplate"])
        mixed = ((desired or {}).get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}
        if mixed.get("LaunchTemplateSpecification"):
            return self._template_image(region, mixed["LaunchTemplateSpecification"])
        return self._group_image(region, group)

    def _shared(self, region: str, image_id: str) -> bool:
        """Whether `image_id` is another account's image this account may launch (shared with it, or public);
        False for the account's own. Raises LaunchRefused when the account may not launch it at all."""
        from moto.ec2.models import ec2_backends

        if image_id in ec2_backends[self.account_id][region].amis:
            return False
        for account in list(ec2_backends.keys()):
            ami = ec2_backends[account][region].amis.get(image_id)
            if ami is not None and ({"UserId": self.account_id} in ami.launch_permissions or ami.is_public):
                return True
        raise LaunchRefused(f"Launching a new EC2 instance failed: the image id '[{image_id}]' does not exist or is "
                            f"not shared with account {self.account_id} (InvalidAMIID.NotFound).")

    def _replace(self, region: str, group, old: str, image_id: str) -> str:
        """Terminate `old` (taking it out of the group) and put a new instance on `image_id` in its place — an image
        of this account's or one shared with it, as AWS launches both (moto's own check knows the account's images
        only: a shared one's id is listed as known for the launch). Raises LaunchRefused, replacing nothing, when
        the account may not launch the image."""
        from moto.autoscaling.models import InstanceState

        _autoscaling, ec2 = self._backends(region)
        shared = self._shared(region, image_id) and image_id not in ec2.deleted_amis
        group.instance_states = [state for state in group.instance_states if state.instance.id != old]
        ec2.terminate_instances([old])
        subnet = group.vpc_zone_identifier.split(",")[0] if group.vpc_zone_identifier else None
        if shared:
            ec2.deleted_amis.append(image_id)
        try:
            reservation = ec2.run_instances(image_id, 1, None, [], instance_type=group.instance_type,
                                            tags={"instance": {GROUP_TAG: group.name}}, subnet_id=subnet,
                                            is_instance_type_default=False)
        finally:
            if shared and image_id in ec2.deleted_amis:
                ec2.deleted_amis.remove(image_id)
        instance = reservation.instances[0]
        instance.autoscaling_group = group
        group.instance_states.append(InstanceState(instance, autoscaling_group=group))
        return instance.id

    def _apply(self, region: str, group, desired: dict | None) -> None:
        """The desired configuration becomes the group's, as AWS does when a refresh succeeds."""
        if not desired:
            return
        if desired.get("LaunchTemplate"):
            group.mixed_instances_policy = None
            group._set_launch_configuration(None, dict(desired["LaunchTemplate"]), None)
        elif desired.get("MixedInstancesPolicy"):
            policy = copy.deepcopy(desired["MixedInstancesPolicy"])
            if group.mixed_instances_policy and "InstancesDistribution" not in policy:
                policy["InstancesDistribution"] = group.mixed_instances_policy.get("InstancesDistribution")
            group.mixed_instances_policy = policy
            group._set_launch_configuration(None, None, policy)

    # --- moving on with the clock -----------------------------------------------------------------------------
    def advance(self) -> None:
        """Bring every refresh up to the clock (replacing the instances of those that got that far)."""
        with self._lock:
            now = self.clock()
            for refreshes in self._refreshes.values():
                for refresh in refreshes:
                    due = int((now - refresh.started) / self.step)
                    while refresh.steps_done < due and refresh.status in ACTIVE:
                        refresh.steps_done += 1
                        moment = refresh.started + self.step * refresh.steps_done
                        try:
                            self._step(refresh, moment)
                        except LaunchRefused as refused:  # AWS fails the refresh; the account's calls go on
                            self._failed(refresh, str(refused), moment)

    def _step(self, refresh: Refresh, moment: datetime) -> None:
        group = self._group(refresh.region, refresh.group)
        if refresh.status == "Pending":
            refresh.status = "InProgress"
            return
        if refresh.status == "Cancelling":
            refresh.status, refresh.ended = "Cancelled", moment
            return
        elif refresh.status == "RollbackInProgress":
            undo = [new for new in refresh.new if new not in refresh.rolled_back]
            if not undo:
                refresh.status, refresh.ended = "RollbackSuccessful", moment
                refresh.reason = refresh.reason or "The rollback completed successfully."
                return
            self._replace(refresh.region, group, undo[0], refresh.rollback_image)
            refresh.rolled_back.append(undo[0])
            return
        if refresh.fail is not None and len(refresh.replaced) >= refresh.fail[0]:
            self._failed(refresh, refresh.fail[1], moment)
            return
        if refresh.paused_until is not None:
            if moment < refresh.paused_until:
                return
            refresh.paused_until, refresh.reason = None, ""
        waiting = [old for old in refresh.to_update if old not in refresh.replaced]
        if waiting:
            refresh.new.append(self._replace(refresh.region, group, waiting[0], refresh.image_id))
            refresh.replaced.append(waiting[0])
            self._checkpoint(refresh, moment)
        if len(refresh.replaced) == len(refresh.to_update):
            self._apply(refresh.region, group, refresh.desired)
            refresh.status, refresh.ended = "Successful", moment

    @staticmethod
    def _failed(refresh: Refresh, reason: str, moment: datetime) -> None:
        """The refresh fails with `reason`; with AutoRollback, AWS rolls it back first."""
        refresh.reason = reason
        if refresh.preferences.get("AutoRollback") and refresh.status != "RollbackInProgress":
            refresh.status = "RollbackInProgress"
        else:
            refresh.status, refresh.ended = ("RollbackFailed" if refresh.status == "RollbackInProgress" else "Failed",
                                             moment)

    @staticmethod
    def _checkpoint(refresh: Refresh, moment: datetime) -> None:
        """Past a checkpoint percentage (not the last one, 100): wait CheckpointDelay seconds there (AWS's
        default: an hour), InProgress with the checkpoint in the status reason."""
        done = len(refresh.replaced) * 100 // len(refresh.to_update)
        points = refresh.preferences.get("CheckpointPercentages") or []
        passed = [point for point in points if point <= done and point < 100 and point not in
                  refresh.checkpoints_reached]
        if passed and len(refresh.replaced) < len(refresh.to_update):
            refresh.checkpoints_reached += passed
            delay = refresh.preferences.get("CheckpointDelay", 3600)
            refresh.paused_until = moment + timedelta(seconds=delay)
            refresh.reason = f"Waiting for checkpoint at {passed[-1]}% (CheckpointDelay {delay} seconds)."

    # --- the operations -------------------------------------------------------------------------------------
    def _active(self, region: str, name: str) -> Refresh | None:
        return next((r for r in reversed(self._refreshes.get((region, name), [])) if r.status in ACTIVE), None)

    def _start(self, region: str, params: dict) -> dict:
        name = params.get("AutoScalingGroupName")
        group = self._group(region, name)
        if self._active(region, name) is not None:
            raise EmulatedError("InstanceRefreshInProgress",
                                f"An Instance Refresh is already in progress and blocks the execution of this "
                                f"Instance Refresh for group {name}.")
        preferences = dict(params.get("Preferences") or {})
        desired = params.get("DesiredConfiguration")
        image_id = self._desired_image(region, group, desired)
        skip = preferences.get("SkipMatching", False)
        to_update = [state.instance.id for state in group.instance_states
                     if not (skip and state.instance.image_id == image_id)]
        planned = next((item for item in self._fail if item[0] in (None, name)), None)
        if planned is not None:
            self._fail.remove(planned)
        refresh = Refresh(str(uuid.uuid4()), region, name, self.clock(), preferences, copy.deepcopy(desired),
                          image_id, self._group_image(region, group), to_update,
                          fail=planned[1:] if planned else None)
        self._refreshes.setdefault((region, name), []).append(refresh)
        return {"InstanceRefreshId": refresh.id}

    def _item(self, refresh: Refresh) -> dict:
        total = len(refresh.to_update)
        done = len(refresh.replaced)
        item: dict[str, Any] = {
            "InstanceRefreshId": refresh.id, "AutoScalingGroupName": refresh.group, "Status": refresh.status,
            "StartTime": refresh.started,
            "PercentageComplete": 100 if refresh.status == "Successful" else (done * 100 // total if total else 0),
            "InstancesToUpdate": total - done, "Preferences": refresh.preferences, "Strategy": "Rolling",
        }
        if refresh.reason:
            item["StatusReason"] = refresh.reason
        if refresh.ended:
            item["EndTime"] = refresh.ended
        if refresh.desired:
            item["DesiredConfiguration"] = refresh.desired
        if refresh.status in ("RollbackInProgress", "RollbackSuccessful", "RollbackFailed"):
            item["RollbackDetails"] = {
                "RollbackReason": refresh.reason, "PercentageCompleteOnRollback": done * 100 // total if total else 0,
                "InstancesToUpdateOnRollback": len(refresh.new) - len(refresh.rolled_back)}
        return item

    def _describe(self, region: str, params: dict) -> dict:
        name = params.get("AutoScalingGroupName")
        self._group(region, name)
        wanted = set(params.get("InstanceRefreshIds") or [])
        items = [self._item(r) for r in reversed(self._refreshes.get((region, name), []))
                 if not wanted or r.id in wanted]
        return {"InstanceRefreshes": items}

    def _running(self, region: str, params: dict):
        """The group's pending or in-progress refresh, or AWS's error for a group without one."""
        name = params.get("AutoScalingGroupName")
        self._group(region, name)
        refresh = self._active(region, name)
        if refresh is None or refresh.status not in ("Pending", "InProgress"):
            raise EmulatedError("ActiveInstanceRefreshNotFound",
                                f"No in progress or pending Instance Refresh found for Auto Scaling group {name}")
        return refresh

    def _cancel(self, region: str, params: dict) -> dict:
        refresh = self._running(region, params)
        refresh.status = "Cancelling"
        return {"InstanceRefreshId": refresh.id}

    def _rollback(self, region: str, params: dict) -> dict:
        refresh = self._running(region, params)
        refresh.status, refresh.reason = "RollbackInProgress", "Rollback requested by the user"
        return {"InstanceRefreshId": refresh.id}
