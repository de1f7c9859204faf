"""`/ami recycle-bin`, `/ami recycle-bin enable` and `/ami restore` through the real app over HTTP.

moto has no Recycle Bin, so the rbin client and the one-attempt EC2 client amibot keeps for Recycle Bin calls
are stubbed with botocore's Stubber, with response shapes from AWS's API reference; everything else is moto.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tests.support import seed
from tests.support.approvals import approval_message
from tests.support.probes import route_probes

POLICY = {"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS"]},
          "approvals": {"approvers": ["U0LEAD"]}}
NOW = datetime.now(UTC)
DAYS = {"RetentionPeriodValue": 14, "RetentionPeriodUnit": "DAYS"}


@pytest.fixture
def policy_data():
    return POLICY


@pytest.fixture
def stubs(harness, monkeypatch):
    """(rbin Stubber, ec2 Recycle Bin Stubber), wired into the running app's AWS layer."""
    rbin = boto3.client("rbin", region_name="us-east-1")
    ec2_bin = boto3.client("ec2", region_name="us-east-1")
    route_probes(harness, monkeypatch, ec2=ec2_bin, rbin=rbin)
    with Stubber(rbin) as rbin_stub, Stubber(ec2_bin) as ec2_stub:
        yield rbin_stub, ec2_stub
        rbin_stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()


def rules(stub, image_rules, snapshot_rules):
    for resource_type, found in (("EC2_IMAGE", image_rules), ("EBS_SNAPSHOT", snapshot_rules)):
        stub.add_response("list_rules", {"Rules": [{"Identifier": rule["Identifier"], "RetentionPeriod": DAYS}
                                                   for rule in found]}, {"ResourceType": resource_type})
        for rule in found:
            stub.add_response("get_rule", {"ResourceType": resource_type, "Status": "available",
                                           "RetentionPeriod": DAYS, **rule}, {"Identifier": rule["Identifier"]})


def test_recycle_bin_shows_rules_scope_lock_and_images_with_their_expiry(harness, stubs):
    rbin_stub, ec2_stub = stubs
    rules(rbin_stub, [{"Identifier": "img-rule-1", "LockState": "locked",
                       "ResourceTags": [{"ResourceTagKey": "Team", "ResourceTagValue": "web"}]}],
          [{"Identifier": "snap-rule-1"}])
    ec2_stub.add_response("list_images_in_recycle_bin", {"Images": [
        {"ImageId": "ami-0aaaaaaaaaaaaaaa1", "Name": "web-1.0.0", "RecycleBinEnterTime": NOW - timedelta(days=10),
         "RecycleBinExitTime": NOW + timedelta(days=4, hours=1)},
        {"ImageId": "ami-0aaaaaaaaaaaaaaa2", "Name": "web-1.1.0", "RecycleBinEnterTime": NOW - timedelta(days=1),
         "RecycleBinExitTime": NOW + timedelta(days=13, hours=1)},
        {"Name": "an item with no id is skipped, not a crash"}]}, {})
    ec2_stub.add_response("list_snapshots_in_recycle_bin", {"Snapshots": [{"SnapshotId": "snap-0aaaaaaaaaaaaaaa1"}]},
                          {})
    harness.command("recycle-bin")
    text = harness.last_reply().text
    assert "images: 14 days · tags Team=web · :lock: locked · `img-rule-1`" in text
    assert "snapshots: 14 days · all · unlocked · `snap-rule-1`" in text
    assert "2 images in the bin, soonest to leave first" in text
    assert text.index("web-1.0.0") < text.index("web-1.1.0")
    assert "(in 5 days)" in text and "(in 14 days)" in text  # 4 days and an hour left: within 5 days
    assert "1 snapshot(s) in the bin" in text


def test_an_endpoint_without_the_recycle_bin_is_unknown_never_none(harness):
    harness.command("recycle-bin")
    text = harness.last_reply().text
    assert "retention rules unknown: this AWS endpoint does not support rbin:ListRules" in text
    assert "images in the bin unknown: this AWS endpoint does not support ec2:ListImagesInRecycleBin" in text
    assert "no images in the bin" not in text and "no retention rules" not in text


def test_no_image_rule_says_deregistration_is_irreversible(harness, stubs):
    rbin_stub, ec2_stub = stubs
    rules(rbin_stub, [], [])
    ec2_stub.add_response("list_images_in_recycle_bin", {"Images": []}, {})
    ec2_stub.add_response("list_snapshots_in_recycle_bin", {"Snapshots": []}, {})
    harness.command("recycle-bin")
    text = harness.last_reply().text
    assert "no rule keeps images: deregistration is *irreversible* here" in text
    assert "no images in the bin" in text


def test_enable_needs_approval_then_creates_an_image_and_a_snapshot_rule(harness, stubs):
    rbin_stub, _ = stubs
    harness.command("recycle-bin enable --days 10 --tag Team=web")
    assert "Asked for approval to keep deregistered images and their snapshots 10 days" in harness.last_reply().text
    message, request_id = approval_message(harness.fake)
    assert "images tagged `Team=web`" in message.text

    for resource_type, rule_id in (("EC2_IMAGE", "new-img"), ("EBS_SNAPSHOT", "new-snap")):
        rbin_stub.add_response("list_rules", {"Rules": []}, {"ResourceType": resource_type})
        rbin_stub.add_response("create_rule", {"Identifier": rule_id}, {
            "ResourceType": resource_type, "Description": ANY, "Tags": [{"Key": "amibot:request", "Value": request_id}],
            "RetentionPeriod": {"RetentionPeriodValue": 10, "RetentionPeriodUnit": "DAYS"},
            "ResourceTags": [{"ResourceTagKey": "Team", "ResourceTagValue": "web"}]})
    harness.click("approval.approve", request_id, user="U0LEAD")
    request = harness.ctx.store.one("SELECT state, outcome FROM requests WHERE id = ?", (request_id,))
    assert request["state"] == "succeeded"
    assert "us-east-1 images (new-img), us-east-1 snapshots (new-snap)" in request["outcome"]


