"""A believable AMI fleet for `amibot demo`, built in moto (never in a real account).

Three families (web, api, batch) with several versions each, baked from builder instances and
backdated so the digest has something to say: some promoted, some stale, one disabled; instances and
launch templates using some images; one image shared with a partner account; copies in a second
region; and orphaned snapshots left by images that were deregistered without them. Some instances drift:
they run older versions, one an image deregistered since. The parts moto lacks come from the demo's
emulation (bot.devtools.emulation): a Recycle Bin rule for images and one for snapshots at home (so a
deregistration there can be undone), Inspector findings on the older versions, Allowed AMIs in audit mode.
A second account, prod (the bot assumes a role there), runs web images shared with it from home: an Auto Scaling
group on a launch template still on an older version, and a canary on the current one (``build_prod``). Home has
Auto Scaling groups of web too, one pinning an image id, one resolving web's SSM parameter (``build_groups``), so
`/ami rollout web` has something to roll in each account.

The fleet is data (FAMILIES, RUNNING, …) so the story can change without touching the code.
Everything goes through the app's own ``Aws`` (the one client factory), pointed at moto by the demo;
only the creation dates are set through moto's backend, as AWS has no API to age an image, and the
findings straight into the emulation, as only Inspector's scans make them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.aws.clients import Aws, AwsAccounts, call, paginate
from bot.core.errors import NotFound, UsageError
from bot.services.images import describe_own_images, find_images

log = logging.getLogger(__name__)

HOME = "us-east-1"
AWAY = "eu-west-1"
PARTNER_ACCOUNT = "111122223333"
BASE_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
PROMOTED_BY = "U0ALICE"

# family -> (team, [(version, age in days), …] oldest first); images are named "<family>-<version>"
FAMILIES: dict[str, tuple[str, list[tuple[str, int]]]] = {
    "web": ("frontend", [("1.0.0", 420), ("1.1.0", 250), ("1.2.0", 130), ("1.3.0", 40), ("1.4.0", 6)]),
    "api": ("backend", [("1.9.0", 510), ("2.0.0", 310), ("2.1.0", 160), ("2.2.0", 21)]),
    "batch": ("data", [("6", 400), ("7", 260), ("8", 95), ("9", 12)]),
}
PROMOTED = ["web-1.3.0", "api-2.2.0"]  # their family's current version (batch has none yet)
DISABLED = ["batch-6"]  # nobody can launch it any more: ready to deregister
RUNNING = {"web-prod-1": "web-1.2.0", "web-prod-2": "web-1.3.0", "api-prod-1": "api-2.2.0",
           "batch-worker-1": "batch-9",
           "web-prod-3": "web-1.1.0", "api-prod-2": "api-2.1.0"}  # the last two drift: older versions
TEMPLATES = {"web-asg": "web-1.3.0", "api-legacy": "api-2.0.0"}
SHARED = {"web-1.3.0": PARTNER_ACCOUNT}
COPIED_AWAY = ["web-1.3.0", "api-2.2.0", "api-2.0.0"]  # also in eu-west-1, same age
# images that existed once: deregistered, their snapshots left behind (region, name, age in days)
DEREGISTERED = [(HOME, "web-0.9.0", 610), (AWAY, "api-1.8.0", 700)]
ON_GONE = {"web-legacy-1": "web-0.9.0"}  # launched before its image was deregistered: drift on a gone image
RECYCLE_BIN_DAYS = 14  # rules (images, snapshots) at HOME, made after the seeding: deregistering there is undoable
IN_BIN = ("web-0.8.0", 700, 11)  # deregistered 11 days ago with its snapshot, under the rule: leaves the bin soon
# Allowed AMIs at home, in audit mode (flags, never blocks): Amazon's images, and our own up to a year old
ALLOWED_STATE, ALLOWED_MAX_DAYS = "audit-mode", 365

# Baking (bot.devtools.bake_emulation emulates Image Builder and SSM Automation, which moto lacks): web's next
# version comes from an Image Builder pipeline whose recipe builds on web's current image, copied to AWAY; api's
# from AWS's patch runbook run on api's current version.
PIPELINES = {"web": "web"}  # family -> pipeline name, in HOME
RUNBOOK, RUNBOOK_FAMILY = "AWS-UpdateLinuxAmi", "api"

# A second managed account: the bot runs in HOME_NAME (moto's default account, where the images are baked) and
# assumes a role in prod, a workload account that runs web images shared with it from home.
HOME_NAME = "platform"
PROD_ACCOUNT, PROD_NAME = "222233334444", "prod"
PROD_REGIONS = [HOME]  # prod works in one region only
PROD_SHARED = ["web-1.2.0", "web-1.3.0"]  # shared with prod (launch permission)
# Auto Scaling group -> (its launch template, the image, instances): still on an older version, so it drifts and
# deregistering that image from home would break it
PROD_GROUPS = {"storefront": ("storefront-web", "web-1.2.0", 2)}
PROD_RUNNING = {"storefront-canary": "web-1.3.0"}  # on the current version
# Auto Scaling groups at home, for `/ami rollout web` (bot.devtools.refresh_emulation emulates the instance refresh
# moto lacks): group -> (launch template, the image its template names — a name, or the family's SSM parameter as
# "resolve:ssm:…" — the image its instances run, instances). One of each way a group gets its image from a template:
# a version pinning an image id (TEMPLATES' web-asg), and one resolving web's current version at each launch.
SSM_CURRENT = "resolve:ssm:/amibot/web/current"
HOME_GROUPS = {"web-fleet": ("web-asg", "web-1.3.0", "web-1.3.0", 2),
               "web-edge": ("web-edge", SSM_CURRENT, "web-1.3.0", 1)}


def _finding(cve: str, package: str, severity: str, score: float, fix: bool = True) -> dict:
    return {"Title": f"{cve} - {package}", "SeverityLabel": severity, "Score": score, "FixAvailable": fix}


_CURL = _finding("CVE-2023-38545", "curl, libcurl", "CRITICAL", 9.8)
_XZ = _finding("CVE-2024-3094", "xz, xz-libs", "CRITICAL", 10.0)
_SSH = _finding("CVE-2024-6387", "openssh, openssh-server", "HIGH", 8.1)
_GLIBC = _finding("CVE-2023-4911", "glibc", "HIGH", 7.8)
_HTTP2 = _finding("CVE-2023-44487", "nghttp2", "HIGH", 7.5)
_OPENSSL = _finding("CVE-2024-2511", "openssl-libs", "MEDIUM", 5.9)
_SUDO = _finding("CVE-2023-28486", "sudo", "LOW", 3.3, fix=False)
# Inspector's findings per image (none on the current versions): the older the version, the worse
FINDINGS = {
    "web-1.0.0": [_XZ, _CURL, _SSH, _GLIBC, _HTTP2, _OPENSSL], "web-1.1.0": [_CURL, _SSH, _HTTP2, _OPENSSL],
    "web-1.2.0": [_SSH, _OPENSSL], "api-1.9.0": [_XZ, _CURL, _GLIBC], "api-2.0.0": [_CURL, _OPENSSL],
    "api-2.1.0": [_OPENSSL, _SUDO], "batch-6": [_GLIBC, _OPENSSL], "batch-7": [_GLIBC], "batch-8": [_SUDO],
}

# What Inspector finds when it scans a newly baked image (the emulation's scan): one low finding without a fix
SCANNED_CLEAN = [_SUDO]


@dataclass
class Fleet:
    """What was built, for the banner: names and ids by region."""

    account_id: str
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # region -> name -> image id
    builders: dict[str, str] = field(default_factory=dict)  # name -> instance id
    promoted: list[str] = field(default_factory=list)
    orphaned_snapshots: list[str] = field(default_factory=list)

    def image_id(self, name: str, region: str = HOME) -> str:
        return self.images[region][name]


def build(aws: Aws, backdate: Callable[[str, str, datetime], None], now: datetime | None = None,
          findings: Callable[[str, str, list[dict]], None] | None = None,
          binned: Callable[[str, str, datetime], None] | None = None) -> Fleet:
    """Create the fleet in the account behind ``aws`` (moto). ``backdate(region, image_id, created)`` ages
    an image (and its snapshots) — the demo passes one that sets moto's creation dates;
    ``findings(region, image_id, findings)`` gives an image Inspector's findings and ``binned(region, id, when)``
    says when something entered the Recycle Bin (both from the demo's emulation; without them, no findings and
    no image already in the bin)."""
    now = now or datetime.now(UTC)
    fleet = Fleet(aws.account_id(), images={HOME: {}, AWAY: {}})
    base = _base_image(aws, HOME)
    for family, (team, versions) in FAMILIES.items():
        builder = _instance(aws, HOME, base, f"{family}-builder")
        fleet.builders[f"{family}-builder"] = builder
        for version, age in versions:
            name = f"{family}-{version}"
            image_id = _bake(aws, HOME, builder, name, family, version, team)
            backdate(HOME, image_id, now - timedelta(days=age))
            fleet.images[HOME][name] = image_id
    for region, name, age in DEREGISTERED:
        source = fleet.builders[f"{name.split('-')[0]}-builder"] if region == HOME else base
        fleet.orphaned_snapshots += _leave_orphan(aws, region, source, name, now - timedelta(days=age), backdate)
    for name in COPIED_AWAY:
        fleet.images[AWAY][name] = _copy(aws, fleet.image_id(name), name, now - timedelta(days=_age_of(name)),
                                         backdate)
    for name in DISABLED:
        call(aws.ec2(HOME), "disable_image", resource=f"AMI {name}", ImageId=fleet.image_id(name))
    for name, image in RUNNING.items():
        _instance(aws, HOME, fleet.image_id(image), name)
    for name, image in TEMPLATES.items():
        call(aws.ec2(HOME), "create_launch_template", LaunchTemplateName=name,
             LaunchTemplateData={"ImageId": fleet.image_id(image), "InstanceType": "t3.small"})
    for name, account in SHARED.items():
        call(aws.ec2(HOME), "modify_image_attribute", resource=f"AMI {name}", ImageId=fleet.image_id(name),
             LaunchPermission={"Add": [{"UserId": account}]})
    if findings is not None:
        for name, found in FINDINGS.items():
            findings(HOME, fleet.image_id(name), found)
    _recycle_bin_rules(aws, HOME)
    if binned is not None:
        _in_bin(aws, fleet, now, backdate, binned)
    _allowed_images(aws, HOME, fleet.account_id)
    return fleet


def build_prod(home: Aws, prod: Aws, fleet: Fleet, shared_launches: Callable[[], AbstractContextManager]) -> None:
    """prod's side: PROD_SHARED shared with it from ``home``, its Auto Scaling groups (on launch templates) and
    instances running them. ``shared_launches()`` is a context in which moto launches another account's image
    (AWS launches a shared image; moto looks in the launching account's own images only)."""
    for name in PROD_SHARED:
        call(home.ec2(HOME), "modify_image_attribute", resource=f"AMI {name}", ImageId=fleet.image_id(name),
             LaunchPermission={"Add": [{"UserId": PROD_ACCOUNT}]})
    subnet = call(prod.ec2(HOME), "describe_subnets")["Subnets"][0]["SubnetId"]
    with shared_launches():
        for group, (template, image, count) in PROD_GROUPS.items():
            template_id = call(prod.ec2(HOME), "create_launch_template", LaunchTemplateName=template,
                               LaunchTemplateData={"ImageId": fleet.image_id(image), "InstanceType": "t3.small"}
                               )["LaunchTemplate"]["LaunchTemplateId"]
            call(prod.client("autoscaling", HOME), "create_auto_scaling_group", AutoScalingGroupName=group,
                 MinSize=count, MaxSize=count * 2, DesiredCapacity=count, VPCZoneIdentifier=subnet,
                 LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Default"},
                 Tags=[{"Key": "Name", "Value": group, "PropagateAtLaunch": True}])
        for name, image in PROD_RUNNING.items():
            _instance(prod, HOME, fleet.image_id(image), name)


def build_groups(aws: Aws, fleet: Fleet) -> None:
    """HOME_GROUPS in the bot's own account, after the promotion (a template resolving web's SSM parameter needs it):
    each group's instances are run on their image and attached (moto would launch a `resolve:ssm:` id as is)."""
    templates = {template["LaunchTemplateName"]: template["LaunchTemplateId"]
                 for template in call(aws.ec2(HOME), "describe_launch_templates")["LaunchTemplates"]}
    subnet = call(aws.ec2(HOME), "describe_subnets")["Subnets"][0]["SubnetId"]
    autoscaling = aws.client("autoscaling", HOME)
    for group, (template, image, running, count) in HOME_GROUPS.items():
        if template not in templates:
            named = image if image.startswith("resolve:ssm:") else fleet.image_id(image)
            templates[template] = call(aws.ec2(HOME), "create_launch_template", LaunchTemplateName=template,
                                       LaunchTemplateData={"ImageId": named, "InstanceType": "t3.small"}
                                       )["LaunchTemplate"]["LaunchTemplateId"]
        call(autoscaling, "create_auto_scaling_group", AutoScalingGroupName=group, MinSize=0, MaxSize=count * 2,
             DesiredCapacity=0, VPCZoneIdentifier=subnet,
             LaunchTemplate={"LaunchTemplateId": templates[template], "Version": "$Default"})
        instances = [_instance(aws, HOME, fleet.image_id(running), group) for _ in range(count)]
        call(autoscaling, "attach_instances", AutoScalingGroupName=group, InstanceIds=instances)


def pipeline_arn(account_id: str, name: str) -> str:
    """The ARN of the pipeline ``name`` in HOME (as the emulation names it): the policy needs it before the fleet
    exists, the pipeline needs the fleet's images."""
    return f"arn:aws:imagebuilder:{HOME}:{account_id}:image-pipeline/{name}"


def bakes(account_id: str) -> list[dict]:
    """The demo policy's [[bakes]]: web from its pipeline (a promotion request when done), api from the runbook."""
    return [*({"family": family, "pipeline": pipeline_arn(account_id, name), "copy_to": [AWAY], "promote": "approval"}
              for family, name in PIPELINES.items()),
            {"family": RUNBOOK_FAMILY, "automation": RUNBOOK,
             "parameters": {"IamInstanceProfileName": "ManagedInstanceProfile",
                            "AutomationAssumeRole": f"arn:aws:iam::{account_id}:role/AutomationServiceRole"}}]


def add_pipelines(add_pipeline: Callable[[str, str, str], str], fleet: Fleet) -> list[str]:
    """Image Builder's pipelines (``add_pipeline(region, name, parent image)``, the demo's emulation), each
    building on its family's current version; returns their ARNs."""
    arns = []
    for family, name in PIPELINES.items():
        current = next(image for image in PROMOTED if image.startswith(f"{family}-"))
        arn = add_pipeline(HOME, name, fleet.image_id(current))
        if arn != pipeline_arn(fleet.account_id, name):
            raise RuntimeError(f"the pipeline {name} is {arn}, not the ARN the policy names")
        arns.append(arn)
    return arns


def promote(ctx, fleet: Fleet) -> list[str]:
    """Make PROMOTED their families' current versions through the bot's own service (tag, SSM parameter,
    promotions table), when that service exists in this build."""
    try:
        from bot.services import versions
    except ImportError:
        return []
    for name in PROMOTED:
        image = describe_own_images(ctx.aws.home, HOME, ctx.policy.digest.family_tag,
                                    image_id=[fleet.image_id(name)])[0]
        versions.promote(ctx, image, PROMOTED_BY)
        fleet.promoted.append(name)
    return fleet.promoted


def resolve(aws: AwsAccounts, family_tag: str, ref: str, built: Fleet | None = None) -> str:
    """The id of the image or instance named ``ref`` ("name" or "name@region"); the first configured
    region that has it wins. An image of the seeded fleet that is gone (deregistered, perhaps in the Recycle
    Bin) keeps the id it was built with, so `/ami restore {web-1.0.0}` works. Raises LookupError saying what
    is missing. A version named otherwise (Image Builder names its images "web 2026-12-07T10-00-00Z") is found as
    "<family>-<version>" too, from its family and version tags: `{web-1.5.1}` after the pipeline baked it."""
    name, _, region = ref.partition("@")
    regions = [region] if region else aws.regions
    for where in regions:
        images = [image for image in _images_named(aws, family_tag, name, where) if image.state != "deregistered"]
        images = images or _images_versioned(aws, family_tag, name, where)
        if images:
            return images[0].id
        for handle in aws.handles():  # an instance in any managed account that works in that region
            instances = _instances_named(handle, where, name) if where in handle.regions else []
            if instances:
                return instances[0]
    for where in regions:
        if built is not None and name in built.images.get(where, {}):
            return built.images[where][name]
    raise LookupError(f"no image or instance called {name!r} in {', '.join(regions)}")


# --- building blocks --------------------------------------------------------------------------------------

def _base_image(aws: Aws, region: str) -> str:
    """AWS's current Amazon Linux 2023 (moto serves the public parameter and image)."""
    response = call(aws.client("ssm", region), "get_parameter", Name=BASE_IMAGE_PARAMETER)
    return response["Parameter"]["Value"]


def _instance(aws: Aws, region: str, image_id: str, name: str) -> str:
    response = call(aws.ec2(region), "run_instances", resource=f"AMI {image_id}", ImageId=image_id, MinCount=1,
                    MaxCount=1, InstanceType="t3.small",
                    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}])
    return response["Instances"][0]["InstanceId"]


