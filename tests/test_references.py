"""Every kind of reference to an image, each on its own, through the real app over HTTP: found, shown in
`/ami show`, `/ami versions` and the deregistration request, respected by the refusal and by the digest.

moto where it has the API (Auto Scaling groups on launch templates and pinned versions, mixed instances
policies, SSM parameters, `resolve:ssm:` templates, EC2 Fleet and Spot Fleet); botocore's Stubber with
AWS's documented response shapes where it does not (DescribeImageReferences, image usage reports,
Image Builder)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bot.services import approvals
from tests import seed
from tests.test_deregister import POLICY, approval_message

ACCOUNT = "123456789012"
PARTNER = "210987654321"


@pytest.fixture
def policy_data():
    return {**POLICY, "digest": {"stale_after_days": 90, "keep_latest": 1}}


def subnet(aws, region="us-east-1"):
    return aws.client("ec2", region).describe_subnets()["Subnets"][0]["SubnetId"]


def template_versions(aws, name, count):
    """A launch template with `count` versions, each naming its own new image; returns (template id, images)."""
    ec2 = aws.client("ec2")
    images = [seed.image(aws, f"{name}-img-{number}") for number in range(1, count + 1)]
    template_id = seed.launch_template(aws, name, images[0])
    for image_id in images[1:]:
        ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": image_id})
    return template_id, images


def group(aws, name, **spec):
    aws.client("autoscaling").create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=1,
                                                        VPCZoneIdentifier=subnet(aws), **spec)


def refused(harness, image_id):
    harness.command(f"deregister {image_id}")
    return harness.last_reply().text


class Partly:
    """The real (moto) client, except the named operations (and their paginators), which go to a stubbed one."""

    def __init__(self, real, stubbed, operations):
        self.real, self.stubbed, self.operations = real, stubbed, set(operations)

    def __getattr__(self, name):
        return getattr(self.stubbed if name in self.operations else self.real, name)

    def get_paginator(self, name):
        return (self.stubbed if name in self.operations else self.real).get_paginator(name)


def route(monkeypatch, harness, ec2_operations=(), ec2_stubbed=None, imagebuilder=None, ssm=None):
    """Send some of the app's us-east-1 AWS calls to stubbed clients."""
    aws_layer = harness.ctx.aws.home
    real_client = aws_layer.client

    def client(service, region=None, max_attempts=6):
        real = real_client(service, region, max_attempts)
        if (region or "us-east-1") != "us-east-1":
            return real
        if service == "imagebuilder" and imagebuilder is not None:
            return imagebuilder
        if service == "ssm" and ssm is not None:
            return ssm
        if service == "ec2" and ec2_stubbed is not None:
            return Partly(real, ec2_stubbed, ec2_operations)
        return real

    monkeypatch.setattr(aws_layer, "client", client)
    monkeypatch.setattr(aws_layer, "ec2", lambda region=None: client("ec2", region))


# --- Auto Scaling groups on launch templates (moto) --------------------------------------------------

def test_a_group_pinned_to_version_4_uses_version_4s_image(harness, aws):
    template_id, images = template_versions(aws, "web-lt", 5)  # v1 is $Default, v5 $Latest
    group(aws, "web-asg", LaunchTemplate={"LaunchTemplateId": template_id, "Version": "4"})
    text = refused(harness, images[3])
    assert "is in use" in text and "--force" in text
    assert "Auto Scaling group *web-asg* (launch template *web-lt* version 4)" in text
    assert not harness.fake.calls_to("chat.postMessage")
    # version 3: neither $Default, $Latest nor pinned: nothing launches it, so it may be put up
    harness.command(f"deregister {images[2]}")
    message, _ = approval_message(harness.fake)
    assert images[2] in message.text and "web-asg" not in message.text and "nothing found" in message.text
    harness.command(f"show {images[3]}")
    assert "Auto Scaling group *web-asg* (launch template *web-lt* version 4)" in harness.last_reply().text