def test_enable_is_refused_for_someone_who_is_not_an_operator(harness):
    harness.command("recycle-bin enable", user="U0INTERN")
    assert "operators" in harness.last_reply().text.lower()
    assert harness.ctx.store.query("SELECT * FROM requests") == []


def test_bad_days_and_tags_get_a_short_answer(harness):
    harness.command("recycle-bin enable --days 999")
    assert "`--days` takes a whole number of days from 1 to 365" in harness.last_reply().text
    harness.command("recycle-bin enable --tag novalue")
    assert "`--tag` takes KEY=VALUE" in harness.last_reply().text


def test_restore_brings_back_the_image_and_the_snapshots_deleted_with_it(harness, aws, stubs):
    _, ec2_stub = stubs
    image_id = "ami-0bbbbbbbbbbbbbbb1"
    own, unrelated = "snap-0bbbbbbbbbbbbbbb1", "snap-0bbbbbbbbbbbbbbb2"
    ec2_stub.add_response("list_images_in_recycle_bin", {"Images": [
        {"ImageId": image_id, "Name": "web-1.0.0", "RecycleBinExitTime": NOW + timedelta(days=3)}]},
        {"ImageIds": [image_id]})
    ec2_stub.add_response("list_snapshots_in_recycle_bin", {"Snapshots": [
        {"SnapshotId": own, "Description": f"Created by CreateImage(i-0123456789abcdef0) for {image_id} from vol-1"},
        {"SnapshotId": unrelated, "Description": "a backup"}]}, {})
    ec2_stub.add_response("restore_snapshot_from_recycle_bin", {"SnapshotId": own, "State": "completed"},
                          {"SnapshotId": own})
    ec2_stub.add_response("restore_image_from_recycle_bin", {"Return": True}, {"ImageId": image_id})
    harness.command(f"restore {image_id}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert f"restored `{image_id}` in us-east-1: image restored" in posted
    assert f"snapshot `{own}`: restored" in posted and unrelated not in posted
    row = harness.ctx.store.one("SELECT outcome, target, detail FROM audit WHERE action = 'command.restore'")
    assert row["outcome"] == "ok" and row["target"] == image_id and own in row["detail"]


def test_restore_that_fails_half_way_says_what_came_back_and_is_audited_as_failed(harness, stubs):
    _, ec2_stub = stubs
    image_id, snapshot_id = "ami-0ccccccccccccccc1", "snap-0ccccccccccccccc1"
    ec2_stub.add_response("list_images_in_recycle_bin", {"Images": [{"ImageId": image_id}]}, {"ImageIds": [image_id]})
    ec2_stub.add_response("list_snapshots_in_recycle_bin", {"Snapshots": [
        {"SnapshotId": snapshot_id, "Description": f"Copied for DestinationAmi {image_id} from SourceAmi ami-1"}]}, {})
    ec2_stub.add_client_error("restore_snapshot_from_recycle_bin", "IncorrectState", "The snapshot is locked",
                              expected_params={"SnapshotId": snapshot_id})
    ec2_stub.add_response("restore_image_from_recycle_bin", {"Return": True}, {"ImageId": image_id})
    harness.command(f"restore {image_id}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "image restored" in posted and f"snapshot `{snapshot_id}`: not restored" in posted
    assert "was only partly restored" in harness.last_reply().text
    row = harness.ctx.store.one("SELECT outcome FROM audit WHERE action = 'command.restore'")
    assert row["outcome"] == "failed: partly restored"


def test_restore_of_an_image_that_is_nowhere_says_so(harness, stubs):
    _, ec2_stub = stubs
    image_id = "ami-0ddddddddddddddd1"
    ec2_stub.add_response("list_images_in_recycle_bin", {"Images": []}, {"ImageIds": [image_id]})
    harness.command(f"restore {image_id}")
    assert f"{image_id} is neither in the Recycle Bin nor registered in us-east-1" in harness.last_reply().text


def test_restore_again_after_the_image_is_back_finishes_its_snapshots(harness, aws, stubs):
    _, ec2_stub = stubs
    image_id = seed.image(aws, "web-back")  # the image is registered again (restored before a restart)
    snapshot_id = "snap-0eeeeeeeeeeeeeee1"
    ec2_stub.add_response("list_images_in_recycle_bin", {"Images": []}, {"ImageIds": [image_id]})
    ec2_stub.add_response("list_snapshots_in_recycle_bin", {"Snapshots": [
        {"SnapshotId": snapshot_id, "Description": f"Created by CreateImage(i-1) for {image_id} from vol-1"}]}, {})
    ec2_stub.add_response("restore_snapshot_from_recycle_bin", {"SnapshotId": snapshot_id},
                          {"SnapshotId": snapshot_id})
    ec2_stub.add_client_error("restore_image_from_recycle_bin", "InvalidAMIID.NotFound", "not in the bin",
                              expected_params={"ImageId": image_id})
    harness.command(f"restore {image_id}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "image already back (or expired)" in posted and f"snapshot `{snapshot_id}`: restored" in posted


def test_restore_is_for_operators(harness):
    harness.command("restore ami-0ddddddddddddddd1", user="U0INTERN")
    assert "operators" in harness.last_reply().text.lower()