def _bake(aws: Aws, region: str, instance_id: str, name: str, family: str, version: str, team: str) -> str:
    tags = {"Name": name, "Family": family, "Version": version, "Team": team}
    response = call(aws.ec2(region), "create_image", resource=f"instance {instance_id}", InstanceId=instance_id,
                    Name=name, Description=f"{family} {version}, baked from {family}-builder", NoReboot=True,
                    TagSpecifications=[{"ResourceType": "image",
                                        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}])
    return response["ImageId"]


def _copy(aws: Aws, source_id: str, name: str, created: datetime,
          backdate: Callable[[str, str, datetime], None]) -> str:
    image_id = call(aws.ec2(AWAY), "copy_image", resource=f"AMI {source_id}", SourceImageId=source_id,
                    SourceRegion=HOME, Name=name, Description=f"{name}, copied from {HOME}")["ImageId"]
    source = describe_own_images(aws, HOME, "Family", image_id=[source_id])[0]
    # copy_image does not carry tags (moto ignores CopyImageTags): tag the copy as the bot's copy does
    call(aws.ec2(AWAY), "create_tags", resource=f"AMI {image_id}", Resources=[image_id],
         Tags=[{"Key": key, "Value": value} for key, value in source.tags.items()])
    backdate(AWAY, image_id, created)
    return image_id


