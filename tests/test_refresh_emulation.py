"""The demo's emulation of Auto Scaling instance refresh (bot.devtools.refresh_emulation), driven by boto3 clients of
the emulated session on moto: a refresh replaces the group's instances with ones on the desired image as the
injected clock moves, applies the desired configuration when it succeeds, cancels, rolls back and fails as
configured — and every answer is one botocore's Stubber accepts for the operation (the service model's shapes)."""

from __future__ import annotations

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from bot.aws.clients import Aws
from bot.devtools.refresh_emulation import RefreshEmulation
from bot.services import rollout
from tests.support import seed
from tests.support.clock import Clock

REGION = "us-east-1"



def valid(operation: str, answer: dict) -> dict:
    """The answer, once botocore's Stubber has accepted it as the operation's output shape."""
    client = botocore.session.get_session().create_client("autoscaling", REGION, aws_access_key_id="x",
                                                          aws_secret_access_key="x")
    Stubber(client).add_response(operation, {k: v for k, v in answer.items() if k != "ResponseMetadata"})
    return answer


@pytest.fixture
def world(aws):
    clock = Clock()
    session = boto3.session.Session(region_name=REGION)
    emulation = RefreshEmulation(clock=clock, step_seconds=2).install(session)
    old, new = seed.family(aws, ["1.4.0", "1.5.0"])
    ec2 = session.client("ec2", REGION)
    template = ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={
        "ImageId": old, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    session.client("autoscaling", REGION).create_auto_scaling_group(
        AutoScalingGroupName="web-asg", MinSize=0, MaxSize=6, DesiredCapacity=3, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})
    return session, emulation, clock, old, new, template


def instances(session, group: str = "web-asg") -> dict[str, str]:
    """The group's instances and the image each runs (from EC2, not from the group)."""
    ids = [item["InstanceId"] for item in session.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]]
    reservations = session.client("ec2", REGION).describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return {i["InstanceId"]: i["ImageId"] for r in reservations for i in r["Instances"]}


def refresh(session, group: str = "web-asg") -> dict:
    answer = session.client("autoscaling", REGION).describe_instance_refreshes(AutoScalingGroupName=group)
    return valid("describe_instance_refreshes", answer)["InstanceRefreshes"][0]