def test_default_and_latest_by_name_resolve_to_their_versions(harness, aws):
    ec2 = aws.client("ec2")
    template_id, images = template_versions(aws, "api-lt", 3)
    ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion="2")
    group(aws, "api-default", LaunchTemplate={"LaunchTemplateName": "api-lt", "Version": "$Default"})
    assert "Auto Scaling group *api-default* (launch template *api-lt* $Default (version 2))" in refused(
        harness, images[1])
    harness.command(f"deregister {images[0]}")  # v1 is no longer the default: free
    assert approval_message(harness.fake)


def test_mixed_instances_policy_and_each_override(harness, aws):
    _, web = template_versions(aws, "web-lt", 2)
    _, spot = template_versions(aws, "spot-lt", 1)
    group(aws, "mixed", MixedInstancesPolicy={"LaunchTemplate": {
        "LaunchTemplateSpecification": {"LaunchTemplateName": "web-lt", "Version": "1"},
        "Overrides": [{"InstanceType": "m5.large",
                       "LaunchTemplateSpecification": {"LaunchTemplateName": "spot-lt", "Version": "$Latest"}}]}})
    assert "Auto Scaling group *mixed* (mixed instances policy *web-lt* version 1)" in refused(harness, web[0])
    assert "Auto Scaling group *mixed* (override m5.large *spot-lt* $Latest (version 1))" in refused(harness, spot[0])


# --- SSM (moto) ----------------------------------------------------------------------------------------

def test_an_ssm_parameter_of_image_type_is_a_use(harness, aws):
    image_id = seed.image(aws, "base-image")
    other = seed.image(aws, "text-param-image")
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/team/base-ami", Value=image_id, Type="String", DataType="aws:ec2:image")
    ssm.put_parameter(Name="/team/notes", Value=other, Type="String")  # plain text that merely looks like an id
    assert "SSM parameter `/team/base-ami`" in refused(harness, image_id)
    harness.command(f"show {image_id}")
    assert "SSM parameter `/team/base-ami`" in harness.last_reply().text
    harness.command(f"deregister {other}")
    assert approval_message(harness.fake)


def test_a_template_naming_an_ssm_parameter_is_recorded_under_the_image(harness, aws):
    image_id = seed.image(aws, "web-current", tags={"Family": "web"})
    harness.command(f"promote {image_id}")  # writes /amibot/web/current (type aws:ec2:image)
    aws.client("ec2").create_launch_template(LaunchTemplateName="web-lt",
                                             LaunchTemplateData={"ImageId": "resolve:ssm:/amibot/web/current"})
    text = refused(harness, image_id)
    assert "launch template *web-lt* version 1 (default and latest) (via SSM /amibot/web/current)" in text
    assert "SSM parameter `/amibot/web/current` (resolved by template web-lt)" in text
    harness.command("versions web")
    row = harness.last_reply().text
    assert "template web-lt" in row and "SSM /amibot/web/current" in row


def test_where_ssm_cannot_answer_the_endpoints_resolve_alias_does(harness, aws, monkeypatch):
    """GetParameters denied: the templates' `resolve:ssm:` names are resolved by DescribeLaunchTemplateVersions
    with ResolveAlias=True (AWS's shape: the AMI id in place of the parameter)."""
    image_id = seed.image(aws, "golden")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2_stub = Stubber(ec2)

    def version(image):
        return {"LaunchTemplateVersions": [{"LaunchTemplateId": "lt-0123456789abcdef0", "LaunchTemplateName": "gold-lt",
                                            "VersionNumber": 1, "DefaultVersion": True,
                                            "LaunchTemplateData": {"ImageId": image}}]}

    listing = {"Versions": ["$Default", "$Latest"], "MaxResults": 200}
    ec2_stub.add_response("describe_launch_template_versions", version("resolve:ssm:/team/golden"), listing)
    ec2_stub.add_response("describe_launch_template_versions", version(image_id), {**listing, "ResolveAlias": True})
    ec2_stub.activate()
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm_stub = Stubber(ssm)
    ssm_stub.add_response("describe_parameters", {"Parameters": []}, {"ParameterFilters": ANY, "MaxResults": 50})
    ssm_stub.add_client_error("get_parameters", "AccessDeniedException", "not allowed", 400,
                              expected_params={"Names": ["/team/golden"]})
    ssm_stub.activate()
    route(monkeypatch, harness, ["describe_launch_template_versions"], ec2, ssm=ssm)
    text = refused(harness, image_id)
    ec2_stub.assert_no_pending_responses()
    ssm_stub.assert_no_pending_responses()
    assert "launch template *gold-lt* version 1 (default and latest) (via SSM /team/golden)" in text


