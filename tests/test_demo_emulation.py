"""The demo's emulation of what moto lacks (bot.devtools.emulation), through the real app over HTTP: the app is
built on the demo's emulated session (bot.devtools.demo.emulated_aws), so every call it makes meets the
emulated Recycle Bin, findings, instance image metadata, deprecation, protection and Allowed AMIs — and the
state of AWS afterwards is read back through the same session (and moto's backend where it has it)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from bot.devtools.console import Console, Person, ScriptSource
from tests.support import seed
from tests.support.emulation import CURL, REGION, EmulatedHarness, retention_rules

POLICY = {"aws": {"regions": [REGION]}, "access": {"operators": ["U0OPS"]},
          "approvals": {"approvers": ["U0LEAD"]}}
SSH = {"Title": "CVE-2024-6387 - openssh", "SeverityLabel": "HIGH", "Score": 8.1, "FixAvailable": True}


@pytest.fixture
def app(aws, fake_slack, tmp_path):
    running = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"), POLICY).start()
    yield running
    running.stop()


def ec2(app):
    return app.session.client("ec2", REGION)


def web_image(app, name: str = "web-1.0.0", age_days: int = 200) -> str:
    return seed.image(app.session, name, tags={"Family": "web", "Version": name.split("-")[-1]},
                      created=datetime.now(UTC) - timedelta(days=age_days))


def snapshot_of(app, image_id: str) -> str:
    image = ec2(app).describe_images(ImageIds=[image_id])["Images"][0]
    return image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


def approval(fake) -> tuple:
    for call in fake.calls_to("chat.postMessage"):
        for block in call.params.get("blocks", []):
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == "approval.approve":
                    return call, element["value"]
    raise AssertionError("no approval message was posted")


def deregister_with_approval(app, image_id: str) -> str:
    app.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval(app.fake)
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    return message.text


def test_a_deregistered_image_covered_by_a_rule_goes_to_the_bin_and_comes_back_with_its_snapshot(app):
    retention_rules(app)
    image_id = web_image(app)
    snapshot_id = snapshot_of(app, image_id)

    request_text = deregister_with_approval(app, image_id)
    assert "recoverable from the Recycle Bin for 14 days" in request_text  # the preflight read the rule
    assert ec2(app).describe_images(ImageIds=[image_id])["Images"] == []
    assert ec2(app).describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"] == []
    in_bin = ec2(app).list_images_in_recycle_bin()["Images"]
    assert [item["ImageId"] for item in in_bin] == [image_id]
    assert in_bin[0]["RecycleBinExitTime"] - in_bin[0]["RecycleBinEnterTime"] == timedelta(days=14)
    assert [s["SnapshotId"] for s in ec2(app).list_snapshots_in_recycle_bin()["Snapshots"]] == [snapshot_id]

    app.command("recycle-bin", user="U0OPS")
    assert image_id in app.last_reply().text and "web-1.0.0" in app.last_reply().text

    app.command(f"restore {image_id}", user="U0OPS")
    reply = app.fake.calls_to("chat.postMessage")[-1].text  # in the channel: an undo everyone should see
    assert "image restored" in reply and f"{snapshot_id}`: restored" in reply
    back = ec2(app).describe_images(ImageIds=[image_id])["Images"]
    assert back and back[0]["State"] == "available"
    assert {tag["Key"]: tag["Value"] for tag in back[0]["Tags"]}["Family"] == "web"
    assert back[0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snapshot_id
    assert ec2(app).describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["SnapshotId"] == snapshot_id
    assert ec2(app).list_images_in_recycle_bin()["Images"] == []
    assert ec2(app).list_snapshots_in_recycle_bin()["Snapshots"] == []
    # restored for real: it can be deregistered again (moto forgot it had been deleted)
    ec2(app).deregister_image(ImageId=image_id)


def test_without_a_covering_rule_deregistration_is_irreversible(app):
    app.session.client("rbin", REGION).create_rule(
        ResourceType="EC2_IMAGE", RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
        ResourceTags=[{"ResourceTagKey": "Keep", "ResourceTagValue": "yes"}])  # does not cover web-1.0.0
    image_id = web_image(app)
    deregister_with_approval(app, image_id)
    assert ec2(app).list_images_in_recycle_bin()["Images"] == []
    app.command(f"restore {image_id}", user="U0OPS")
    assert "neither in the Recycle Bin nor registered" in app.last_reply().text


def test_an_image_leaves_the_bin_for_good_when_its_retention_ends(app):
    retention_rules(app, days=1)
    image_id = web_image(app)
    ec2(app).deregister_image(ImageId=image_id)
    assert ec2(app).list_images_in_recycle_bin()["Images"]
    app.emulation.clock = lambda: datetime.now(UTC) + timedelta(days=1, minutes=1)
    assert ec2(app).list_images_in_recycle_bin()["Images"] == []
    with pytest.raises(ClientError, match="InvalidAMIID.NotFound"):
        ec2(app).restore_image_from_recycle_bin(ImageId=image_id)


def test_findings_are_served_for_show_and_stop_a_promotion_without_force(app):
    image_id = web_image(app, "web-1.1.0")
    app.emulation.add_findings(REGION, image_id, [CURL, SSH])
    pages = list(ec2(app).get_paginator("get_image_findings").paginate(ImageId=image_id,
                                                                       PaginationConfig={"PageSize": 1}))
    assert [len(page["ImageFindings"]) for page in pages] == [1, 1]  # NextToken paging, as AWS pages

    app.command(f"show {image_id}", user="U0OPS")
    shown = app.last_reply().text
    assert "1 critical" in shown and "1 high" in shown and "CVE-2023-38545 - curl, libcurl" in shown

    app.command(f"promote {image_id}", user="U0OPS")
    assert "not promoted" in app.last_reply().text
    tags = ec2(app).describe_images(ImageIds=[image_id])["Images"][0]["Tags"]
    assert "amibot:current" not in {tag["Key"] for tag in tags}  # nothing changed in AWS


def test_an_instance_on_a_gone_image_keeps_its_image_metadata_and_drifts(app):
    current = web_image(app, "web-2.0.0", age_days=10)
    old = web_image(app, "web-1.0.0", age_days=300)
    on_old = seed.instance(app.session, image_id=old, name="web-legacy")
    seed.instance(app.session, image_id=current, name="web-new")
    ec2(app).deregister_image(ImageId=old)  # no rule: gone for good, but the instance still runs it

    metadata = {item["InstanceId"]: item for item in
                ec2(app).describe_instance_image_metadata(
                    Filters=[{"Name": "instance-state-name", "Values": ["running"]}])["InstanceImageMetadata"]}
    assert metadata[on_old]["ImageMetadata"] == {
        "ImageId": old, "Name": "web-1.0.0", "OwnerId": "123456789012", "State": "deregistered",
        "CreationDate": metadata[on_old]["ImageMetadata"]["CreationDate"], "IsPublic": False}
    assert metadata[on_old]["State"]["Name"] == "running" and metadata[on_old]["LaunchTime"].tzinfo is not None

    app.command("drift", user="U0OPS")
    reply = app.last_reply().text
    assert f"1 instance on a *deregistered* image *web-1.0.0* `{old}`" in reply
    assert "instance image metadata" in reply  # the emulated API answered, not the fallback


def test_deprecation_protection_and_last_launch_show_in_describe_images(app):
    image_id = web_image(app)
    seed.instance(app.session, image_id=image_id)
    client = ec2(app)
    at = datetime.now(UTC) + timedelta(days=3, seconds=40)
    client.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)
    client.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=True)
    image = client.describe_images(ImageIds=[image_id])["Images"][0]
    assert image["DeprecationTime"] == (at + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:00.000Z")
    assert image["DeregistrationProtection"] == "enabled-with-cooldown"
    assert image["LastLaunchedTime"].startswith(datetime.now(UTC).strftime("%Y-%m-%d"))
    with pytest.raises(ClientError, match="OperationNotPermitted"):
        client.deregister_image(ImageId=image_id)
    client.disable_image_deregistration_protection(ImageId=image_id)
    value = client.describe_image_attribute(ImageId=image_id, Attribute="deregistrationProtection")
    assert value["DeregistrationProtection"]["Value"].startswith("disabled-until ")  # the 24-hour cooldown
    with pytest.raises(ClientError, match="OperationNotPermitted"):
        client.deregister_image(ImageId=image_id)
    assert client.describe_images(ImageIds=[image_id])["Images"]  # still there
    client.disable_image_deprecation(ImageId=image_id)
    assert "DeprecationTime" not in client.describe_images(ImageIds=[image_id])["Images"][0]


def test_allowed_images_settings_are_served(app):
    client = ec2(app)
    assert client.get_allowed_images_settings()["State"] == "disabled"
    client.replace_image_criteria_in_allowed_images_settings(
        ImageCriteria=[{"ImageProviders": ["amazon"]},
                       {"ImageProviders": ["123456789012"], "CreationDateCondition": {"MaximumDaysSinceCreated": 90}}])
    client.enable_allowed_images_settings(AllowedImagesSettingsState="audit-mode")
    app.command("allowed", user="U0OPS")
    reply = app.last_reply().text
    assert "audit mode" in reply and "created within 90 days" in reply


def test_the_console_shows_the_home_tab_each_person_sees(app):
    out = io.StringIO()
    people = [Person("U0OPS", "ops", "operator"), Person("U0LEAD", "lead", "approver")]
    image_id = web_image(app)
    console = Console(app.local, people, "C0OPS", "ops", out, digest=lambda: "none",
                      resolve=lambda name: image_id)
    script = ["/ami deregister {web-1.0.0}", ":as lead", ":home", ":expect Waiting for you (1)",
              ":expect Deregister web-1.0.0", ":as ops", ":home", ":expect Waiting for you (0)",
              ":expect Your requests", ":expect pending"]
    code = console.run(ScriptSource(script))
    printed = out.getvalue()
    assert code == 0, printed[-3000:]
    assert "amibot's App Home, as @lead sees it" in printed and "amibot's App Home, as @ops sees it" in printed
    assert "[" in printed.split("as @lead sees it")[1].split("Your requests")[0]  # its buttons are numbered


ACCOUNTS = {**POLICY, "accounts": [{"id": seed.BAKE, "name": "bake"},
                                   {"id": seed.PROD, "name": "prod", "role_arn": seed.role_arn(seed.PROD)}]}


@pytest.fixture
def accounts_app(aws, fake_slack, tmp_path):
    running = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"), ACCOUNTS).start()
    yield running
    running.stop()


def test_an_assumed_account_has_its_own_emulated_state_and_runs_images_shared_with_it(accounts_app):
    app = accounts_app
    retention_rules(app)  # in bake only
    image_id = web_image(app)
    ec2(app).modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": seed.PROD}]})
    prod = seed.account_session(app.session, seed.PROD)
    app.emulation.install(prod, seed.PROD)
    instance_id = seed.instance_on_shared_image(prod, image_id, name="storefront-1")

    [item] = prod.client("ec2", REGION).describe_instance_image_metadata(
        InstanceIds=[instance_id])["InstanceImageMetadata"]
    assert item["OwnerId"] == seed.PROD  # the instance is prod's, the image bake's
    assert {key: item["ImageMetadata"][key] for key in ("ImageId", "Name", "OwnerId", "State")} == {
        "ImageId": image_id, "Name": "web-1.0.0", "OwnerId": seed.BAKE, "State": "available"}
    assert "LastLaunchedTime" in ec2(app).describe_images(ImageIds=[image_id])["Images"][0]  # launched, in prod

    app.command("recycle-bin", user="U0OPS")  # through the app: its prod handle answers from prod's state
    shown = str(app.last_reply().params.get("blocks"))
    bake, _, prod_part = shown.partition("prod (111111111111)")
    assert "14 days" in bake and "no retention rules" in prod_part and "14 days" not in prod_part


def test_rule_coverage_follows_aws_tag_level_and_region_level_rules():
    from bot.devtools.emulation import covers

    tag_level = {"ResourceTags": [{"ResourceTagKey": "Keep", "ResourceTagValue": "yes"},
                                  {"ResourceTagKey": "Team", "ResourceTagValue": "web"}]}
    assert covers(tag_level, {"Team": "web"}) and covers(tag_level, {"Keep": "yes", "Team": "api"})
    assert not covers(tag_level, {"Team": "api"}) and not covers(tag_level, {})
    region_level = {"ExcludeResourceTags": [{"ResourceTagKey": "Scratch", "ResourceTagValue": "true"}]}
    assert covers(region_level, {}) and covers(region_level, {"Scratch": "false"})
    assert not covers(region_level, {"Scratch": "true", "Team": "web"})


def test_a_snapshot_still_used_by_an_image_is_refused_and_stays_out_of_the_bin(app):
    retention_rules(app)
    image_id = web_image(app)
    snapshot_id = snapshot_of(app, image_id)
    with pytest.raises(ClientError, match="InvalidSnapshot.InUse"):  # moto's answer, as AWS's
        ec2(app).delete_snapshot(SnapshotId=snapshot_id)
    assert ec2(app).list_snapshots_in_recycle_bin()["Snapshots"] == []
    ec2(app).deregister_image(ImageId=image_id)
    ec2(app).delete_snapshot(SnapshotId=snapshot_id)  # now it goes, into the bin
    assert [s["SnapshotId"] for s in ec2(app).list_snapshots_in_recycle_bin()["Snapshots"]] == [snapshot_id]


def test_a_prod_operator_launches_an_image_shared_with_prod_into_prod(accounts_app):
    app = accounts_app
    image_id = web_image(app)
    ec2(app).modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": seed.PROD}]})
    unshared = web_image(app, "web-2.0.0", age_days=10)

    app.command(f"launch {image_id} t3.small 1 --account prod", user="U0OPS")
    said = [call.text for call in app.fake.calls_to("chat.update")]
    assert said and "1 instance(s) running" in said[-1] and "prod (111111111111)" in said[-1]
    prod = seed.account_session(app.session, seed.PROD).client("ec2", REGION)
    running = prod.describe_instances(Filters=[{"Name": "image-id", "Values": [image_id]}])["Reservations"]
    assert len(running) == 1  # in prod, from bake's image, as AWS launches an image shared with the account
    with pytest.raises(ClientError, match="InvalidAMIID"):  # not shared with prod: refused, as AWS refuses it
        prod.run_instances(ImageId=unshared, MinCount=1, MaxCount=1)
    with pytest.raises(ClientError, match="InvalidAMIID"):  # and nothing of the shared one stays behind in prod
        prod.describe_images(ImageIds=[image_id])


def test_the_demo_bakes_through_its_emulated_pipeline_and_refreshes_instances_in_every_account(
        aws, fake_slack, tmp_path):
    import dataclasses

    from bot.devtools import fleet
    from bot.devtools.demo import DEMO_WAITS, RunEmulations

    arn = fleet.pipeline_arn(seed.BAKE, "web")
    policy = {**ACCOUNTS, "bakes": [{"family": "web", "account": "bake", "pipeline": arn}]}
    runs = RunEmulations.new(stage_seconds=0.3)
    app = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"), policy, runs=runs).start()
    try:
        app.amibot.ctx.waits = dataclasses.replace(app.amibot.ctx.waits, **{**DEMO_WAITS, "bake_poll_seconds": 0.05})
        image_id = web_image(app)
        assert runs.bake.add_pipeline(REGION, "web", image_id) == arn

        app.command("bake web", user="U0OPS")  # through the app: the bake runs in the emulated Image Builder
        said = [call.text for call in app.fake.calls_to("chat.update")]
        assert said and "done" in said[-1] and "1.0.1" in said[-1]
        shown = str(app.fake.calls_to("chat.update")[-1].params.get("blocks"))
        assert all(stage in shown for stage in ("PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE"))

        # prod's session (an assumed role) refreshes prod's groups, as the bot's own refreshes its own
        ec2 = app.session.client("ec2", REGION)
        ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": seed.PROD}]})
        prod = app.amibot.ctx.aws.of("prod")
        template = seed.launch_template(seed.account_session(app.session, seed.PROD), "storefront-web", image_id)
        subnet = prod.ec2(REGION).describe_subnets()["Subnets"][0]["SubnetId"]
        autoscaling = prod.client("autoscaling", REGION)
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="storefront", MinSize=0, MaxSize=2, DesiredCapacity=0, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Default"})
        refresh_id = autoscaling.start_instance_refresh(AutoScalingGroupName="storefront")["InstanceRefreshId"]
        [refresh] = autoscaling.describe_instance_refreshes(AutoScalingGroupName="storefront")["InstanceRefreshes"]
        assert refresh["InstanceRefreshId"] == refresh_id
        assert [item.id for item in runs.refresh[seed.PROD].refreshes_of(REGION, "storefront")] == [refresh_id]
        assert sorted(runs.refresh) == sorted([seed.BAKE, seed.PROD])
    finally:
        app.stop()


def test_a_copy_reports_the_image_it_was_copied_from_so_lineage_finds_it(app):
    """AWS's DescribeImages names a copy's SourceImageId and SourceImageRegion (moto keeps neither): lineage — and a
    revocation's --descendants, the playground's baked versions copied to eu-west-1 — find copies through it."""
    source = web_image(app)
    copied = ec2(app).copy_image(SourceImageId=source, SourceRegion=REGION, Name="web-1.0.0-copy")["ImageId"]
    image = ec2(app).describe_images(ImageIds=[copied])["Images"][0]
    assert (image["SourceImageId"], image["SourceImageRegion"]) == (source, REGION)
    assert "SourceImageId" not in ec2(app).describe_images(ImageIds=[source])["Images"][0]

    app.command(f"lineage {copied}", user="U0OPS")
    assert source in app.last_reply().text