def new_version(session, template: str, image: str) -> str:
    return str(session.client("ec2", REGION).create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplateVersion"]["VersionNumber"])


def test_a_refresh_replaces_the_instances_one_step_at_a_time_then_applies_the_desired_configuration(world):
    session, emulation, clock, old, new, template = world
    before = instances(session)
    assert set(before.values()) == {old} and len(before) == 3
    desired = {"LaunchTemplate": {"LaunchTemplateId": template, "Version": new_version(session, template, new)}}
    client = session.client("autoscaling", REGION)
    started = valid("start_instance_refresh", client.start_instance_refresh(
        AutoScalingGroupName="web-asg", DesiredConfiguration=desired,
        Preferences={"MinHealthyPercentage": 90, "InstanceWarmup": 300, "SkipMatching": True, "AutoRollback": True}))
    first = refresh(session)
    assert first["InstanceRefreshId"] == started["InstanceRefreshId"]
    assert (first["Status"], first["PercentageComplete"], first["InstancesToUpdate"]) == ("Pending", 0, 3)
    assert first["Preferences"]["MinHealthyPercentage"] == 90 and first["DesiredConfiguration"] == desired
    clock.tick(4)
    second = refresh(session)
    assert (second["Status"], second["PercentageComplete"], second["InstancesToUpdate"]) == ("InProgress", 33, 2)
    assert sorted(instances(session).values()) == sorted([old, old, new])
    clock.tick(6)
    done = refresh(session)
    assert (done["Status"], done["PercentageComplete"], done["InstancesToUpdate"]) == ("Successful", 100, 0)
    assert "EndTime" in done
    now = instances(session)
    assert set(now.values()) == {new} and len(now) == 3 and not set(now) & set(before)
    states = session.client("ec2", REGION).describe_instances(InstanceIds=list(before))["Reservations"]
    assert {i["State"]["Name"] for r in states for i in r["Instances"]} == {"terminated"}
    group = client.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == desired["LaunchTemplate"]["Version"]  # AWS applies it on success


def test_a_template_resolving_the_ssm_parameter_gets_the_parameters_image_without_a_desired_configuration(world):
    session, emulation, clock, old, new, template = world
    session.client("ssm", REGION).put_parameter(Name="/amibot/web/current", Value=new, Type="String",
                                                DataType="aws:ec2:image")
    ec2 = session.client("ec2", REGION)
    ssm_template = ec2.create_launch_template(LaunchTemplateName="web-ssm-lt", LaunchTemplateData={
        "ImageId": "resolve:ssm:/amibot/web/current"})["LaunchTemplate"]["LaunchTemplateId"]
    client = session.client("autoscaling", REGION)
    client.create_auto_scaling_group(AutoScalingGroupName="web-ssm", MinSize=0, MaxSize=3, DesiredCapacity=0,
                                     VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
                                     LaunchTemplate={"LaunchTemplateId": ssm_template, "Version": "$Default"})
    running = [seed.instance(session, REGION, image_id=old) for _ in range(2)]
    client.attach_instances(AutoScalingGroupName="web-ssm", InstanceIds=running)
    client.start_instance_refresh(AutoScalingGroupName="web-ssm", Preferences={"SkipMatching": False})
    clock.tick(10)
    assert refresh(session, "web-ssm")["Status"] == "Successful"
    assert set(instances(session, "web-ssm").values()) == {new}
    group = client.describe_auto_scaling_groups(AutoScalingGroupNames=["web-ssm"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["LaunchTemplateId"] == ssm_template  # unchanged: no desired configuration


def test_one_refresh_at_a_time_and_the_plan_sees_it_in_progress(world):
    session, emulation, clock, old, new, template = world
    client = session.client("autoscaling", REGION)
    client.start_instance_refresh(AutoScalingGroupName="web-asg")
    with pytest.raises(ClientError) as refused:
        client.start_instance_refresh(AutoScalingGroupName="web-asg")
    assert refused.value.response["Error"]["Code"] == "InstanceRefreshInProgress"
    active = rollout.active_refresh(Aws([REGION], session), REGION, "web-asg")
    assert active is not None and active["Status"] == "Pending"
    with pytest.raises(ClientError) as unknown:
        client.describe_instance_refreshes(AutoScalingGroupName="no-such-asg")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"


def test_cancel_stops_where_it_is(world):
    session, emulation, clock, old, new, template = world
    client = session.client("autoscaling", REGION)
    desired = {"LaunchTemplate": {"LaunchTemplateId": template, "Version": new_version(session, template, new)}}
    client.start_instance_refresh(AutoScalingGroupName="web-asg", DesiredConfiguration=desired)
    clock.tick(4)
    valid("cancel_instance_refresh", client.cancel_instance_refresh(AutoScalingGroupName="web-asg"))
    assert refresh(session)["Status"] == "Cancelling"
    clock.tick(2)
    cancelled = refresh(session)
    assert cancelled["Status"] == "Cancelled" and cancelled["InstancesToUpdate"] == 2
    assert sorted(instances(session).values()) == sorted([old, old, new])  # what was replaced stays
    group = client.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == "1"  # not applied
    with pytest.raises(ClientError) as none:
        client.cancel_instance_refresh(AutoScalingGroupName="web-asg")
    assert none.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"


def test_rollback_puts_the_old_image_back(world):
    session, emulation, clock, old, new, template = world
    client = session.client("autoscaling", REGION)
    desired = {"LaunchTemplate": {"LaunchTemplateId": template, "Version": new_version(session, template, new)}}
    client.start_instance_refresh(AutoScalingGroupName="web-asg", DesiredConfiguration=desired)
    clock.tick(6)
    assert sorted(instances(session).values()) == sorted([old, new, new])
    valid("rollback_instance_refresh", client.rollback_instance_refresh(AutoScalingGroupName="web-asg"))
    rolling = refresh(session)
    assert rolling["Status"] == "RollbackInProgress" and rolling["RollbackDetails"]["InstancesToUpdateOnRollback"] == 2
    clock.tick(10)
    assert refresh(session)["Status"] == "RollbackSuccessful"
    assert set(instances(session).values()) == {old}


def test_a_configured_failure_fails_with_its_reason_or_rolls_back_with_auto_rollback(world):
    session, emulation, clock, old, new, template = world
    client = session.client("autoscaling", REGION)
    desired = {"LaunchTemplate": {"LaunchTemplateId": template, "Version": new_version(session, template, new)}}
    reason = "Instance i-0abc failed its ELB health check"
    emulation.fail_next_refresh(reason, after=1, group="web-asg")
    client.start_instance_refresh(AutoScalingGroupName="web-asg", DesiredConfiguration=desired)
    clock.tick(10)
    failed = refresh(session)
    assert (failed["Status"], failed["StatusReason"]) == ("Failed", reason)
    assert sorted(instances(session).values()) == sorted([old, old, new])
    emulation.fail_next_refresh(reason, after=1)
    client.start_instance_refresh(AutoScalingGroupName="web-asg", DesiredConfiguration=desired,
                                  Preferences={"AutoRollback": True, "SkipMatching": True})
    clock.tick(30)
    rolled = refresh(session)
    assert rolled["Status"] == "RollbackSuccessful" and rolled["RollbackDetails"]["RollbackReason"] == reason
    assert sorted(instances(session).values()) == sorted([old, old, new])  # as before this refresh


def test_a_checkpoint_pauses_for_its_delay(world):
    session, emulation, clock, old, new, template = world
    client = session.client("autoscaling", REGION)
    client.start_instance_refresh(AutoScalingGroupName="web-asg", Preferences={
        "CheckpointPercentages": [30, 100], "CheckpointDelay": 60})
    clock.tick(4)  # one instance of three replaced: 33 % is past the 30 % checkpoint
    paused = refresh(session)
    assert paused["Status"] == "InProgress" and paused["PercentageComplete"] == 33
    assert "checkpoint at 30%" in paused["StatusReason"]
    clock.tick(50)
    assert refresh(session)["PercentageComplete"] == 33  # still waiting
    clock.tick(20)
    assert refresh(session)["Status"] == "Successful"


def test_a_mixed_instances_group_gets_its_desired_policy(world):
    session, emulation, clock, old, new, template = world
    ec2 = session.client("ec2", REGION)
    client = session.client("autoscaling", REGION)
    client.create_auto_scaling_group(
        AutoScalingGroupName="web-mixed", MinSize=0, MaxSize=4, DesiredCapacity=2,
        VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        MixedInstancesPolicy={"LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "1"},
            "Overrides": [{"InstanceType": "t3.micro"}, {"InstanceType": "t3.small"}]}})
    version = new_version(session, template, new)
    desired = {"MixedInstancesPolicy": {"LaunchTemplate": {
        "LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": version},
        "Overrides": [{"InstanceType": "t3.micro"}, {"InstanceType": "t3.small"}]}}}
    client.start_instance_refresh(AutoScalingGroupName="web-mixed", DesiredConfiguration=desired)
    clock.tick(10)
    assert refresh(session, "web-mixed")["Status"] == "Successful"
    assert set(instances(session, "web-mixed").values()) == {new}
    group = client.describe_auto_scaling_groups(AutoScalingGroupNames=["web-mixed"])["AutoScalingGroups"][0]
    spec = group["MixedInstancesPolicy"]["LaunchTemplate"]
    assert spec["LaunchTemplateSpecification"]["Version"] == version
    assert [o["InstanceType"] for o in spec["Overrides"]] == ["t3.micro", "t3.small"]


def test_another_account_launches_an_image_shared_with_it_and_fails_on_one_that_is_not(aws):
    """In an account that runs images shared with it (the demo's prod), a refresh launches the shared image, as AWS
    does; an image not shared with the account fails the refresh with AWS's reason instead of breaking every call
    the account makes afterwards."""
    clock = Clock()
    old, new, hidden = seed.family(aws, ["1.4.0", "1.5.0", "1.6.0"])
    aws.client("ec2").modify_image_attribute(ImageId=old, LaunchPermission={"Add": [{"UserId": seed.PROD}]})
    aws.client("ec2").modify_image_attribute(ImageId=new, LaunchPermission={"Add": [{"UserId": seed.PROD}]})
    session = seed.account_session(aws, seed.PROD)
    emulation = RefreshEmulation(account_id=seed.PROD, clock=clock, step_seconds=2).install(session)
    ec2 = session.client("ec2", REGION)
    template = ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={
        "ImageId": old, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    client = session.client("autoscaling", REGION)
    for name in ("shared", "hidden"):
        client.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=4, DesiredCapacity=0,
                                         VPCZoneIdentifier=subnet,
                                         LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})
        client.attach_instances(AutoScalingGroupName=name,
                                InstanceIds=[seed.instance_on_shared_image(session, old) for _ in range(2)])
    for name, image in (("shared", new), ("hidden", hidden)):
        version = new_version(session, template, image)
        client.start_instance_refresh(AutoScalingGroupName=name, DesiredConfiguration={
            "LaunchTemplate": {"LaunchTemplateId": template, "Version": version}})
    clock.tick(10)
    assert (refresh(session, "shared")["Status"], set(instances(session, "shared").values())) == ("Successful", {new})
    failed = refresh(session, "hidden")
    assert failed["Status"] == "Failed" and hidden in failed["StatusReason"]
    assert "not shared with" in failed["StatusReason"]
    assert set(instances(session, "hidden").values()) == {old}
    assert [item.status for item in emulation.refreshes_of(REGION, "hidden")] == ["Failed"]