# --- fleets (moto) -------------------------------------------------------------------------------------

def test_active_ec2_and_spot_fleets(harness, aws):
    ec2 = aws.client("ec2")
    template_id, images = template_versions(aws, "fleet-lt", 3)
    fleet_id = ec2.create_fleet(
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "2"},
                                "Overrides": [{"InstanceType": "t3.micro"}]}],
        TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "spot"},
        Type="maintain")["FleetId"]
    spot_image = seed.image(aws, "spot-image")
    request_id = ec2.request_spot_fleet(SpotFleetRequestConfig={
        "IamFleetRole": f"arn:aws:iam::{ACCOUNT}:role/fleet", "AllocationStrategy": "lowestPrice",
        "TargetCapacity": 1, "LaunchSpecifications": [{"ImageId": spot_image, "InstanceType": "t3.micro"}]})[
        "SpotFleetRequestId"]
    assert f"EC2 Fleet `{fleet_id}` (active, template *fleet-lt* version 2)" in refused(harness, images[1])
    assert f"Spot Fleet `{request_id}` (active, names the image)" in refused(harness, spot_image)
    ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[request_id], TerminateInstances=True)
    assert "Spot Fleet" not in refused(harness, spot_image)  # cancelled: it launches nothing any more


# --- AWS's own check (Stubber) -------------------------------------------------------------------------

def test_aws_reference_check_is_unioned_and_its_own_finds_are_logged(harness, aws, monkeypatch, caplog):
    image_id = seed.image(aws, "checked")
    instance_id = seed.instance(aws, image_id=image_id)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_response("describe_image_references", {"ImageReferences": [
        {"ImageId": image_id, "ResourceType": "ec2:Instance",
         "Arn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{instance_id}"},
        {"ImageId": image_id, "ResourceType": "ec2:LaunchTemplate",
         "Arn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:launch-template/lt-0123456789abcdef0"},
    ]}, {"ImageIds": [image_id], "ResourceTypes": ANY})
    stub.activate()
    route(monkeypatch, harness, ["describe_image_references"], ec2)
    with caplog.at_level(logging.WARNING):
        text = refused(harness, image_id)
    stub.assert_no_pending_responses()
    assert f"instance `{instance_id}` (running) — found by amibot and AWS" in text
    assert "launch template *lt-0123456789abcdef0* — found by AWS" in text
    assert any("amibot's scan missed" in record.getMessage() and "lt-0123456789abcdef0" in record.getMessage()
               and record.levelno == logging.WARNING for record in caplog.records)


def test_without_the_aws_check_the_request_says_it_was_not_checked(harness, aws):
    image_id = seed.image(aws, "moto-only")
    harness.command(f"deregister {image_id}")
    message, _ = approval_message(harness.fake)
    assert "*Could not be checked*" in message.text
    assert "AWS's own reference check (DescribeImageReferences): *unknown*" in message.text
    assert "Image Builder recipes: *unknown*" in message.text


# --- other accounts: image usage reports (Stubber) -----------------------------------------------------

def shared_image(aws, name):
    image_id = seed.image(aws, name)
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": PARTNER}]})
    return image_id


def report(image_id, state, created=None):
    return {"ImageId": image_id, "ReportId": "amiur-0123456789abcdef0", "State": state,
            "ResourceTypes": [{"ResourceType": "ec2:Instance"}], "CreationTime": created or datetime.now(UTC)}