def _leave_orphan(aws: Aws, region: str, source: str, name: str, created: datetime,
                  backdate: Callable[[str, str, datetime], None]) -> list[str]:
    """Bake an image (at home from a builder instance ``source``; away as a copy of the image ``source``),
    deregister it and keep its snapshots, as a careless cleanup would."""
    family, _, version = name.partition("-")
    if region == HOME:
        image_id = _bake(aws, region, source, name, family, version, FAMILIES[family][0])
    else:
        image_id = call(aws.ec2(region), "copy_image", resource=f"AMI {source}", SourceImageId=source,
                        SourceRegion=HOME, Name=name)["ImageId"]
    backdate(region, image_id, created)
    image = describe_own_images(aws, region, "Family", image_id=[image_id])[0]
    for instance, image_name in ON_GONE.items():
        if image_name == name:
            _instance(aws, region, image_id, instance)
    call(aws.ec2(region), "deregister_image", resource=f"AMI {image_id}", ImageId=image_id)
    return list(image.snapshot_ids)


def _recycle_bin_rules(aws: Aws, region: str) -> None:
    """Region-level retention rules: every image deregistered (and snapshot deleted) here stays restorable."""
    for resource_type in ("EC2_IMAGE", "EBS_SNAPSHOT"):
        call(aws.client("rbin", region), "create_rule", ResourceType=resource_type,
             RetentionPeriod={"RetentionPeriodValue": RECYCLE_BIN_DAYS, "RetentionPeriodUnit": "DAYS"},
             Description=f"demo: deregistered images and their snapshots stay {RECYCLE_BIN_DAYS} days")


