"""Rolling a family's current version out to its Auto Scaling groups (issue 23): the plan, as data.

``plan(ctx, family)`` reads, in every managed account and configured region, which Auto Scaling groups run the
family (the reference model, bot.services.references: launch templates by id or name and version, mixed instances
policies and their overrides, launch configurations, templates resolving ``/amibot/<family>/current``; and the
images the groups' instances run), how many instances each has and how many already run the target — the family's
current version in that region (bot.services.versions: the promoted image, tag ``amibot:current`` and the SSM
parameter, else the newest launchable one) — and how each group would get it:

- ``pinned-template``: its template version names an image id. amibot creates a new version of that template with
  only ``ImageId`` changed and the refresh's ``DesiredConfiguration`` points the group at it (AWS applies it to the
  group when the refresh succeeds).
- ``ssm-template``: its template resolves the family's SSM parameter. A refresh without a desired configuration,
  and ``SkipMatching`` off: skip matching compares launch template versions and instance types, not the image a
  ``resolve:ssm:`` parameter resolves to, so with it on nothing would be replaced (AWS, "Use skip matching": "if
  you use an SSM parameter instead of an AMI ID for the ImageId property … skip matching does not replace instances
  that use the same launch template version").
- ``mixed-instances``: its ``MixedInstancesPolicy`` names the template (and overrides may name their own): the same
  new template versions, in a desired configuration that keeps the policy's overrides.
- ``launch-configuration``: not rolled — AWS deprecates launch configurations; listed with that reason.
- ``already-current``: every instance runs the target and its template names it: done, not refreshed.
- ``refresh-in-progress``: DescribeInstanceRefreshes shows one not finished: listed and skipped.
- ``skipped-by-config``: its name matches ``[rollout].skip_groups``.
- ``unknown``: something about it could not be read (its instances' images, its templates, its refreshes): never
  treated as current, never rolled.

The plan is data (``to_data``/``from_data`` round-trip it for a request's details); rendering is bot/render's, and
starting refreshes (``start_refresh``, ``start_groups``) is here too; the watch that follows them to their end,
status, cancel and rollback are bot.services.rollout_watch's.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.aws.clients import Aws, call, requires
from bot.core import authority, metrics
from bot.core.errors import AmibotError, AwsError, PolicyViolation
from bot.core.text import escape
from bot.durable import audit, jobs
from bot.durable.steps import DONE, FAILED, PLANNED, Step, Steps
from bot.durable.steps import SKIPPED as NOT_STARTED
from bot.services import approvals
from bot.services.images import Image, shares_of
from bot.services.references import GROUPS, INSTANCES, TEMPLATES, GroupRef, References, scan
from bot.services.versions import family_images, is_current, ordered_versions, parameter_name

if TYPE_CHECKING:  # only for annotations
    from bot.services.service_context import ServiceContext

log = logging.getLogger(__name__)

PINNED, SSM, MIXED = "pinned-template", "ssm-template", "mixed-instances"
LAUNCH_CONFIGURATION, CURRENT, IN_PROGRESS = "launch-configuration", "already-current", "refresh-in-progress"
SKIPPED, UNKNOWN, NOT_SHARED = "skipped-by-config", "unknown", "not-shared"
ROLLED = (PINNED, SSM, MIXED)  # the methods that start a refresh
METHODS = (*ROLLED, CURRENT, IN_PROGRESS, LAUNCH_CONFIGURATION, SKIPPED, NOT_SHARED, UNKNOWN)

# DescribeInstanceRefreshes statuses of a refresh that has not finished: a new one on the group would be refused
ACTIVE_REFRESH = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
MAX_REFRESH_PAGES = 10  # 50 refreshes a page: an active one is among the newest
LAUNCH_CONFIGURATION_REASON = ("launch configurations are not rolled (AWS deprecates them): move the group to a "
                               "launch template")


@dataclass(frozen=True)
class Source:
    """One launch template a group launches from: its own, its mixed instances policy's, or an override's."""

    path: str  # "launch template", "mixed instances policy", "override m5.large"
    template_id: str
    template_name: str
    version: str  # as the group says it: "4", "$Default", "$Latest"
    number: int | None  # the version that is: what a new version is made from
    image_id: str  # what it resolves to now
    via: str = ""  # the SSM parameter its ImageId resolves


@dataclass
class GroupPlan:
    account: str  # the managed account's id ("" single-account)
    account_label: str
    region: str
    group: str
    method: str
    instances: int | None  # None: unknown
    on_target: int | None
    target_image: str | None  # the family's current version in this region
    target_version: str = ""
    reason: str = ""  # why not rolled, or what could not be read
    sources: list[Source] = field(default_factory=list)
    refresh_id: str = ""  # the refresh already in progress
    # the group's MixedInstancesPolicy.LaunchTemplate as AWS listed it (its overrides), for the desired configuration
    mixed: dict | None = None
    running: list[str] = field(default_factory=list)  # the distinct images its instances run, where known

    @property
    def rolled(self) -> bool:
        return self.method in ROLLED

    @property
    def behind(self) -> int | None:
        return None if self.instances is None or self.on_target is None else self.instances - self.on_target


@dataclass
class RolloutPlan:
    family: str
    groups: list[GroupPlan] = field(default_factory=list)
    targets: dict[str, dict[str, str]] = field(default_factory=dict)  # region -> {"image_id", "version", "name"}
    failures: dict[str, str] = field(default_factory=dict)  # "account, region" -> why it could not be read

    def by_account(self) -> dict[str, list[GroupPlan]]:
        grouped: dict[str, list[GroupPlan]] = defaultdict(list)
        for group in self.groups:
            grouped[group.account_label].append(group)
        return dict(grouped)

    def of(self, method: str) -> list[GroupPlan]:
        return [group for group in self.groups if group.method == method]

    @property
    def to_roll(self) -> list[GroupPlan]:
        return [group for group in self.groups if group.rolled]

    @property
    def instances(self) -> int:
        return sum(group.instances or 0 for group in self.groups)

    @property
    def accounts(self) -> int:
        return len({group.account_label for group in self.groups})

    def totals(self) -> str:
        """ "12 groups, 140 instances, 5 accounts; 3 groups already current" """
        def count(number: int, word: str) -> str:
            return f"{number} {word}{'s' if number != 1 else ''}"
        line = f"{count(len(self.groups), 'group')}, {count(self.instances, 'instance')}, " \
               f"{count(self.accounts, 'account')}"
        current = len(self.of(CURRENT))
        if current:
            line += f"; {count(current, 'group')} already current"
        return line

    def to_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RolloutPlan:
        groups = [GroupPlan(**{**item, "sources": [Source(**source) for source in item.get("sources") or []]})
                  for item in data.get("groups") or []]
        return cls(data["family"], groups, dict(data.get("targets") or {}), dict(data.get("failures") or {}))


# --- the target: the family's current version per region --------------------------------------------------

def _launchable(image: Image, now: datetime) -> bool:
    return image.state == "available" and not (image.deprecation_time and image.deprecation_time <= now)


def current_by_region(images: list[Image], now: datetime, account_order: list[str]) -> dict[str, Image]:
    """Per region, the family's current version as `/ami versions` and drift judge it: the promoted (tagged)
    launchable image — the account listed first wins a tie — else the newest launchable one."""
    rank = {account: index for index, account in enumerate(account_order)}
    by_region: dict[str, list[Image]] = defaultdict(list)
    for image in images:
        by_region[image.region].append(image)
    current: dict[str, Image] = {}
    for region, members in by_region.items():
        launchable = [image for image in members if _launchable(image, now)]
        promoted = sorted((image for image in launchable if is_current(image)),
                          key=lambda image: rank.get(image.account, len(rank)))
        versions = ordered_versions(launchable)
        if promoted:
            current[region] = promoted[0]
        elif versions:
            current[region] = versions[0].image
    return current


# --- one account and region -------------------------------------------------------------------------------

@requires("autoscaling:DescribeInstanceRefreshes")
def refreshes(aws: Aws, region: str, group: str) -> list[dict]:
    """The group's instance refreshes, newest first (AWS keeps those of the last weeks)."""
    client = aws.client("autoscaling", region, max_attempts=1)  # an endpoint without the API answers 500: no retry
    found: list[dict] = []
    token: dict[str, str] = {}
    for _page in range(MAX_REFRESH_PAGES):  # botocore has no paginator for it: NextToken by hand
        answer = call(client, "describe_instance_refreshes", resource=f"Auto Scaling group {group}",
                      AutoScalingGroupName=group, **token)
        found += [item for item in answer.get("InstanceRefreshes") or [] if isinstance(item, dict)]
        if not answer.get("NextToken"):
            break
        token = {"NextToken": answer["NextToken"]}
    return found