ENTRIES = {"ImageUsageReportEntries": [
    {"ResourceType": "ec2:Instance", "ReportId": "amiur-0123456789abcdef0", "UsageCount": 3, "AccountId": PARTNER},
    {"ResourceType": "ec2:LaunchTemplate", "ReportId": "amiur-0123456789abcdef0", "UsageCount": 1,
     "AccountId": PARTNER}]}
REPORT_OPERATIONS = ["describe_image_usage_reports", "create_image_usage_report", "describe_image_usage_report_entries"]


def test_a_pending_usage_report_is_a_danger_line_then_the_message_updates(harness, aws, monkeypatch):
    image_id = shared_image(aws, "shared-pending")
    harness.ctx.extras["usage_report.poll_seconds"] = 0.01
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_response("describe_image_usage_reports", {"ImageUsageReports": []}, {"ImageIds": [image_id]})
    stub.add_response("create_image_usage_report", {"ReportId": "amiur-0123456789abcdef0"},
                      {"ImageId": image_id, "ResourceTypes": ANY})
    by_id = {"ReportIds": ["amiur-0123456789abcdef0"]}
    stub.add_response("describe_image_usage_reports", {"ImageUsageReports": [report(image_id, "pending")]}, by_id)
    stub.add_response("describe_image_usage_reports", {"ImageUsageReports": [report(image_id, "available")]}, by_id)
    stub.add_response("describe_image_usage_report_entries", ENTRIES, by_id)
    stub.activate()
    route(monkeypatch, harness, REPORT_OPERATIONS, ec2)
    harness.command(f"deregister {image_id}")
    message, request_id = approval_message(harness.fake)
    assert "*Use by the 1 account it is shared with: unknown*" in message.text
    assert "this message updates when it is ready" in message.text
    harness.wait_idle()
    stub.assert_no_pending_responses()
    details = str(approvals.get(harness.ctx, request_id).details)
    assert "Used by 1 other account" in details and f"account `{PARTNER}`: 3 instances, 1 launch template" in details
    updated = [c for c in harness.fake.calls_to("chat.update") if c.params.get("ts") == message.ts]
    assert updated and "Used by 1 other account" in updated[-1].text and "shared with: unknown" not in updated[-1].text
    assert harness.ctx.store.one("SELECT outcome FROM audit WHERE action = 'request.usage-report'")["outcome"] == \
        "1 other account(s) use it"


def test_a_ready_usage_report_is_shown_at_once(harness, aws, monkeypatch):
    image_id = shared_image(aws, "shared-ready")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_response("describe_image_usage_reports",
                      {"ImageUsageReports": [report(image_id, "available", datetime.now(UTC) - timedelta(hours=2))]},
                      {"ImageIds": [image_id]})
    by_id = {"ReportIds": ["amiur-0123456789abcdef0"]}
    stub.add_response("describe_image_usage_report_entries", ENTRIES, by_id)  # its state is known: entries only
    stub.activate()
    route(monkeypatch, harness, REPORT_OPERATIONS, ec2)
    harness.command(f"deregister {image_id}")
    message, _ = approval_message(harness.fake)
    stub.assert_no_pending_responses()
    assert "Used by 1 other account" in message.text and f"account `{PARTNER}`: 3 instances" in message.text


def test_without_usage_reports_use_by_other_accounts_is_unknown_never_nothing(harness, aws):
    image_id = shared_image(aws, "shared-moto")
    harness.command(f"deregister {image_id}")
    message, _ = approval_message(harness.fake)
    assert ":rotating_light: *Use by the 1 account it is shared with: unknown*" in message.text
    assert "no image usage reports" in message.text


# --- Image Builder (Stubber; moto has none) ------------------------------------------------------------