def _in_bin(aws: Aws, fleet: Fleet, now: datetime, backdate: Callable[[str, str, datetime], None],
            binned: Callable[[str, str, datetime], None]) -> None:
    """An old image retired (with its snapshot) under the rule some days ago: in the bin, leaving it soon."""
    name, age, days_ago = IN_BIN
    family, _, version = name.partition("-")
    image_id = _bake(aws, HOME, fleet.builders[f"{family}-builder"], name, family, version, FAMILIES[family][0])
    backdate(HOME, image_id, now - timedelta(days=age))
    image = describe_own_images(aws, HOME, "Family", image_id=[image_id])[0]
    call(aws.ec2(HOME), "deregister_image", resource=f"AMI {image_id}", ImageId=image_id)
    for snapshot_id in image.snapshot_ids:
        call(aws.ec2(HOME), "delete_snapshot", resource=f"snapshot {snapshot_id}", SnapshotId=snapshot_id)
        binned(HOME, snapshot_id, now - timedelta(days=days_ago))
    binned(HOME, image_id, now - timedelta(days=days_ago))
    fleet.images[HOME][name] = image_id


def _allowed_images(aws: Aws, region: str, account_id: str) -> None:
    criteria = [{"ImageProviders": ["amazon"]},
                {"ImageProviders": [account_id],
                 "CreationDateCondition": {"MaximumDaysSinceCreated": ALLOWED_MAX_DAYS}}]
    call(aws.ec2(region), "replace_image_criteria_in_allowed_images_settings", ImageCriteria=criteria)
    call(aws.ec2(region), "enable_allowed_images_settings", AllowedImagesSettingsState=ALLOWED_STATE)


def _age_of(name: str) -> int:
    family, _, version = name.partition("-")
    return dict(FAMILIES[family][1])[version]


def _images_named(aws: AwsAccounts, family_tag: str, name: str, region: str):
    try:
        return find_images(aws, name, family_tag, [region])
    except (NotFound, UsageError):  # not an image name (an instance's, perhaps)
        return []


def _images_versioned(aws: AwsAccounts, family_tag: str, name: str, region: str):
    family, _, version = name.rpartition("-")
    if not family or not version:
        return []
    return [image for image in describe_own_images(aws.home, region, family_tag)
            if image.family == family and image.version == version and image.state != "deregistered"]


def _instances_named(aws: Aws, region: str, name: str) -> list[str]:
    reservations = paginate(aws.ec2(region), "describe_instances", "Reservations",
                            Filters=[{"Name": "tag:Name", "Values": [name]},
                                     {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}])
    return [instance["InstanceId"] for reservation in reservations for instance in reservation["Instances"]]