def active_refresh(aws: Aws, region: str, group: str) -> dict | None:
    return next((item for item in refreshes(aws, region, group) if item.get("Status") in ACTIVE_REFRESH), None)


def text_of(value: Any) -> str:
    """A string AWS answered, or "" for anything else."""
    return value if isinstance(value, str) else ""


def _group_sources(refs: References) -> tuple[dict[str, list[Source]], dict[str, str], dict[str, str]]:
    """From the scan: each group's template sources; each instance's image; each launch-configured group's image."""
    sources: dict[str, list[Source]] = defaultdict(list)
    instance_images: dict[str, str] = {}
    configured: dict[str, str] = {}
    for image_id, usage in refs.by_image.items():
        for ref in usage.groups:
            sources[ref.name].append(_source(ref, image_id))
        for instance in usage.instances:
            instance_images[instance.id] = image_id
        for config in usage.launch_configs:
            for group in config.groups:
                configured[group] = image_id
    return sources, instance_images, configured


def _source(ref: GroupRef, image_id: str) -> Source:
    return Source(ref.path, ref.template_id, ref.template, ref.version, ref.number, image_id, ref.via)


def plan_place(aws: Aws, region: str, family: str, family_ids: set[str], target: Image | None,
               target_version: str, skip: list[str], only: set[str] | None = None
               ) -> tuple[list[GroupPlan], str | None]:
    """The plan of one account and region: every group there that runs the family; and, when some groups could not
    be told to run it or not (neither their configuration nor their instances' images could be read), what to say
    about them — for the plan's failures, never a silent omission."""
    refs = scan(aws, region)
    if GROUPS in refs.unknown and not refs.asgs:  # the groups themselves could not be listed
        raise AwsError(f"its Auto Scaling groups could not be read: {refs.unknown[GROUPS]}")
    sources, instance_images, configured = _group_sources(refs)
    label = aws.account.label if aws.account.id else ""
    plans, missed = [], []
    for group in refs.asgs:
        name = text_of(group.get("AutoScalingGroupName"))
        if not name or (only and name not in only):
            continue
        members = [item for item in group.get("Instances") or [] if isinstance(item, dict)]
        member_ids = [text_of(item.get("InstanceId")) for item in members]
        images = {instance: instance_images.get(instance) for instance in member_ids}
        group_sources = sources.get(name, [])
        runs = (any(source.image_id in family_ids for source in group_sources)
                or configured.get(name) in family_ids
                or any(image in family_ids for image in images.values())
                or any(source.via == parameter_name(family) for source in group_sources))
        if not runs:
            known_config = bool(group_sources) or name in configured
            known_instances = INSTANCES not in refs.unknown and all(images.values())
            if not (known_config or known_instances):
                missed.append(name)
            continue
        target_id = target.id if target else None
        plan = GroupPlan(aws.account.id, label, region, name, UNKNOWN, len(members),
                         sum(1 for image in images.values() if image and image == target_id), target_id,
                         target_version, sources=group_sources,
                         running=sorted({image for image in images.values() if image}))
        policy = group.get("MixedInstancesPolicy")
        if isinstance(policy, dict) and isinstance(policy.get("LaunchTemplate"), dict):
            plan.mixed = policy["LaunchTemplate"]
        plan.method, plan.reason = _method(aws, region, family, group, plan, images, refs, skip)
        if plan.method == UNKNOWN:
            log.warning("rollout plan of %s: group %s in %s: %s", family, name, region, plan.reason)
        plans.append(plan)
    if not missed:
        return plans, None
    why = "; ".join(f"{source}: {refs.unknown[source]}" for source in (INSTANCES, TEMPLATES, GROUPS)
                    if source in refs.unknown)
    return plans, (f"{len(missed)} Auto Scaling group{'s' if len(missed) != 1 else ''} could not be told to run "
                   f"{family} or not ({', '.join(sorted(missed)[:5])}{' …' if len(missed) > 5 else ''}): {why}")