def test_an_image_builder_recipe_is_shown_and_warns_but_does_not_block(harness, aws, monkeypatch):
    image_id = seed.image(aws, "parent")
    imagebuilder = boto3.client("imagebuilder", region_name="us-east-1")
    stub = Stubber(imagebuilder)
    recipe = {"arn": f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image-recipe/web-recipe/1.0.2", "name": "web-recipe",
              "platform": "Linux", "owner": ACCOUNT, "parentImage": image_id, "dateCreated": "2026-01-01T00:00:00Z"}
    for _ in range(2):
        stub.add_response("list_image_recipes", {"imageRecipeSummaryList": [recipe]}, {"owner": "Self"})
    stub.activate()
    route(monkeypatch, harness, imagebuilder=imagebuilder)
    harness.command(f"show {image_id}")
    assert "Image Builder image recipe *web-recipe* 1.0.2" in harness.last_reply().text
    harness.command(f"deregister {image_id}")  # a warning, not a refusal
    message, _ = approval_message(harness.fake)
    assert "Image Builder image recipe *web-recipe* 1.0.2 (a warning" in message.text
    assert "Image Builder recipes: *unknown*" not in message.text
    stub.assert_no_pending_responses()


def test_an_endpoint_without_image_builder_is_unknown_in_show(harness, aws):
    image_id = seed.image(aws, "no-builder")
    harness.command(f"show {image_id}")
    text = harness.last_reply().text
    assert "nothing found" in text and "Image Builder recipes: *unknown*" in text


# --- versions and the digest ---------------------------------------------------------------------------

def test_versions_lists_groups_and_parameters(harness, aws):
    pinned, named = (seed.image(aws, f"batch-{n}", tags={"Family": "batch", "Version": str(n)}) for n in (1, 2))
    template_id = seed.launch_template(aws, "batch-lt", pinned)
    aws.client("ec2").create_launch_template_version(LaunchTemplateId=template_id,
                                                     LaunchTemplateData={"ImageId": named})
    group(aws, "batch-asg", LaunchTemplate={"LaunchTemplateId": template_id, "Version": "1"})
    aws.client("ssm").put_parameter(Name="/ops/batch", Value=named, Type="String", DataType="aws:ec2:image")
    harness.command("versions batch")
    text = harness.last_reply().text
    assert "ASG batch-asg" in text and "SSM /ops/batch" in text


def test_the_digest_keeps_images_used_only_by_a_pinned_version_or_a_parameter(harness, aws):
    old = datetime.now(UTC) - timedelta(days=300)
    ids = {}
    for name in ("pinned", "parameter", "stale", "newest"):
        ids[name] = seed.image(aws, f"svc-{name}", tags={"Family": "svc"},
                               created=old if name != "newest" else datetime.now(UTC) - timedelta(days=10))
    template_id = seed.launch_template(aws, "svc-lt", ids["newest"])
    ec2 = aws.client("ec2")
    ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": ids["pinned"]})
    ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": ids["newest"]})
    group(aws, "svc-asg", LaunchTemplate={"LaunchTemplateId": template_id, "Version": "2"})  # neither default/latest
    aws.client("ssm").put_parameter(Name="/svc/golden", Value=ids["parameter"], Type="String",
                                    DataType="aws:ec2:image")
    harness.command("digest", channel="C0OPS")
    post = next(c for c in harness.fake.calls_to("chat.postMessage") if "AMI digest" in c.text)
    assert ids["stale"] in post.text
    assert ids["pinned"] not in post.text and ids["parameter"] not in post.text


def test_a_source_that_could_hide_a_launch_and_fails_refuses_and_says_so(harness, aws, monkeypatch):
    image_id = seed.image(aws, "unchecked")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_client_error("describe_fleets", "UnauthorizedOperation", "You are not authorized", 403)
    stub.activate()
    route(monkeypatch, harness, ["describe_fleets"], ec2)
    text = refused(harness, image_id)
    stub.assert_no_pending_responses()
    assert "Could not be checked, so it may be in use" in text
    assert "EC2 Fleets: AWS denied ec2:DescribeFleets in us-east-1" in text and "--force" in text
    assert not harness.fake.calls_to("chat.postMessage")
