"""What depends on an image: instances, launch templates, launch configurations and their ASGs.

One scan per region with a fixed number of calls, whatever the number of images or templates:
all instances (or those of one image), the $Default and $Latest versions of *every* launch
template in a single DescribeLaunchTemplateVersions call, all launch configurations, all ASGs.
Cloud Custodian's `unused` filter missed templates not attached to an ASG and a team deregistered
an image in use; this scan looks at every template.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from bot.aws import Aws, paginate, requires

LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]


@dataclass(frozen=True)
class InstanceRef:
    id: str
    state: str
    name: str = ""


@dataclass(frozen=True)
class TemplateRef:
    id: str
    name: str
    version: int
    default: bool
    latest: bool

    @property
    def which(self) -> str:
        return " and ".join(label for label, yes in (("default", self.default), ("latest", self.latest)) if yes)


@dataclass(frozen=True)
class LaunchConfigRef:
    name: str
    groups: tuple[str, ...] = ()


@dataclass
class Usage:
    instances: list[InstanceRef] = field(default_factory=list)
    templates: list[TemplateRef] = field(default_factory=list)
    launch_configs: list[LaunchConfigRef] = field(default_factory=list)

    @property
    def in_use(self) -> bool:
        return bool(self.instances or self.templates or self.launch_configs)


@dataclass
class References:
    """Usage of every image seen in one region's scan, by image id."""

    region: str
    by_image: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    calls: int = 0

    def of(self, image_id: str) -> Usage:
        return self.by_image.get(image_id) or Usage()


@requires("ec2:DescribeInstances")
def scan_instances(aws: Aws, region: str, refs: References, image_ids: list[str] | None = None) -> None:
    filters = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
    if image_ids:
        filters.append({"Name": "image-id", "Values": image_ids})
    refs.calls += 1
    for reservation in paginate(aws.ec2(region), "describe_instances", "Reservations", Filters=filters):
        for instance in reservation.get("Instances", []):
            name = next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == "Name"), "")
            refs.by_image[instance["ImageId"]].instances.append(
                InstanceRef(instance["InstanceId"], instance.get("State", {}).get("Name", "?"), name))


@requires("ec2:DescribeLaunchTemplateVersions")
def scan_launch_templates(aws: Aws, region: str, refs: References) -> None:
    """$Default and $Latest of every template, in one paginated call (no template id given)."""
    seen: dict[tuple[str, int], dict] = {}
    refs.calls += 1
    # PageSize: AWS's largest page (fewer calls); moto also cuts this listing at 15 without a token by default.
    for version in paginate(aws.ec2(region), "describe_launch_template_versions", "LaunchTemplateVersions",
                            Versions=["$Default", "$Latest"], PaginationConfig={"PageSize": 200}):
        seen[(version["LaunchTemplateId"], version["VersionNumber"])] = version
    latest: dict[str, int] = {}
    for template_id, number in seen:
        latest[template_id] = max(number, latest.get(template_id, 0))
    for (template_id, number), version in seen.items():
        image_id = version.get("LaunchTemplateData", {}).get("ImageId")
        if not image_id:
            continue
        refs.by_image[image_id].templates.append(TemplateRef(
            template_id, version.get("LaunchTemplateName", template_id), number,
            default=bool(version.get("DefaultVersion")), latest=latest[template_id] == number))


@requires("autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeAutoScalingGroups")
def scan_launch_configs(aws: Aws, region: str, refs: References) -> None:
    client = aws.client("autoscaling", region)
    groups_by_config: dict[str, list[str]] = defaultdict(list)
    refs.calls += 2
    for group in paginate(client, "describe_auto_scaling_groups", "AutoScalingGroups"):
        if group.get("LaunchConfigurationName"):
            groups_by_config[group["LaunchConfigurationName"]].append(group["AutoScalingGroupName"])
    for config in paginate(client, "describe_launch_configurations", "LaunchConfigurations"):
        refs.by_image[config["ImageId"]].launch_configs.append(
            LaunchConfigRef(config["LaunchConfigurationName"],
                            tuple(groups_by_config.get(config["LaunchConfigurationName"], []))))


def scan(aws: Aws, region: str, image_ids: list[str] | None = None) -> References:
    """Everything that references images in one region. With image_ids, instances are filtered
    server-side to those images (cheaper for a single image); templates and configs are always all."""
    refs = References(region)
    scan_instances(aws, region, refs, image_ids)
    scan_launch_templates(aws, region, refs)
    scan_launch_configs(aws, region, refs)
    return refs