def _method(aws: Aws, region: str, family: str, group: dict, plan: GroupPlan, images: dict[str, str | None],
            refs: References, skip: list[str]) -> tuple[str, str]:
    if any(fnmatch.fnmatchcase(plan.group, pattern) for pattern in skip):
        return SKIPPED, "[rollout].skip_groups: " + ", ".join(p for p in skip if fnmatch.fnmatchcase(plan.group, p))
    if text_of(group.get("LaunchConfigurationName")):
        return LAUNCH_CONFIGURATION, LAUNCH_CONFIGURATION_REASON
    if plan.target_image is None:
        return UNKNOWN, f"the family has no launchable version in {region}"
    if INSTANCES in refs.unknown:
        plan.on_target = None
        return UNKNOWN, f"its instances' images could not be read: {refs.unknown[INSTANCES]}"
    unread = [instance for instance, image in images.items() if not image]
    if unread:
        plan.on_target = None
        return UNKNOWN, f"the image of instance {', '.join(unread[:3])} could not be read"
    for source in (TEMPLATES, GROUPS):
        if source in refs.unknown:
            return UNKNOWN, f"its launch templates could not be read: {refs.unknown[source]}"
    if not plan.sources:
        return UNKNOWN, "its launch template could not be read, or names no image"
    ssm = parameter_name(family)
    vias = {source.via for source in plan.sources}
    if vias == {ssm}:
        method = SSM
    elif any(vias):
        return UNKNOWN, "its launch template resolves an SSM parameter amibot does not manage: " + \
            ", ".join(sorted(via for via in vias if via and via != ssm))
    else:
        method = MIXED if plan.mixed is not None else PINNED
    if plan.on_target == plan.instances and all(source.image_id == plan.target_image for source in plan.sources):
        return CURRENT, ""
    try:
        active = active_refresh(aws, region, plan.group)
    except AwsError as error:  # Unsupported too: an endpoint without instance refresh cannot roll it
        return UNKNOWN, f"whether a refresh is in progress is unknown: {error.message}"
    if active:
        plan.refresh_id = text_of(active.get("InstanceRefreshId"))
        return IN_PROGRESS, f"instance refresh {plan.refresh_id} is {text_of(active.get('Status'))}"
    return method, ""


