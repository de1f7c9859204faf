"""Issue 21 §2: every command that takes an image takes its unique name as well as its id (as `/ami show` does),
`/ami create` takes an instance's Name tag, and `/ami restore` a name in the Recycle Bin. A name that matches
several lists them (ids, regions, dates) and nothing is done: no AWS change, no request opened."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from bot.core.ids import AMI_ID, INSTANCE_ID
from tests.support import seed
from tests.support.probes import route_probes

REGIONS = ["us-east-1", "eu-west-1"]
POLICY = {"aws": {"regions": REGIONS}, "access": {"operators": ["U0OPS"]}, "approvals": {"approvers": ["U0LEAD"]}}
NOW = datetime.now(UTC)
FRIEND = "210987654321"
NAME = "web-7"


@pytest.fixture
def policy_data():
    return POLICY


def _share_first(aws, image_id):
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": FRIEND}]})


def _disable_first(aws, image_id):
    aws.client("ec2").disable_image(ImageId=image_id)


# Each image-taking command, what it is given after the image, and what must be true of the image first.
CASES = {
    "promote": ("", None),
    "deregister": ("", None),
    "share": (f" {FRIEND}", None),
    "unshare": (f" {FRIEND}", _share_first),
    "copy": (" eu-west-1", None),
    "deprecate": ("", None),
    "undeprecate": ("", None),
    "disable": ("", None),
    "enable": ("", _disable_first),
    "protect": ("", None),
    "unprotect": ("", None),
    "launch": (" t3.micro", None),
    "revoke": ("", None),
}
# Commands with their own tests below (restore: the Recycle Bin) or elsewhere (show: tests/test_commands_read.py,
# lineage: tests/test_lineage.py), which list the images a name matches to choose from.
OTHER_IMAGE_COMMANDS = {"show", "lineage", "restore"}
MOTO_LACKS = {"EnableImageDeprecation", "DisableImageDeprecation", "EnableImageDeregistrationProtection",
              "DisableImageDeregistrationProtection"}


class ChangingCalls:
    """Every EC2 call the app makes in the configured regions that is not a read (operation and parameters);
    those moto lacks are answered as AWS would ({"Return": true})."""

    def __init__(self, harness):
        self.calls: list[tuple[str, str]] = []
        for region in REGIONS:
            client = harness.ctx.aws.home.ec2(region)
            client.meta.events.register("before-call.ec2", self._seen)

    def _seen(self, model, params, **_):
        if model.name.startswith(("Describe", "List", "Get")):
            return None
        self.calls.append((model.name, json.dumps(params.get("body"), default=str)))
        if model.name in MOTO_LACKS:
            return AWSResponse("https://ec2.amazonaws.com/", 200, {}, None), {
                "Return": True, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None


def _requests(harness) -> list:
    return harness.ctx.store.query("SELECT kind, params FROM requests")


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_unique_name_does_what_the_id_does(harness, aws, command):
    tail, prepare = CASES[command]
    image_id = seed.image(aws, NAME, tags={"Family": "web", "Version": "7"})
    if prepare:
        prepare(aws, image_id)
    calls = ChangingCalls(harness)
    harness.command(f"{command} {NAME}{tail}")
    said = harness.last_reply().text if harness.replies() else ""
    changed = [body for _, body in calls.calls] + [row["params"] for row in _requests(harness)]
    assert any(image_id in change for change in changed), (said, calls.calls)
    assert "not a valid" not in said and "not found" not in said


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_name_that_several_images_share_lists_them_and_does_nothing(harness, aws, command):
    tail, prepare = CASES[command]
    older = seed.image(aws, NAME, tags={"Family": "web"}, created=NOW - timedelta(days=40))
    newer = seed.image(aws, NAME, region="eu-west-1", tags={"Family": "web"}, created=NOW - timedelta(days=2))
    if prepare:
        prepare(aws, older)
    calls = ChangingCalls(harness)
    harness.command(f"{command} {NAME}{tail}")
    said = harness.last_reply().text
    assert f"2 AMIs are named “{NAME}”; say which one by id" in said
    assert f"`{older}` · us-east-1 · created {(NOW - timedelta(days=40)).strftime('%Y-%m-%d')}" in said
    assert f"`{newer}` · eu-west-1 · created {(NOW - timedelta(days=2)).strftime('%Y-%m-%d')}" in said
    assert calls.calls == [] and _requests(harness) == []  # nothing changed in AWS, no request opened


def test_every_subcommand_that_takes_an_image_takes_a_name(harness):
    """A new image-taking subcommand must declare its argument as an image (bot.slack.subcommands.image_arg), be
    listed in CASES above, and say `<ami-id|name>` in its usage; an argument checked as an AMI id only fails."""
    specs = harness.ctx.registry.specs
    taking_images = {spec.name for spec in specs for arg in spec.args if arg.kind == "image"}
    assert taking_images == set(CASES) | OTHER_IMAGE_COMMANDS
    ids_only = [(spec.name, arg.name) for spec in specs for arg in spec.args
                if arg.pattern in (AMI_ID, INSTANCE_ID) and not arg.kind]
    assert ids_only == []
    assert [spec.name for spec in specs if spec.name in taking_images and "<ami-id|name" not in spec.usage] == []


def test_help_says_an_image_may_be_named(harness):
    response = harness.command("help deprecate")  # help is answered in the ack
    text = " ".join(block.get("text", {}).get("text", "") for block in response.json()["blocks"])
    assert "/ami deprecate &lt;ami-id|name&gt;" in text


# --- create: an instance's Name tag ------------------------------------------------------------------------

def _own_images(aws, region="us-east-1"):
    return sorted(image["Name"] for image in aws.client("ec2", region).describe_images(Owners=["self"])["Images"])


def test_create_takes_an_instances_name_tag(harness, aws):
    instance_id = seed.instance(aws, name="builder")
    harness.command("create builder web-built --family web")
    images = aws.client("ec2").describe_images(Owners=["self"], Filters=[{"Name": "name",
                                                                          "Values": ["web-built"]}])["Images"]
    assert len(images) == 1
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert instance_id in posted and "builder" in posted


def test_create_with_a_name_tag_that_several_instances_share_lists_them_and_creates_nothing(harness, aws):
    here = seed.instance(aws, name="builder")
    there = seed.instance(aws, region="eu-west-1", name="builder")
    harness.command("create builder web-built")
    said = harness.last_reply().text
    assert "2 instances are named “builder”" in said
    assert f"`{here}` · us-east-1" in said and f"`{there}` · eu-west-1" in said
    assert f"launched {NOW.strftime('%Y-%m-%d')}" in said
    assert "web-built" not in _own_images(aws) + _own_images(aws, "eu-west-1")


def test_create_with_a_name_tag_no_instance_has_says_where_it_looked(harness, aws):
    harness.command("create nobody web-built")
    assert "No instance named “nobody” in us-east-1, eu-west-1" in harness.last_reply().text


# --- restore: a name in the Recycle Bin (moto has no Recycle Bin: its calls go to a Stubber) ----------------

@pytest.fixture
def bin_app(make_harness, monkeypatch):
    app = make_harness({"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS"]}})
    ec2_bin = boto3.client("ec2", region_name="us-east-1")
    route_probes(app, monkeypatch, ec2=ec2_bin)
    with Stubber(ec2_bin) as stub:
        yield app, stub
        stub.assert_no_pending_responses()


def test_restore_takes_the_name_of_an_image_in_the_recycle_bin(bin_app):
    app, stub = bin_app
    image_id, snapshot_id = "ami-0bbbbbbbbbbbbbbb1", "snap-0bbbbbbbbbbbbbbb1"
    stub.add_response("list_images_in_recycle_bin", {"Images": [
        {"ImageId": "ami-0bbbbbbbbbbbbbbb2", "Name": "api-1"},
        {"ImageId": image_id, "Name": "web-1.0.0", "RecycleBinEnterTime": NOW - timedelta(days=1)}]}, {})
    stub.add_response("list_snapshots_in_recycle_bin", {"Snapshots": [
        {"SnapshotId": snapshot_id, "Description": f"Created by CreateImage(i-1) for {image_id} from vol-1"}]}, {})
    stub.add_response("restore_snapshot_from_recycle_bin", {"SnapshotId": snapshot_id}, {"SnapshotId": snapshot_id})
    stub.add_response("restore_image_from_recycle_bin", {"Return": True}, {"ImageId": image_id})
    app.command("restore web-1.0.0")
    posted = app.fake.calls_to("chat.postMessage")[-1].text
    assert f"restored `{image_id}` in us-east-1: image restored" in posted and f"`{snapshot_id}`: restored" in posted
    row = app.ctx.store.one("SELECT target FROM audit WHERE action = 'command.restore'")
    assert row["target"] == image_id


def test_restore_of_a_name_the_bin_holds_twice_lists_both_and_restores_nothing(bin_app):
    app, stub = bin_app
    first, second = "ami-0bbbbbbbbbbbbbbb1", "ami-0bbbbbbbbbbbbbbb2"
    stub.add_response("list_images_in_recycle_bin", {"Images": [
        {"ImageId": first, "Name": "web-1.0.0", "RecycleBinEnterTime": NOW - timedelta(days=5)},
        {"ImageId": second, "Name": "web-1.0.0", "RecycleBinEnterTime": NOW - timedelta(days=1)}]}, {})
    app.command("restore web-1.0.0")  # the Stubber fails any restore call: none is expected
    said = app.last_reply().text
    assert "2 AMIs are named “web-1.0.0”; say which one by id" in said
    assert f"`{first}` · us-east-1 · in the Recycle Bin since {(NOW - timedelta(days=5)).strftime('%Y-%m-%d')}" in said
    assert f"`{second}` · us-east-1 · in the Recycle Bin since" in said


def test_restore_of_a_name_that_is_nowhere_says_where_it_looked(bin_app):
    app, stub = bin_app
    stub.add_response("list_images_in_recycle_bin", {"Images": []}, {})
    app.command("restore web-9")
    said = app.last_reply().text
    assert "web-9 is neither in the Recycle Bin nor registered in us-east-1" in said


# --- many accounts: the name is looked for in every managed account; the owner's operators decide --------------

@pytest.fixture
def accounts_app(make_harness, monkeypatch):
    from moto import settings as moto_settings

    monkeypatch.setattr(moto_settings, "ENABLE_AMI_VALIDATION", False)  # moto does not model shared images
    return make_harness(seed.three_accounts(REGIONS, approvals={"approvers": ["U0LEAD"]}))


def test_a_name_acts_in_the_account_that_owns_the_image(accounts_app, aws):
    prod = seed.account_session(aws, seed.PROD)
    image_id = seed.image(prod, "api-v5", tags={"Family": "api"})
    accounts_app.command("disable api-v5")
    [image] = prod.client("ec2").describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"]
    assert image["State"] == "disabled"
    row = accounts_app.ctx.store.one("SELECT target, detail FROM audit WHERE action = 'command.disable'")
    assert row["target"] == image_id and json.loads(row["detail"])["account"] == seed.PROD


def test_launch_by_name_into_another_account(accounts_app, aws):
    image_id = seed.image(aws, "web-v3", tags={"Family": "web"})
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": seed.PROD}]})
    accounts_app.command("launch web-v3 t3.small --account prod")
    prod = seed.account_session(aws, seed.PROD)
    launched = [instance for reservation in prod.client("ec2").describe_instances()["Reservations"]
                for instance in reservation["Instances"]]
    assert [instance["ImageId"] for instance in launched] == [image_id]


def test_a_name_in_two_accounts_names_the_accounts_and_opens_no_request(accounts_app, aws):
    baked = seed.image(aws, "web-v1")
    copied = seed.image(seed.account_session(aws, seed.PROD), "web-v1")
    accounts_app.command("deregister web-v1")
    said = accounts_app.last_reply().text
    assert f"`{baked}` · us-east-1 · account bake ({seed.BAKE})" in said
    assert f"`{copied}` · us-east-1 · account prod ({seed.PROD})" in said
    assert "`--account NAME` or `--region R`" in said
    assert _requests(accounts_app) == []
    accounts_app.command("deregister web-v1 --account prod")  # narrowed to one: asked for
    [request] = _requests(accounts_app)
    assert json.loads(request["params"])["image_id"] == copied
