"""Issue 11 §4: the blast radius spans accounts. Through the real app over HTTP with moto across three accounts
(bake, the bot's own; prod and staging, assumed roles): a bake image shared with prod or staging is checked
there too — refused while something there uses it, grouped by account in the approval message, re-checked at
execution, and unknown (never "none") where amibot cannot look."""

from __future__ import annotations

import dataclasses

import boto3
import botocore.awsrequest
import botocore.handlers
import pytest
from botocore.stub import ANY, Stubber

from bot.render.approvals import detail_blocks
from bot.services import approvals
from tests.support import seed
from tests.support.approvals import approval_message, last_update
from tests.support.ec2 import image_exists, snapshot_exists, snapshots_of
from tests.support.org import listing_refused, organisation
from tests.support.stubs import REPORT_OPERATIONS, report, route

REGIONS = ["us-east-1"]
POLICY = seed.three_accounts(REGIONS, approvals={"approvers": ["U0LEAD"]})
UNMANAGED = "333333333333"


@pytest.fixture
def app(make_harness):
    return make_harness(POLICY)


def shared_bake_image(aws, name, *accounts):
    image_id = seed.image(aws, name)
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={
        "Add": [{"UserId": account} for account in accounts]})
    return image_id


def instance_in(session, account, image_id, name):
    """An instance in `account` (the session's) running the bake account's shared image."""
    return seed.instance_on_shared_image(session, image_id, name=name)


def subnet(session):
    return session.client("ec2", "us-east-1").describe_subnets()["Subnets"][0]["SubnetId"]


def test_an_instance_in_prod_refuses_naming_the_account_and_the_instance(app, aws):
    image_id = shared_bake_image(aws, "web-bake", seed.PROD)
    prod = seed.account_session(aws, seed.PROD)
    instance_id = instance_in(prod, seed.PROD, image_id, "web-1")
    app.command(f"deregister {image_id}")
    reply = app.last_reply().text
    assert "is in use" in reply and "--force" in reply
    assert "prod (111111111111)" in reply and "1 instance" in reply and instance_id in reply
    assert not app.fake.calls_to("chat.postMessage")  # no request was opened
    assert image_exists(aws, image_id)


def test_a_launch_template_and_an_asg_in_staging_refuse(app, aws):
    image_id = shared_bake_image(aws, "api-bake", seed.STAGING)
    staging = seed.account_session(aws, seed.STAGING)
    template_id = seed.launch_template(staging, "api-lt", image_id)
    staging.client("autoscaling", "us-east-1").create_auto_scaling_group(
        AutoScalingGroupName="api-asg", MinSize=0, MaxSize=1, VPCZoneIdentifier=subnet(staging),
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Default"})
    app.command(f"deregister {image_id}")
    reply = app.last_reply().text
    assert "staging (222222222222)" in reply and "launch template api-lt" in reply and "ASG api-asg" in reply
    assert "launch template *api-lt*" in reply and "Auto Scaling group *api-asg*" in reply
    assert "prod (111111111111)" not in reply  # not shared with prod: not scanned, not named


def test_force_shows_the_references_grouped_by_account(app, aws):
    image_id = shared_bake_image(aws, "batch-bake", seed.PROD, seed.STAGING)
    prod, staging = seed.account_session(aws, seed.PROD), seed.account_session(aws, seed.STAGING)
    seed.launch_template(staging, "batch-stg-lt", image_id)
    instances = [instance_in(prod, seed.PROD, image_id, f"batch-{n}") for n in range(3)]
    prod.client("autoscaling", "us-east-1").create_auto_scaling_group(
        AutoScalingGroupName="web-asg", MinSize=0, MaxSize=1, VPCZoneIdentifier=subnet(prod),
        LaunchTemplate={"LaunchTemplateId": seed.launch_template(prod, "batch-lt", image_id), "Version": "1"})
    app.command(f"deregister {image_id} --force")
    message, request_id = approval_message(app.fake)
    text = message.text
    assert "IN OTHER ACCOUNTS — deregistering anyway (--force)" in text
    assert "*prod (111111111111)*: 3 instances, launch template batch-lt, ASG web-asg" in text
    assert all(instance in text for instance in instances)
    assert "*staging (222222222222)*: launch template batch-stg-lt" in text
    assert "*bake (123456789012)*: nothing found" in text
    assert text.index("*bake (123456789012)*") < text.index("*prod (111111111111)*") < \
        text.index("*staging (222222222222)*")
    assert "Shared with — they lose access too" in text and "prod (111111111111), staging (222222222222)" in text
    request = approvals.get(app.ctx, request_id)
    assert request.params["account"] == seed.BAKE
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert not image_exists(aws, image_id)  # forced: deregistered in the owning (bake) account
    assert approvals.get(app.ctx, request_id).state == "succeeded"


def test_the_recheck_at_execution_sees_a_use_added_in_prod_meanwhile(app, aws):
    image_id = shared_bake_image(aws, "late-bake", seed.PROD)
    app.command(f"deregister {image_id}")
    message, request_id = approval_message(app.fake)
    assert "*prod (111111111111)*: nothing found" in message.text
    prod = seed.account_session(aws, seed.PROD)
    instance_id = instance_in(prod, seed.PROD, image_id, "late")  # while the request waited
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert image_exists(aws, image_id)
    final = last_update(app.fake, message.ts)
    assert "came into use while the request waited" in final.text
    assert "prod (111111111111)" in final.text and instance_id in final.text
    assert approvals.get(app.ctx, request_id).state == "failed"


def test_a_share_to_an_unmanaged_account_is_unknown(app, aws):
    image_id = shared_bake_image(aws, "partner-bake", UNMANAGED, seed.PROD)
    app.command(f"deregister {image_id}")
    message, _ = approval_message(app.fake)
    assert f":rotating_light: *Use by account {UNMANAGED} (not managed by amibot): unknown*" in message.text
    assert "*prod (111111111111)*: nothing found" in message.text  # the managed one is scanned, not reported


def test_a_prod_role_that_cannot_be_assumed_is_unknown_for_prod_never_none(app, aws):
    seed.deny_assume_role(app.ctx.aws.home._session, seed.PROD)  # the app's source session
    image_id = shared_bake_image(aws, "denied-bake", seed.PROD, seed.STAGING)
    app.command(f"deregister {image_id}")
    reply = app.last_reply().text
    assert "could not be fully checked" in reply and "--force" in reply
    assert "*prod (111111111111)*: *unknown* — cannot assume" in reply
    assert not app.fake.calls_to("chat.postMessage")
    app.command(f"deregister {image_id} --force")
    message, _ = approval_message(app.fake)
    assert "*prod (111111111111)*: *unknown* — cannot assume arn:aws:iam::111111111111:role/amibot" in message.text
    assert "*prod (111111111111)*: nothing found" not in message.text
    assert "*staging (222222222222)*: nothing found" in message.text  # the other accounts are still checked


def org_shared_image(aws, name):
    organization = aws.client("organizations").create_organization(FeatureSet="ALL")["Organization"]
    image_id = seed.image(aws, name)
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={
        "Add": [{"OrganizationArn": organization["Arn"]}]})
    return image_id, organization["Arn"]