# --- the whole plan --------------------------------------------------------------------------------------

def plan(ctx: ServiceContext, family: str, accounts: list | None = None, regions: list[str] | None = None,
         groups: list[str] | None = None) -> RolloutPlan:
    """The rollout plan of `family` across the managed accounts (or `accounts`) and configured regions (or
    `regions`), optionally only the named `groups`. An account-region that could not be read is in ``failures``,
    never left out silently."""
    # the family's images from every managed account (prod runs the bake account's images), the groups of `accounts`
    images, failures = family_images(ctx.aws, family, ctx.policy.digest.family_tag, regions)
    order = [account.id for account in ctx.aws.accounts] if ctx.aws.many else []
    targets = current_by_region(images, ctx.clock(), order)
    labels = {version.image.id: version.label for version in ordered_versions(images)}
    result = RolloutPlan(family, failures={where: error.message for where, error in failures.items()})
    for region, image in sorted(targets.items()):
        result.targets[region] = {"image_id": image.id, "version": labels.get(image.id, ""), "name": image.name}
    family_ids = {image.id for image in images}
    skip = list(ctx.policy.rollout.skip_groups)
    only = set(groups) if groups else None

    def read(handle: Aws, region: str) -> tuple[list[GroupPlan], str | None]:
        target = targets.get(region)
        return plan_place(handle, region, family, family_ids, target, labels.get(target.id, "") if target else "",
                          skip, only)

    for where, found in ctx.aws.each_target(read, ctx.aws.targets(accounts, regions)).items():
        if isinstance(found, AwsError):
            result.failures[where.label] = found.message
        else:
            result.groups += found[0]
            if found[1]:
                result.failures[where.label] = found[1]
    _check_launchable(ctx, result, targets)
    result.groups.sort(key=lambda g: (g.account_label, g.region, g.group))
    return result


def _check_launchable(ctx: ServiceContext, result: RolloutPlan, targets: dict[str, Image]) -> None:
    """A group in another account than the one owning its region's target can launch it only if the image is
    shared with it: otherwise every new instance would fail to launch (and AWS roll the refresh back) after the
    approval. Such a group is `not-shared`, with the command that fixes it; where the launch permissions cannot be
    read it is `unknown` — never assumed shared."""
    checked: dict[str, Any] = {}
    for group in result.groups:
        target = targets.get(group.region)
        if not group.rolled or target is None or not target.account or not group.account \
                or target.account == group.account:
            continue
        if target.id not in checked:
            try:
                checked[target.id] = shares_of(ctx.aws.of(target.account), target)
            except AwsError as error:
                checked[target.id] = error
        shares = checked[target.id]
        if isinstance(shares, AwsError):
            group.method = UNKNOWN
            group.reason = f"whether this account may launch {target.id} is unknown: {shares.message}"
        elif not (shares.public or group.account in shares.accounts or shares.organizations
                  or shares.organizational_units):  # an organisation or OU share: AWS decides membership
            group.method = NOT_SHARED
            group.reason = (f"{target.name or target.id} ({target.id}) is not shared with this account: "
                            f"`/ami share {target.id} {group.account}` first")


# --- what the next part starts ---------------------------------------------------------------------------

def desired_configuration(group: GroupPlan, new_versions: dict[str, int]) -> dict | None:
    """The refresh's DesiredConfiguration once amibot made `new_versions` (template id -> its new version): the
    group's template (or its mixed instances policy, overrides kept) at the new version. None for ssm-template
    groups: the template already resolves the new image."""
    if group.method == SSM:
        return None
    if group.method == PINNED:
        source = next(s for s in group.sources if s.path == "launch template")
        return {"LaunchTemplate": {"LaunchTemplateId": source.template_id,
                                   "Version": str(new_versions[source.template_id])}}
    if group.method == MIXED:
        mixed = dict(group.mixed or {})
        spec = dict(mixed.get("LaunchTemplateSpecification") or {})
        template_id = spec.get("LaunchTemplateId") or _id_of(group, spec.get("LaunchTemplateName"))
        mixed["LaunchTemplateSpecification"] = {"LaunchTemplateId": template_id,
                                                "Version": str(new_versions.get(template_id, spec.get("Version")))}
        overrides = []
        for override in mixed.get("Overrides") or []:
            override = dict(override)
            own = override.get("LaunchTemplateSpecification")
            if isinstance(own, dict):
                own_id = own.get("LaunchTemplateId") or _id_of(group, own.get("LaunchTemplateName"))
                override["LaunchTemplateSpecification"] = {"LaunchTemplateId": own_id,
                                                           "Version": str(new_versions.get(own_id, own.get("Version")))}
            overrides.append(override)
        mixed["Overrides"] = overrides
        return {"MixedInstancesPolicy": {"LaunchTemplate": mixed}}
    raise ValueError(f"group {group.group} is not rolled ({group.method})")


