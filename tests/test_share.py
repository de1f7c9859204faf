"""`/ami share` and `/ami unshare` end to end: launch and snapshot permissions in moto, approvals, refusals."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from tests.support import seed

FRIEND, STRANGER = "111122223333", "444455556666"
ORG = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
OU = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56"
POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]},
          "sharing": {"allowed_accounts": [FRIEND], "allow_public": True}}


@pytest.fixture
def policy_data():
    return json.loads(json.dumps(POLICY))


def launch_permissions(aws, image_id, region="us-east-1"):
    return aws.client("ec2", region).describe_image_attribute(
        ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]


def volume_permissions(aws, image_id, region="us-east-1"):
    ec2 = aws.client("ec2", region)
    [image] = ec2.describe_images(ImageIds=[image_id])["Images"]
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    return ec2.describe_snapshot_attribute(SnapshotId=snapshot_id,
                                           Attribute="createVolumePermission")["CreateVolumePermissions"]


def snapshot_of(aws, image_id):
    [image] = aws.client("ec2").describe_images(ImageIds=[image_id])["Images"]
    return image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


def posts(harness, containing=""):
    return [c for c in harness.fake.calls_to("chat.postMessage") if containing in c.text]


def request_of(harness):
    row = harness.ctx.store.one("SELECT * FROM requests WHERE kind = 'share' ORDER BY created_at DESC")
    assert row, "no approval request was stored"
    return row


def approve(harness, request):
    message = next(c for c in posts(harness) if request["id"] in c.text and "Approve" in c.text)
    harness.click("approval.approve", value=request["id"], user="U0LEAD", channel="C0OPS", message_ts=message.ts)
    return message


def audit_detail(harness, action):
    row = harness.ctx.store.query("SELECT * FROM audit WHERE action = ? ORDER BY id DESC", (action,))[0]
    return row["outcome"], json.loads(row["detail"])


def test_an_allowed_account_is_shared_at_once_and_unshare_takes_both_permissions_back(harness, aws):
    image_id = seed.image(aws, "web-v1")
    snapshot_id = snapshot_of(aws, image_id)
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    snapshot = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].snapshots[snapshot_id]
    # moto's private backend: moto never encrypts an image's snapshot, and no public call can (moto.md)
    snapshot.encrypted, snapshot.kms_key_id = True, key

    harness.command(f"share {image_id} {FRIEND}")
    assert launch_permissions(aws, image_id) == [{"UserId": FRIEND}]
    assert volume_permissions(aws, image_id) == [{"UserId": FRIEND}]
    [shared] = posts(harness, "shared")
    assert shared.params["channel"] == "C0OPS"
    assert f"<@U0OPS> shared *web-v1* `{image_id}` (us-east-1) with account `{FRIEND}`" in shared.text
    assert snapshot_id in shared.text
    assert f"the receiver must be granted use of KMS key(s) {key}" in shared.text
    assert "amibot does not change key policies" in shared.text
    outcome, detail = audit_detail(harness, "command.share")
    assert outcome == "ok" and detail["target"] == FRIEND and detail["snapshots"] == [snapshot_id]
    harness.command(f"show {image_id}")
    assert f"account `{FRIEND}`" in harness.last_reply().text

    harness.command(f"share {image_id} {FRIEND}")
    assert "is already shared with account" in harness.last_reply().text

    harness.command(f"unshare {image_id} {FRIEND}")
    assert launch_permissions(aws, image_id) == []
    assert volume_permissions(aws, image_id) == []
    assert f"<@U0OPS> stopped sharing *web-v1* `{image_id}` (us-east-1) with account `{FRIEND}`" in \
        posts(harness, "stopped sharing")[-1].text
    outcome, detail = audit_detail(harness, "command.unshare")
    assert outcome == "ok" and detail["was_shared"] is True
    harness.command(f"show {image_id}")
    assert "private (this account only)" in harness.last_reply().text


def test_another_account_needs_approval_and_is_shared_when_approved(harness, aws):
    image_id = seed.image(aws, "web-v1", region="eu-west-1")
    harness.command(f"share {image_id} {STRANGER} --region eu-west-1")
    reply = harness.last_reply().text
    assert f"account {STRANGER} is not in [sharing].allowed_accounts" in reply
    assert launch_permissions(aws, image_id, "eu-west-1") == []
    request = request_of(harness)
    assert request["id"] in reply and request["state"] == "pending"
    assert audit_detail(harness, "command.share")[1]["approval_request"] == request["id"]

    message = approve(harness, request)
    assert "Snapshots it may copy" in message.text
    assert launch_permissions(aws, image_id, "eu-west-1") == [{"UserId": STRANGER}]
    assert volume_permissions(aws, image_id, "eu-west-1") == [{"UserId": STRANGER}]
    done = request_of(harness)
    assert done["state"] == "succeeded" and f"Shared {image_id} (eu-west-1) with account {STRANGER}" in done["outcome"]

    harness.command(f"unshare {image_id} {STRANGER}")  # no approval to take it back
    assert launch_permissions(aws, image_id, "eu-west-1") == []
    assert volume_permissions(aws, image_id, "eu-west-1") == []


def test_organisations_and_ous_need_approval_and_get_no_snapshot_permission(harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness.command(f"share {image_id} org:{ORG}")
    assert "sharing with a whole organization always needs approval" in harness.last_reply().text
    approve(harness, request_of(harness))
    harness.command(f"share {image_id} ou:{OU}")
    request = approve(harness, request_of(harness))
    assert {json.dumps(p, sort_keys=True) for p in launch_permissions(aws, image_id)} == {
        json.dumps({"OrganizationArn": ORG}), json.dumps({"OrganizationalUnitArn": OU})}
    assert volume_permissions(aws, image_id) == []
    thread = [c.text for c in posts(harness) if c.params.get("thread_ts") == request.ts]
    assert any("Snapshots cannot be shared with a whole organizational unit" in text for text in thread)
    harness.command(f"show {image_id}")
    assert ORG in harness.last_reply().text and OU in harness.last_reply().text

    harness.command(f"unshare {image_id} {ORG}")  # the bare ARN works as well
    assert launch_permissions(aws, image_id) == [{"OrganizationalUnitArn": OU}]


def test_public_needs_approval_and_is_refused_while_block_public_access_is_on(harness, aws):
    image_id = seed.image(aws, "web-v1")
    probe = harness.ctx.aws.home.client("ec2", "us-east-1", max_attempts=1)  # the client amibot probes with
    stubber = Stubber(probe)
    stubber.add_response("get_image_block_public_access_state",
                         {"ImageBlockPublicAccessState": "block-new-sharing", "ManagedBy": "account"})
    stubber.add_response("get_image_block_public_access_state", {"ImageBlockPublicAccessState": "unblocked"})
    with stubber:
        harness.command(f"share {image_id} public")
        assert "Image block public access is on for this account in us-east-1" in harness.last_reply().text
        assert harness.ctx.store.query("SELECT * FROM requests") == []

        harness.command(f"share {image_id} public")
        request = request_of(harness)
        assert request["danger"] == 1
        assert "*Image block public access*\nunblocked" in posts(harness, request["id"])[0].text
        harness.click("approval.cancel", value=request["id"], user="U0OPS", channel="C0OPS")
    stubber.assert_no_pending_responses()

    # moto has no GetImageBlockPublicAccessState: the state is unknown, and the request says so
    harness.command(f"share {image_id} public")
    assert "image block public access state is unknown" in harness.last_reply().text
    request = request_of(harness)
    assert "anyone with an AWS account can launch this image" in posts(harness, request["id"])[0].text
    approve(harness, request)
    assert request_of(harness)["state"] == "succeeded"
    assert aws.client("ec2").describe_images(ImageIds=[image_id])["Images"][0]["Public"] is True
    assert volume_permissions(aws, image_id) == []  # the snapshots stay private
    harness.command(f"show {image_id}")
    assert "*public*" in harness.last_reply().text

    harness.command(f"unshare {image_id} public")
    assert aws.client("ec2").describe_images(ImageIds=[image_id])["Images"][0]["Public"] is False


MALFORMED = [
    ("share {image} 12345", "`12345` is not an AWS account id: it has 12 digits"),
    ("share {image} 1234-5678-9012", "`1234-5678-9012` is not an AWS account id"),
    ("share {image} org:o-a1b2c3d4e5", "`o-a1b2c3d4e5` is not an organization ARN"),
    ("share {image} ou:arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-xx",
     "is not an organizational unit ARN; it looks like `ou:arn:aws:organizations::123456789012:ou/"),
    ("share {image} friends", "`friends` is not something to share with"),
    ("share ami-nothex {friend}", "`ami-nothex` is not a valid ami-id"),
    ("share {image}", "`share` needs a target"),
    ("share {image} {friend} --region mars", "mars is not an AWS region"),
    ("share {image} 123456789012", "123456789012 is this account"),
    ("unshare {image} 12", "`12` is not an AWS account id"),
    ("share {image} public", "Making images public is turned off here ([sharing].allow_public = false)"),
    ("share ami-0123456789abcdef0 {friend}", "AMI ami-0123456789abcdef0 not found in us-east-1, eu-west-1"),
]


def test_malformed_targets_and_public_when_turned_off_get_a_clear_message(make_harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness = make_harness({**POLICY, "sharing": {"allowed_accounts": [FRIEND]}})
    for text, message in MALFORMED:
        harness.command(text.format(image=image_id, friend=FRIEND))
        assert message in harness.last_reply().text, text
    assert launch_permissions(aws, image_id) == []
    assert harness.ctx.store.query("SELECT * FROM requests") == []
