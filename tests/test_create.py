"""`/ami create`, `register` and `base` end to end: signed HTTP in, fake Slack out, moto behind."""

from __future__ import annotations

import json
from unittest.mock import Mock

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from bot.services.create import wait_for_image
from tests.support import seed

OPERATORS = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "access": {"operators": ["U0OPS"]}}


@pytest.fixture
def policy_data():
    return OPERATORS


def tags_of(aws, image_id, region="us-east-1"):
    image = aws.client("ec2", region).describe_images(ImageIds=[image_id])["Images"][0]
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


def own_images(aws, region="us-east-1", name=None):
    filters = [{"Name": "name", "Values": [name]}] if name else []
    return aws.client("ec2", region).describe_images(Owners=["self"], Filters=filters)["Images"]


def posted_and_updated(harness):
    posts = harness.fake.calls_to("chat.postMessage")
    updates = harness.fake.calls_to("chat.update")
    assert posts and updates, [c.method for c in harness.fake.calls]
    return posts[-1], updates[-1]


# --- create -------------------------------------------------------------------------------------

def test_create_posts_pending_then_available_with_buttons_and_tags_the_image(harness, aws):
    instance = seed.instance(aws, name="web-1")
    harness.command(f"create {instance} web-2025-06-01 --family web --version 42")
    post, update = posted_and_updated(harness)
    image_id = own_images(aws, name="web-2025-06-01")[0]["ImageId"]
    assert image_id in post.text and "pending" in post.text and "without a reboot" in post.text
    assert "file systems were not quiesced" in post.text
    assert update.params["ts"] == post.ts
    assert "available" in update.text and f"instance {instance} (web-1)" in update.text
    buttons = [e for b in update.params["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("image.launch", image_id), ("image.share", image_id)]
    assert tags_of(aws, image_id) == {"Family": "web", "Version": "42", "amibot:created-by": "U0OPS"}
    rows = harness.ctx.store.query("SELECT action, target, outcome FROM audit ORDER BY id")
    assert ("command.create", instance, "ok") in [(r["action"], r["target"], r["outcome"]) for r in rows]
    assert ("image.watch", image_id, "available") in [(r["action"], r["target"], r["outcome"]) for r in rows]


def test_create_in_another_region_with_reboot_derives_the_family_from_the_name(harness, aws):
    instance = seed.instance(aws, region="eu-west-1")
    harness.command(f"create {instance} api-v7 --reboot")
    post, update = posted_and_updated(harness)
    image = own_images(aws, "eu-west-1", name="api-v7")[0]
    assert "eu-west-1" in update.text and "rebooted" in post.text
    assert tags_of(aws, image["ImageId"], "eu-west-1")["Family"] == "api"
    assert "Version" not in tags_of(aws, image["ImageId"], "eu-west-1")


def test_create_refuses_an_unknown_instance_and_a_name_already_taken(harness, aws):
    harness.command("create i-0123456789abcdef0 web-x")
    assert "Instance i-0123456789abcdef0 not found in us-east-1, eu-west-1" in harness.last_reply().text
    instance = seed.instance(aws)
    existing = seed.image(aws, "web-1", from_instance=instance)
    harness.command(f"create {instance} web-1")
    text = harness.last_reply().text
    assert "An AMI named “web-1” already exists in us-east-1" in text and existing in text
    assert len(own_images(aws, name="web-1")) == 1 and own_images(aws, name="web-x") == []
    assert harness.fake.calls_to("chat.postMessage") == []


def test_create_refuses_bad_input_and_non_operators_without_creating_anything(harness, aws):
    instance = seed.instance(aws)
    for name in ("ab", "web<script>", "x" * 129):
        harness.command(f"create {instance} {name}")
        assert "is not a valid AMI name: 3–128 characters" in harness.last_reply().text
    harness.command(f"create {instance} web-3 --version 'v 1'")
    assert "`v 1` is not a valid version" in harness.last_reply().text
    harness.command("create i-nothex web-1")
    text = harness.last_reply().text
    assert "is not a valid instance" in text and "Usage: `/ami create" in text
    harness.command(f"create {instance} web-9", user="U0RANDOM")
    assert "Only amibot operators" in harness.last_reply().text
    assert [image["Name"] for image in own_images(aws)] == ["seed-base"]
    assert harness.fake.calls_to("chat.postMessage") == []


def test_aws_duplicate_name_error_reads_as_a_name_clash(harness, aws, monkeypatch):
    """Between our check and CreateImage someone else may take the name; AWS then answers Duplicate."""
    instance = seed.instance(aws)
    clash = ClientError({"Error": {"Code": "InvalidAMIName.Duplicate", "Message": "AMI name web-2 is in use"}},
                        "CreateImage")
    monkeypatch.setattr(harness.ctx.aws.home.ec2("us-east-1"), "create_image", Mock(side_effect=clash))
    harness.command(f"create {instance} web-2")
    assert "An AMI named “web-2” already exists in us-east-1. Pick another name." in harness.last_reply().text


def test_launch_button_opens_the_form_with_the_image_chosen(harness, aws):
    image_id = seed.image(aws, "fresh-web")
    harness.click("image.launch", image_id, user="U0OPS")
    assert harness.fake.calls_to("views.open")  # a loading view at once, inside the trigger's 3 s
    form = harness.fake.wait_for_method("views.update").params["view"]
    assert image_id in json.dumps(form) and "fresh-web" in json.dumps(form)
    initial = [e.get("element", {}).get("initial_option") for e in form["blocks"] if e.get("type") == "input"]
    assert any(option and option["value"].startswith(image_id) for option in initial), initial


def test_share_button_opens_the_share_form_and_falls_back_to_the_command(harness, aws):
    harness.click("image.share", "ami-0123456789abcdef0", user="U0OPS")
    opened = harness.fake.wait_for_method("views.open")
    assert opened.params["view"]["callback_id"] == "share.form" and "ami-0123456789abcdef0" in opened.text
    # Slack refuses the form (the trigger expired): the button still says how to share
    harness.fake.fail_next["views.open"] = {"ok": False, "error": "expired_trigger_id"}
    harness.click("image.share", "ami-0123456789abcdef0", user="U0OPS")
    share = harness.fake.wait_for_method("response_url", where=lambda c: "/ami share" in c.text)
    # escaped: Slack reads <account-id> as a link, even inside backticks
    assert "/ami share ami-0123456789abcdef0 &lt;account-id&gt;" in share.text


def test_wait_for_image_is_bounded_and_polls():
    """A pending image: polls at the interval until the deadline, then returns it still pending."""
    client = botocore.session.get_session().create_client("ec2", "us-east-1", aws_access_key_id="x",
                                                          aws_secret_access_key="x")
    pending = {"Images": [{"ImageId": "ami-0123456789abcdef0", "Name": "slow", "State": "pending"}]}
    failed = {"Images": [{"ImageId": "ami-0123456789abcdef0", "Name": "slow", "State": "failed",
                          "StateReason": {"Code": "x", "Message": "snapshot failed"}}]}

    class FakeAws:
        def ec2(self, region=None):
            return client

    clock = {"now": 0.0}
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock["now"] += seconds

    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("describe_images", pending)
        image = wait_for_image(FakeAws(), "us-east-1", "ami-0123456789abcdef0", "Family", timeout=30, interval=15,
                               sleep=sleep, monotonic=lambda: clock["now"])
        assert image.state == "pending" and sleeps == [15, 15]
        stub.add_response("describe_images", pending)
        stub.add_response("describe_images", failed)
        image = wait_for_image(FakeAws(), "us-east-1", "ami-0123456789abcdef0", "Family", timeout=600, interval=15,
                               sleep=sleep, monotonic=lambda: clock["now"])
        assert image.state == "failed" and image.raw["StateReason"]["Message"] == "snapshot failed"
        # Not listed yet (eventual consistency) is not "gone": it keeps polling; listed then missing is gone.
        stub.add_response("describe_images", {"Images": []})
        stub.add_response("describe_images", pending)
        stub.add_response("describe_images", {"Images": []})
        image = wait_for_image(FakeAws(), "us-east-1", "ami-0123456789abcdef0", "Family", timeout=600, interval=15,
                               sleep=sleep, monotonic=lambda: clock["now"])
        assert image is None
        stub.assert_no_pending_responses()


def test_a_failed_image_updates_the_message_with_the_reason(harness, aws, monkeypatch):
    from handlers.actions import image_buttons

    instance = seed.instance(aws)
    real_wait = image_buttons.wait_for_image

    def failing(*args, **kwargs):
        image = real_wait(*args, **kwargs)
        image.state = "failed"
        image.raw["StateReason"] = {"Message": "Client.InternalError"}
        return image

    monkeypatch.setattr(image_buttons, "wait_for_image", failing)
    harness.command(f"create {instance} web-f")
    _, update = posted_and_updated(harness)
    assert "failed" in update.text and "Client.InternalError" in update.text
    assert not [b for b in update.params["blocks"] if b["type"] == "actions"]


# --- register -----------------------------------------------------------------------------------

def completed_snapshot(aws, region="us-east-1"):
    ec2 = aws.client("ec2", region)
    volume = ec2.create_volume(Size=8, AvailabilityZone=f"{region}a")["VolumeId"]
    return ec2.create_snapshot(VolumeId=volume)["SnapshotId"]


def test_register_from_a_snapshot_tags_and_announces(harness, aws):
    snapshot = completed_snapshot(aws)
    harness.command(f"register {snapshot} db-2025-06 --arch arm64 --boot-mode uefi --family db --version 3")
    post, update = posted_and_updated(harness)
    image = own_images(aws, name="db-2025-06")[0]
    assert image["BootMode"] == "uefi"  # what moto keeps of the request (it ignores the rest, see moto.md)
    assert tags_of(aws, image["ImageId"]) == {"Family": "db", "Version": "3", "amibot:created-by": "U0OPS"}
    assert f"snapshot {snapshot}" in post.text and "arm64, uefi" in post.text
    assert "available" in update.text and image["ImageId"] in update.text


def test_register_refuses_unknown_unfinished_foreign_snapshots_and_bad_options(harness, aws, monkeypatch):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    harness.command("register snap-0123456789abcdef0 db-x")
    assert "Snapshot snap-0123456789abcdef0 not found in us-east-1, eu-west-1" in harness.last_reply().text
    snapshot = completed_snapshot(aws)
    harness.command(f"register {snapshot} db-x --arch sparc")
    assert "`--arch` is one of x86_64, arm64" in harness.last_reply().text
    harness.command(f"register {snapshot} db-x --arch arm64 --boot-mode legacy-bios")
    assert "arm64 images boot with UEFI only" in harness.last_reply().text
    # moto's private backend: its snapshots are completed and the caller's at once; no public call changes that
    stored = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].snapshots[snapshot]
    monkeypatch.setattr(stored, "status", "pending")
    harness.command(f"register {snapshot} db-x")
    assert f"Snapshot {snapshot} is pending" in harness.last_reply().text
    monkeypatch.setattr(stored, "owner_id", "210987654321")
    harness.command(f"register {snapshot} db-x")
    assert "belongs to account 210987654321" in harness.last_reply().text
    assert own_images(aws, name="db-x") == []


# --- base ---------------------------------------------------------------------------------------

def test_base_lists_the_alias_table_and_names_it_for_an_unknown_alias(harness):
    harness.command("base")
    text = harness.last_reply().text
    for alias in ("al2023", "al2023-arm64", "al2", "ubuntu-22.04", "ubuntu-24.04", "windows-2022"):
        assert f"`{alias}`" in text
    harness.command("base centos-5")
    text = harness.last_reply().text
    assert "No base image alias `centos-5`" in text and "`ubuntu-24.04`" in text and "`windows-2022`" in text


def test_base_resolves_al2023_through_the_public_parameter(harness, aws, monkeypatch):
    # moto's public images are off in tests; this test loads them for its own backends (~2 s).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "true")
    expected = aws.client("ssm").get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")["Parameter"]["Value"]
    name = aws.client("ec2").describe_images(ImageIds=[expected])["Images"][0]["Name"]
    harness.command("base al2023")
    text = harness.last_reply().text
    assert expected in text and name in text and "Amazon Linux 2023, x86_64 in us-east-1" in text


def test_base_alias_without_a_parameter_in_this_endpoint_says_so(harness, aws):
    harness.command("base ubuntu-22.04 --region eu-west-1")
    text = harness.last_reply().text
    assert "AWS publishes no `ubuntu-22.04` image in eu-west-1" in text
    assert "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp3/ami-id" in text


def _stub_parameter(harness, monkeypatch, region, image_id):
    """moto has no Canonical parameters: answer GetParameter with a Stubber, EC2 stays moto."""
    client = harness.ctx.aws.home.client("ssm", region)
    stub = Stubber(client)
    stub.add_response("get_parameter", {"Parameter": {"Name": "p", "Type": "String", "Value": image_id}},
                      {"Name": "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"})
    stub.activate()
    return stub


def test_base_copy_into_the_account_tags_the_copy(harness, aws, monkeypatch):
    public = aws.client("ec2").register_image(Name="ubuntu-noble-24.04-amd64-server-20250601",
                                              RootDeviceName="/dev/sda1")["ImageId"]
    stub = _stub_parameter(harness, monkeypatch, "us-east-1", public)
    harness.command("base ubuntu-24.04 --copy web-base-2025-06 --family web")
    stub.deactivate()
    post, update = posted_and_updated(harness)
    copy = own_images(aws, name="web-base-2025-06")[0]
    assert tags_of(aws, copy["ImageId"]) == {"Family": "web", "amibot:created-by": "U0OPS",
                                             "amibot:source-image": public, "amibot:base": "ubuntu-24.04"}
    assert f"ubuntu-24.04 {public}" in post.text and "available" in update.text


def test_base_copy_needs_an_operator_and_a_free_name(harness, aws):
    harness.command("base al2023 --copy web-base --family web", user="U0RANDOM")
    assert "Only amibot operators may run `/ami base --copy`" in harness.last_reply().text
    harness.command("base al2023 --family web")
    assert "`--family` and `--version` go with `--copy <name>`" in harness.last_reply().text