def test_a_share_to_the_organisation_reaches_every_managed_account(make_harness, aws):
    image_id, _ = org_shared_image(aws, "org-bake")
    app = make_harness(seed.three_accounts(REGIONS, organization={"enabled": True},
                                           approvals={"approvers": ["U0LEAD"]}))
    staging = seed.account_session(aws, seed.STAGING)
    instance_id = instance_in(staging, seed.STAGING, image_id, "org-1")
    app.command(f"deregister {image_id}")
    reply = app.last_reply().text
    assert "*staging (222222222222)*: 1 instance" in reply and instance_id in reply
    app.command(f"deregister {image_id} --force")
    message, _ = approval_message(app.fake)
    assert "*prod (111111111111)*: nothing found" in message.text  # prod was scanned too
    assert "(not managed by amibot): unknown" not in message.text  # the organisation is covered by the scans


def test_an_organisation_share_is_unknown_for_the_members_amibot_excludes(make_harness, aws):
    alpha, sandbox = organisation(aws, "Team Alpha", "Sandbox")
    image_id = seed.image(aws, "org-excluded")
    arn = aws.client("organizations").describe_organization()["Organization"]["Arn"]
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"OrganizationArn": arn}]})
    app = make_harness({"aws": {"regions": REGIONS}, "approvals": {"approvers": ["U0LEAD"]},
                        "organization": {"enabled": True, "role_name": "amibot", "exclude": ["Sandbox"]}})
    instance_id = instance_in(seed.account_session(aws, alpha), alpha, image_id, "alpha-1")
    app.command(f"deregister {image_id}")
    reply = app.last_reply().text
    assert f"*Team-Alpha ({alpha})*: 1 instance" in reply and instance_id in reply  # the managed member: scanned
    app.command(f"deregister {image_id} --force")
    message, _ = approval_message(app.fake)
    # the excluded member is reached by the share but scanned by nobody: unknown, never "nothing"
    assert f":rotating_light: *Use by account {sandbox} (not managed by amibot): unknown*" in message.text
    assert f"organisation {arn}" not in message.text  # the rest of the organisation was scanned


