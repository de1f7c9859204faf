"""The fleet the rollout tests plan over (moto, three accounts: bake owns the family's images and shares them;
prod and staging run them in Auto Scaling groups of every shape), and DescribeInstanceRefreshes answered as AWS
would where moto has none."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.handlers
from botocore.awsrequest import AWSResponse

from tests.support import seed

REGIONS = ["us-east-1"]
POLICY = seed.three_accounts(REGIONS, rollout={"skip_groups": ["legacy-*"]})


def refreshes_answer(busy: dict[str, str]):
    """A before-call handler: DescribeInstanceRefreshes shows a refresh of the given status on the named groups,
    none on the others."""
    def answer(params, **_):
        group = (params.get("body") or {}).get("AutoScalingGroupName")
        items = []
        if group in busy:
            items = [{"InstanceRefreshId": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "AutoScalingGroupName": group,
                      "Status": busy[group], "PercentageComplete": 40, "InstancesToUpdate": 3,
                      "StartTime": datetime(2026, 12, 7, 9, 0, tzinfo=UTC)}]
        return AWSResponse("https://autoscaling.us-east-1.amazonaws.com/", 200, {}, None), {
            "InstanceRefreshes": items, "ResponseMetadata": {"HTTPStatusCode": 200}}

    return answer


def answered_refreshes(monkeypatch, busy: dict[str, str]) -> None:
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
        *botocore.handlers.BUILTIN_HANDLERS,
        ("before-call.autoscaling.DescribeInstanceRefreshes", refreshes_answer(busy))])


def shared_family(aws):
    old, new = seed.family(aws, ["1.4.0", "1.5.0"])
    for image_id in (old, new):
        aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={
            "Add": [{"UserId": seed.PROD}, {"UserId": seed.STAGING}]})
    return old, new


def group(session, name: str, running: list[str], **spec) -> list[str]:
    """An Auto Scaling group (its launch template, configuration or mixed instances policy in `spec`) with one
    instance per image in `running`, attached (moto launches nothing on a shared image itself)."""
    ec2 = session.client("ec2", "us-east-1")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    autoscaling = session.client("autoscaling", "us-east-1")
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=10, DesiredCapacity=0,
                                          VPCZoneIdentifier=subnet, **spec)
    instances = [seed.instance_on_shared_image(session, image_id) for image_id in running]
    if instances:
        autoscaling.attach_instances(AutoScalingGroupName=name, InstanceIds=instances)
    return instances


def template(session, name: str, image: str) -> str:
    return session.client("ec2", "us-east-1").create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": image})["LaunchTemplate"]["LaunchTemplateId"]


def fleet(aws):
    """prod and staging running the web family in every shape of group."""
    old, new = shared_family(aws)
    prod, staging = seed.account_session(aws, seed.PROD), seed.account_session(aws, seed.STAGING)
    group(prod, "web-pinned", [old, old], LaunchTemplate={"LaunchTemplateId": template(prod, "web-lt", old),
                                                          "Version": "1"})
    prod.client("ssm", "us-east-1").put_parameter(Name="/amibot/web/current", Value=new, Type="String",
                                                  DataType="aws:ec2:image")
    group(prod, "web-ssm", [old], LaunchTemplate={
        "LaunchTemplateId": template(prod, "web-ssm-lt", "resolve:ssm:/amibot/web/current"), "Version": "$Default"})
    from moto import settings as moto_settings
    moto_settings.ENABLE_AMI_VALIDATION = False  # a launch configuration on a shared image, as AWS allows
    try:
        prod.client("autoscaling", "us-east-1").create_launch_configuration(
            LaunchConfigurationName="web-lc", ImageId=old, InstanceType="t3.micro")
    finally:
        moto_settings.ENABLE_AMI_VALIDATION = True
    group(prod, "web-classic", [old], LaunchConfigurationName="web-lc")
    group(prod, "legacy-web", [old], LaunchTemplate={"LaunchTemplateName": "web-lt", "Version": "1"})
    mixed_lt, small_lt = template(staging, "web-mixed-lt", old), template(staging, "web-small-lt", old)
    group(staging, "web-mixed", [old], MixedInstancesPolicy={"LaunchTemplate": {
        "LaunchTemplateSpecification": {"LaunchTemplateId": mixed_lt, "Version": "1"},
        "Overrides": [{"InstanceType": "t3.micro"},
                      {"InstanceType": "t3.small",
                       "LaunchTemplateSpecification": {"LaunchTemplateId": small_lt, "Version": "1"}}]}})
    group(staging, "web-done", [new], LaunchTemplate={"LaunchTemplateId": template(staging, "web-new-lt", new),
                                                      "Version": "1"})
    group(staging, "web-busy", [old], LaunchTemplate={"LaunchTemplateId": template(staging, "web-busy-lt", old),
                                                      "Version": "1"})
    other = seed.image(aws, "db-2.0.0", tags={"Family": "db", "Version": "2.0.0"})
    aws.client("ec2").modify_image_attribute(ImageId=other, LaunchPermission={"Add": [{"UserId": seed.STAGING}]})
    group(staging, "db-asg", [other], LaunchTemplate={"LaunchTemplateId": template(staging, "db-lt", other),
                                                      "Version": "1"})
    return old, new


class Clock:
    """A clock a test moves by hand: the refresh emulation replaces an instance each `step` of it."""

    def __init__(self, now: datetime | None = None):
        self.now = now or datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def emulated_refreshes(monkeypatch, clock=None, step_seconds: float = 0.05):
    """bot.devtools.refresh_emulation on every botocore session the app makes (moto has no instance refresh)."""
    from bot.devtools.refresh_emulation import RefreshEmulation

    emulated = RefreshEmulation(clock=clock, step_seconds=step_seconds)
    handlers = []

    class Collect:
        def register(self, event, handler, unique_id=None):
            handlers.append((event, handler))

    class Session:
        events = Collect()

    emulated.install(Session())
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, *handlers])
    return emulated


def pinned_group(aws, name: str, image_id: str, size: int, region: str = "us-east-1") -> str:
    """An Auto Scaling group of `size` instances (moto launches them, tagged with the group) on its own launch
    template pinned to `image_id`; its template id."""
    ec2 = aws.client("ec2", region)
    template_id = ec2.create_launch_template(LaunchTemplateName=f"{name}-lt", LaunchTemplateData={
        "ImageId": image_id, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("autoscaling", region).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=size + 2, DesiredCapacity=size,
        VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "1"})
    return template_id