def _id_of(group: GroupPlan, name: str | None) -> str | None:
    return next((source.template_id for source in group.sources if source.template_name == name), None)


def preferences(group: GroupPlan, rollout, min_healthy: int | None = None, warmup: int | None = None,
                checkpoints: list[int] | None = None) -> dict[str, Any]:
    """StartInstanceRefresh's Preferences for one group from [rollout] (`rollout`) and the command's options."""
    chosen = {"MinHealthyPercentage": rollout.min_healthy_percentage if min_healthy is None else min_healthy,
              "InstanceWarmup": rollout.instance_warmup_seconds if warmup is None else warmup,
              # meaningful only where the desired configuration names a template version: for a template resolving
              # the SSM parameter, skip matching would compare versions, find them equal and replace nothing
              "SkipMatching": group.method != SSM}
    points = rollout.checkpoints if checkpoints is None else checkpoints
    if points:
        chosen["CheckpointPercentages"] = list(points)
        chosen["CheckpointDelay"] = rollout.checkpoint_delay_seconds
    if rollout.alarms:
        chosen["AlarmSpecification"] = {"Alarms": list(rollout.alarms)}
    chosen["AutoRollback"] = True
    return chosen


@requires("autoscaling:StartInstanceRefresh")
def start_refresh(aws: Aws, region: str, group: str, desired: dict | None, prefs: dict[str, Any],
                  notes: list[str] | None = None) -> str:
    """Start one group's instance refresh; its InstanceRefreshId. AutoRollback is asked for where the endpoint
    has it: an SDK model without it, or an endpoint refusing it (a validation error: nothing was started), gets
    the refresh without it — said in `notes`, never silently."""
    client = aws.client("autoscaling", region)
    kwargs: dict[str, Any] = {"AutoScalingGroupName": group, "Strategy": "Rolling", "Preferences": dict(prefs)}
    if desired:
        kwargs["DesiredConfiguration"] = desired
    if "AutoRollback" in prefs and "AutoRollback" not in _preference_names(client):
        del kwargs["Preferences"]["AutoRollback"]
        (notes if notes is not None else []).append(NO_AUTO_ROLLBACK)
    try:
        answer = call(client, "start_instance_refresh", resource=f"Auto Scaling group {group}", **kwargs)
    except AwsError as error:
        if "AutoRollback" not in kwargs["Preferences"] or "AutoRollback" not in error.message \
                or error.code not in ("ValidationError", "InvalidParameterValue", "InvalidParameterCombination"):
            raise
        del kwargs["Preferences"]["AutoRollback"]
        (notes if notes is not None else []).append(NO_AUTO_ROLLBACK)
        answer = call(client, "start_instance_refresh", resource=f"Auto Scaling group {group}", **kwargs)
    return answer["InstanceRefreshId"]


NO_AUTO_ROLLBACK = "without auto rollback (this AWS endpoint does not offer it)"


def _preference_names(client) -> set[str]:
    model = client.meta.service_model
    if "RefreshPreferences" not in model.shape_names:  # not this SDK's shape: send what was asked, AWS says
        return {"AutoRollback"}
    return set(model.shape_for("RefreshPreferences").members)


@requires("autoscaling:CancelInstanceRefresh")
def cancel_refresh(aws: Aws, region: str, group: str) -> str:
    return call(aws.client("autoscaling", region), "cancel_instance_refresh",
                AutoScalingGroupName=group)["InstanceRefreshId"]


@requires("autoscaling:RollbackInstanceRefresh")
def rollback_refresh(aws: Aws, region: str, group: str) -> str:
    return call(aws.client("autoscaling", region), "rollback_instance_refresh",
                AutoScalingGroupName=group)["InstanceRefreshId"]


@requires("ec2:CreateLaunchTemplateVersion")
def new_template_version(aws: Aws, region: str, source: Source, image_id: str, token: str,
                         description: str | None = None) -> int:
    """A new version of the source's template, from the version the group uses, with only ImageId changed;
    `token` (ClientToken) makes a repeat return the same version instead of a second one (where the endpoint
    honours it: `description` lets a caller find the version it made, where it does not)."""
    answer = call(aws.ec2(region), "create_launch_template_version", resource=f"launch template {source.template_name}",
                  LaunchTemplateId=source.template_id, SourceVersion=str(source.number),
                  LaunchTemplateData={"ImageId": image_id}, ClientToken=token,
                  VersionDescription=description or f"amibot rollout: ImageId {image_id}")
    return answer["LaunchTemplateVersion"]["VersionNumber"]