def test_an_organisation_share_is_unknown_while_the_organisation_cannot_be_listed(make_harness, aws, monkeypatch):
    image_id, arn = org_shared_image(aws, "org-unlisted")
    # every session made from now on (the app's) has Organizations refuse ListAccounts
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
        *botocore.handlers.BUILTIN_HANDLERS, ("before-call.organizations.ListAccounts", listing_refused())])
    app = make_harness(seed.three_accounts(REGIONS, organization={"enabled": True},
                                           approvals={"approvers": ["U0LEAD"]}))
    assert {account.name for account in app.ctx.aws.accounts} == {"bake", "prod", "staging"}  # the configured ones
    app.command(f"deregister {image_id}")
    message, _ = approval_message(app.fake)
    assert f":rotating_light: *Use by organisation {arn} (not managed by amibot): unknown*" in message.text
    assert "*prod (111111111111)*: nothing found" in message.text  # what is managed is still scanned


def test_without_organization_enabled_an_organisation_share_is_unknown(app, aws):
    image_id, arn = org_shared_image(aws, "org-unmanaged")
    app.command(f"deregister {image_id}")
    message, _ = approval_message(app.fake)
    assert f":rotating_light: *Use by organisation {arn} (not managed by amibot): unknown*" in message.text


def test_an_image_owned_by_prod_is_deregistered_in_prod_with_its_snapshots(app, aws):
    prod = seed.account_session(aws, seed.PROD)
    image_id = seed.image(prod, "prod-old")
    snapshots = snapshots_of(prod, image_id)
    app.command(f"deregister {image_id}")
    message, request_id = approval_message(app.fake)
    assert "*Account*\nprod (111111111111)" in message.text
    assert approvals.get(app.ctx, request_id).params["account"] == seed.PROD
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert approvals.get(app.ctx, request_id).state == "succeeded"
    assert not image_exists(prod, image_id) and not snapshot_exists(prod, snapshots[0])


def test_a_usage_report_still_covers_the_unmanaged_accounts(app, aws, monkeypatch):
    """AWS's usage report (Stubber: moto has none) answers for the account amibot does not manage; the managed
    one is scanned directly. The report is the owning (bake) account's, and so is the job that follows it."""
    image_id = shared_bake_image(aws, "reported-bake", UNMANAGED, seed.PROD)
    app.ctx.waits = dataclasses.replace(app.ctx.waits, usage_report_poll_seconds=0.01)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    by_id = {"ReportIds": ["amiur-0123456789abcdef0"]}
    stub.add_response("describe_image_usage_reports", {"ImageUsageReports": []}, {"ImageIds": [image_id]})
    stub.add_response("create_image_usage_report", {"ReportId": "amiur-0123456789abcdef0"},
                      {"ImageId": image_id, "ResourceTypes": ANY})
    stub.add_response("describe_image_usage_reports", {"ImageUsageReports": [report(image_id, "available")]}, by_id)
    entries = {"ImageUsageReportEntries": [{"ResourceType": "ec2:Instance", "ReportId": "amiur-0123456789abcdef0",
                                            "UsageCount": 2, "AccountId": UNMANAGED}]}
    stub.add_response("describe_image_usage_report_entries", entries, by_id)
    stub.activate()
    route(monkeypatch, app, REPORT_OPERATIONS, ec2)
    app.command(f"deregister {image_id}")
    message, request_id = approval_message(app.fake)
    assert f"*Use by account {UNMANAGED} (not managed by amibot): unknown*" in message.text
    assert "*prod (111111111111)*: nothing found" in message.text
    app.wait_idle()
    stub.assert_no_pending_responses()
    details = str(detail_blocks(approvals.get(app.ctx, request_id).details))  # as its message shows them
    assert "Used by 1 other account" in details and f"account `{UNMANAGED}`: 2 instances" in details


def test_launch_permissions_that_cannot_be_read_mean_every_managed_account_is_scanned(app, aws):
    """Who the image is shared with is unknown, so any managed account may use it: all are scanned, and a use in
    one the image was never shared with (as far as amibot can tell) still refuses."""
    image_id = seed.image(aws, "unreadable-bake")  # not shared at all, but amibot cannot know that
    prod = seed.account_session(aws, seed.PROD)
    instance_id = instance_in(prod, seed.PROD, image_id, "web-1")

    def deny(params, **_):
        if params.get("body", {}).get("Attribute") == "launchPermission":
            response = botocore.awsrequest.AWSResponse("https://ec2.amazonaws.com/", 403, {}, None)
            return response, {"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed"},
                              "ResponseMetadata": {"HTTPStatusCode": 403}}
        return None

    app.ctx.aws.home.ec2("us-east-1").meta.events.register("before-call.ec2.DescribeImageAttribute", deny)
    app.command(f"deregister {image_id}")
    reply = app.last_reply().text
    assert "prod (111111111111)" in reply and instance_id in reply and "--force" in reply
    assert not app.fake.calls_to("chat.postMessage")
    assert image_exists(aws, image_id)
