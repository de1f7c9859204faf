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
starting refreshes (``start_refresh``) is the next part's.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.aws.clients import Aws, call, requires
from bot.core.errors import AwsError
from bot.services.images import Image
from bot.services.references import GROUPS, INSTANCES, TEMPLATES, GroupRef, References, scan
from bot.services.versions import family_images, is_current, ordered_versions, parameter_name

if TYPE_CHECKING:  # only for annotations
    from bot.services.service_context import ServiceContext

log = logging.getLogger(__name__)

PINNED, SSM, MIXED = "pinned-template", "ssm-template", "mixed-instances"
LAUNCH_CONFIGURATION, CURRENT, IN_PROGRESS = "launch-configuration", "already-current", "refresh-in-progress"
SKIPPED, UNKNOWN = "skipped-by-config", "unknown"
ROLLED = (PINNED, SSM, MIXED)  # the methods that start a refresh
METHODS = (*ROLLED, CURRENT, IN_PROGRESS, LAUNCH_CONFIGURATION, SKIPPED, UNKNOWN)

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


def _text(value: Any) -> str:
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
        name = _text(group.get("AutoScalingGroupName"))
        if not name or (only and name not in only):
            continue
        members = [item for item in group.get("Instances") or [] if isinstance(item, dict)]
        member_ids = [_text(item.get("InstanceId")) for item in members]
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
                         target_version, sources=group_sources)
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
    if _text(group.get("LaunchConfigurationName")):
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
        plan.refresh_id = _text(active.get("InstanceRefreshId"))
        return IN_PROGRESS, f"instance refresh {plan.refresh_id} is {_text(active.get('Status'))}"
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
    result.groups.sort(key=lambda g: (g.account_label, g.region, g.group))
    return result


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
def start_refresh(aws: Aws, region: str, group: str, desired: dict | None, prefs: dict[str, Any]) -> str:
    """Start one group's instance refresh; its InstanceRefreshId."""
    kwargs: dict[str, Any] = {"AutoScalingGroupName": group, "Strategy": "Rolling", "Preferences": prefs}
    if desired:
        kwargs["DesiredConfiguration"] = desired
    return call(aws.client("autoscaling", region), "start_instance_refresh", resource=f"Auto Scaling group {group}",
                **kwargs)["InstanceRefreshId"]


@requires("autoscaling:CancelInstanceRefresh")
def cancel_refresh(aws: Aws, region: str, group: str) -> str:
    return call(aws.client("autoscaling", region), "cancel_instance_refresh",
                AutoScalingGroupName=group)["InstanceRefreshId"]


@requires("autoscaling:RollbackInstanceRefresh")
def rollback_refresh(aws: Aws, region: str, group: str) -> str:
    return call(aws.client("autoscaling", region), "rollback_instance_refresh",
                AutoScalingGroupName=group)["InstanceRefreshId"]


@requires("ec2:CreateLaunchTemplateVersion")
def new_template_version(aws: Aws, region: str, source: Source, image_id: str, token: str) -> int:
    """A new version of the source's template, from the version the group uses, with only ImageId changed;
    `token` (ClientToken) makes a repeat return the same version instead of a second one."""
    answer = call(aws.ec2(region), "create_launch_template_version", resource=f"launch template {source.template_name}",
                  LaunchTemplateId=source.template_id, SourceVersion=str(source.number),
                  LaunchTemplateData={"ImageId": image_id}, ClientToken=token,
                  VersionDescription=f"amibot rollout: ImageId {image_id}")
    return answer["LaunchTemplateVersion"]["VersionNumber"]