def version_described(aws: Aws, region: str, template_id: str, description: str) -> int | None:
    """The template's version carrying `description` (one amibot made before a crash), if any: a read."""
    answer = call(aws.ec2(region), "describe_launch_template_versions", resource=f"launch template {template_id}",
                  LaunchTemplateId=template_id)
    found = [item.get("VersionNumber") for item in answer.get("LaunchTemplateVersions") or []
             if isinstance(item, dict) and item.get("VersionDescription") == description]
    return max(found) if found else None


# --- the request: a plan, four eyes, then the refreshes (issue 23 §1, §3) ---------------------------------

KIND = "rollout"
DETAILS_VIEW = "rollout"
WATCH_JOB = "rollout.watch"
TEMPLATE_STEP, REFRESH_STEP, FINISH_STEP = "template_version", "start_refresh", "rollout_finished"
# DescribeInstanceRefreshes statuses after which nothing more happens to a refresh
TERMINAL = ("Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")
SUCCEEDED_REFRESH = ("Successful",)
WAITING = "Waiting"  # a group whose turn has not come ([rollout].max_parallel_groups are running)
ATTEMPT_SKEW = timedelta(minutes=2)  # AWS's StartTime against this host's clock, when adopting a refresh after a crash
WATCH_POLL_SECONDS = 60.0  # how often a rollout's refreshes are read, backing off ×1.5 while nothing changes
WATCH_MAX_POLL_SECONDS = 600.0
WATCH_DEADLINE_SECONDS = 3 * 24 * 3600.0  # the watch gives up (and says so) after three days


def group_key(group: GroupPlan) -> str:
    return f"{group.account}/{group.region}/{group.group}"


def nothing_to_roll(found: RolloutPlan) -> str:
    """Why no request was opened: what the plan found, in words."""
    if not found.groups:
        why = f"no Auto Scaling group runs {found.family}"
        if found.failures:
            why += " where it could be read (" + "; ".join(f"{k}: {v}" for k, v in found.failures.items()) + ")"
        return f"Nothing to roll out: {why}."
    states = ", ".join(f"{group.group}: {group.method}" + (f" ({group.reason})" if group.method == NOT_SHARED else "")
                       for group in found.groups[:8])
    return f"Nothing to roll out for {found.family} ({found.totals()}): {states}."


def options_of(min_healthy: int | None = None, warmup: int | None = None,
               checkpoints: list[int] | None = None) -> dict[str, Any]:
    return {"min_healthy": min_healthy, "warmup": warmup, "checkpoints": checkpoints}


def request_rollout(ctx, family: str, requester: str, channel: str, *, accounts: list | None = None,
                    regions: list[str] | None = None, groups: list[str] | None = None,
                    image_ids: list[str] | None = None, options: dict[str, Any] | None = None):
    """Plan the rollout of `family`'s current version and open ONE four-eyes request (kind "rollout") for it.

    `image_ids` narrows it to the groups still running (or launching) those images (a revocation's follow-up).
    Inside a user's action every account whose groups it would change is authorized first (its operators:
    bot.core.authority); the request acts in the first of them, whose approvers decide it. Raises
    PolicyViolation when there is nothing to roll (no request is opened)."""
    found = plan(ctx, family, accounts, regions, groups)
    if image_ids:
        wanted = set(image_ids)
        # the groups on those images, and those whose images could not be read (they may be on them)
        found.groups = [group for group in found.groups
                        if group.method == UNKNOWN or wanted & ({source.image_id for source in group.sources}
                                                                | set(group.running))]
    rolled = found.to_roll
    # The operators of every account whose groups it would (or, once readable, might) change decide first — before
    # "nothing to roll" too, so an answer about prod's groups goes only to those who may change them.
    asked = list(dict.fromkeys(group.account for group in found.groups if group.method not in (CURRENT, SKIPPED)))
    if authority.current() is not None:
        for account in asked:
            authority.authorize(ctx, account or None, f"/ami rollout {family}")
    if not rolled:
        raise PolicyViolation(nothing_to_roll(found))
    changed = list(dict.fromkeys(group.account for group in rolled))
    chosen = {**options_of(), **(options or {})}
    params = {"family": family, "account": changed[0], "accounts": changed, "options": chosen,
              "groups": [group_key(group) for group in rolled]}
    targets = ", ".join(sorted({f"{t.get('version') or t['image_id']}" for t in found.targets.values()}))
    request = approvals.create_request(
        ctx, kind=KIND, params=params, requester=requester, channel=channel,
        title=f"Roll {family} {targets} out to {len(rolled)} Auto Scaling group{'s' if len(rolled) != 1 else ''}",
        details={"view": DETAILS_VIEW, "plan": found.to_data(), "options": chosen, "progress": {}},
        reason=found.totals(), danger=False)
    by_method: dict[str, list[str]] = defaultdict(list)
    for group in found.groups:
        by_method[group.method].append(group.group)
    audit.record(ctx.store, actor=requester, action="rollout.plan", channel=request.channel, target=request.id,
                 outcome=found.totals(), detail={"family": family, "targets": found.targets, "groups": by_method,
                                                 "instances": found.instances, "accounts": changed,
                                                 "failures": found.failures})
    return request


def confirm_text(params: dict, details: Any = None) -> str:
    groups = params.get("groups") or []
    where = len(params.get("accounts") or [""])
    return (f"Replace the instances of {len(groups)} Auto Scaling group(s) of {params.get('family')} in {where} "
            "account(s) with ones on its current version (instance refresh)?")[:300]


def stored_plan(request) -> RolloutPlan:
    return RolloutPlan.from_data(request.details["plan"])


def _plan_steps(request, found: RolloutPlan) -> list:
    planned = []
    for group in found.to_roll:
        key = group_key(group)
        if group.method in (PINNED, MIXED):
            for template_id in dict.fromkeys(source.template_id for source in group.sources):
                planned.append(Step(TEMPLATE_STEP, f"{key}|{template_id}", {"group": key, "template_id": template_id}))
        planned.append(Step(REFRESH_STEP, key, {"group": key}))
    planned.append(Step(FINISH_STEP, request.id))
    return planned


def _start_group(ctx, request, steps, group: GroupPlan, mine: list) -> str:
    """One group: its new template versions (each recorded the moment AWS returns it, and never made twice: a
    version this rollout made before a crash is found by its description), then its refresh (one already in
    progress that this rollout started is adopted, never a second). Returns a phrase for the thread."""
    handle = ctx.aws.of(group.account or None)
    options = request.params.get("options") or {}
    versions: dict[str, int] = {}
    for step in mine:
        if step.action != TEMPLATE_STEP:
            continue
        if step.state == DONE:
            versions[step.data["template_id"]] = int(step.data["version"])
            continue
        source = next(s for s in group.sources if s.template_id == step.data["template_id"])
        description = f"amibot rollout {request.id} of {group.group}: ImageId {group.target_image}"
        number = version_described(handle, group.region, source.template_id, description)
        if number is None:
            number = new_template_version(handle, group.region, source, group.target_image or "",
                                          f"{request.id}-{group.group}-{source.template_id}"[:64], description)
        steps.mark(step, DONE, f"version {number}", version=number)
        versions[source.template_id] = number
    refresh = next(step for step in mine if step.action == REFRESH_STEP)
    if refresh.state != PLANNED:
        return f"{group.group}: refresh {refresh.data.get('refresh_id', '')} already started"
    attempted = refresh.data.get("attempted")
    if not attempted and not steps.claim_data(refresh, "attempted", datetime.now(UTC).isoformat()):
        return f"{group.group}: being started by another amibot process"  # it claimed the start first
    known = refreshes(handle, group.region, group.group)
    active = next((item for item in known if item.get("Status") in ACTIVE_REFRESH), None)
    if attempted:  # a crash came between StartInstanceRefresh and its record: the one it started is adopted
        since = datetime.fromisoformat(attempted) - ATTEMPT_SKEW
        ours = next((item for item in known if isinstance(item.get("StartTime"), datetime)
                     and item["StartTime"] >= since), None)
        if ours is not None:
            refresh_id = text_of(ours.get("InstanceRefreshId"))
            steps.mark(refresh, DONE, "adopted", refresh_id=refresh_id, status=text_of(ours.get("Status")))
            return f"{group.group}: refresh {refresh_id} (started before a restart) adopted"
    if active is not None:
        refresh_id = text_of(active.get("InstanceRefreshId"))
        steps.mark(refresh, FAILED, f"an instance refresh not started by this rollout is in progress ({refresh_id})")
        return f"{group.group}: not started, refresh {refresh_id} (not this rollout's) is in progress"
    if attempted:  # this start's own moment, for an adoption after a crash
        steps.mark(refresh, PLANNED, None, attempted=datetime.now(UTC).isoformat())
    prefs = preferences(group, ctx.policy.rollout, options.get("min_healthy"), options.get("warmup"),
                        options.get("checkpoints"))
    notes: list[str] = []
    refresh_id = start_refresh(handle, group.region, group.group, desired_configuration(group, versions), prefs,
                               notes)
    steps.mark(refresh, DONE, "started", refresh_id=refresh_id, status="Pending",
               checkpoints=list(prefs.get("CheckpointPercentages") or []),
               checkpoint_delay=prefs.get("CheckpointDelay"))
    audit_row(ctx, request, "rollout.start", f"started {refresh_id}", group=group.group, region=group.region,
              account=group.account, refresh_id=refresh_id, **({"notes": notes} if notes else {}))
    return f"{group.group}: refresh started" + "".join(f" {note}" for note in notes)


def audit_row(ctx, request, action: str, outcome: str, **detail: Any) -> None:
    """An audit row of this rollout request (actor amibot)."""
    audit.record(ctx.store, actor="amibot", action=action, channel=request.channel, target=request.id,
                 outcome=outcome, detail={"family": request.params.get("family"), **detail})


# One starter at a time in this process (the approval's execution, a restart's reconcile, the watch starting the
# next group, a cancel marking the waiting ones): each re-reads the steps inside it, so none starts a group twice
# nor more than [rollout].max_parallel_groups at once.
STARTERS = threading.Lock()
NEVER_STARTED = "never started: the rollout was stopped before its turn"


def parallel_limit(ctx) -> int:
    return max(1, int(ctx.policy.rollout.max_parallel_groups))


def _running(recorded: list[Step]) -> int:
    """Refreshes started (or maybe started: a crash came between the call and its record) and not yet seen
    terminal."""
    return sum(1 for step in recorded if step.action == REFRESH_STEP and (
        (step.state == DONE and step.data.get("status") not in TERMINAL)
        or (step.state == PLANNED and step.data.get("attempted"))))


def start_groups(ctx, request, progress=None, report_waiting: bool = True) -> list[str]:
    """Start the refreshes of the groups not yet started, at most [rollout].max_parallel_groups running at once
    (the watch starts the next ones as running ones end); one a crash left half-started goes first (adopted or
    started: it holds a slot already). What each did, as phrases (and, `report_waiting`, which wait)."""
    with STARTERS:
        steps = Steps(ctx.store, f"request:{request.id}")
        recorded = steps.all()
        found = stored_plan(request)
        if not recorded:  # the plan is durable before the first AWS call
            recorded = steps.plan(_plan_steps(request, found))
        limit = parallel_limit(ctx)
        refresh_of = {step.data.get("group"): step for step in recorded if step.action == REFRESH_STEP}
        order = sorted(found.to_roll, key=lambda group: not refresh_of[group_key(group)].data.get("attempted"))
        said = []
        for group in order:
            key = group_key(group)
            refresh = refresh_of[key]
            if refresh.state != PLANNED:
                continue
            running = _running(steps.all())
            if not refresh.data.get("attempted") and running >= limit:
                if report_waiting:
                    said.append(f"{group.group}: waiting ({running} of {limit} groups running)")
                continue
            mine = [step for step in steps.all() if step.data.get("group") == key]
            try:
                said.append(_start_group(ctx, request, steps, group, mine))
            except AmibotError as error:
                steps.mark(next(step for step in mine if step.action == REFRESH_STEP), FAILED, error.message)
                said.append(f"{group.group}: could not start ({error.message})")
            if progress is not None:
                progress(":arrows_counterclockwise: " + escape(said[-1]))
        return said


def stop_waiting(ctx, request) -> list[GroupPlan]:
    """The groups whose turn has not come yet, marked never to be started (a cancel or rollback of the rollout)."""
    groups = {group_key(group): group for group in stored_plan(request).to_roll}
    stopped = []
    with STARTERS:
        steps = Steps(ctx.store, f"request:{request.id}")
        for step in steps.all():
            if step.action == REFRESH_STEP and step.state == PLANNED and not step.data.get("attempted") \
                    and step.target in groups and steps.claim(step, NOT_STARTED, NEVER_STARTED):
                stopped.append(groups[step.target])
    return stopped


def execute(ctx, request, progress) -> str:
    """The approved rollout: the plan as durable steps, each group's template version and refresh, then the watch."""
    said = start_groups(ctx, request, progress)  # in every account of params["accounts"] (the engine authorizes them)
    metrics.rollout_counted(ctx, "started")
    ctx.jobs.submit(WATCH_JOB, {"request_id": request.id}, dedupe_key=f"rollout-watch:{request.id}")
    return f"Started the rollout of {request.params.get('family')}: " + "; ".join(said) + ". Watching it here."


def reconcile(ctx, request):
    """After a restart mid-execution: start (once) what was not started, and watch again."""
    if not Steps(ctx.store, f"request:{request.id}").all():
        return None  # nothing was done: it may be approved again
    said = start_groups(ctx, request)
    if not jobs.is_active(ctx.store, WATCH_JOB, {"request_id": request.id}):
        ctx.jobs.submit(WATCH_JOB, {"request_id": request.id})
    return approvals.Reconciled(approvals.SUCCEEDED, "Resumed after a restart: " + "; ".join(said) + ".")
