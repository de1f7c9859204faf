"""`/ami launch` end to end: signed HTTP in, fake Slack out, moto behind — command, form and approvals."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.services import launch as launch_service
from tests.support import seed

POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]},
          "launch": {"max_count": 3, "allowed_instance_types": ["t3.*", "t3a.*"]}}


@pytest.fixture
def policy_data():
    return json.loads(json.dumps(POLICY))


def instances(aws, region="us-east-1", **tag_filters):
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tag_filters.items()]
    reservations = aws.client("ec2", region).describe_instances(Filters=filters)["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def tags_of(resource):
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def posts(harness, containing=""):
    return [c for c in harness.fake.calls_to("chat.postMessage") if containing in c.text]


def updates(harness, ts):
    return [c for c in harness.fake.calls_to("chat.update") if c.params.get("ts") == ts]


def audit_rows(harness, action):
    return harness.ctx.store.query("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))


def on_describe(harness, operation, change, region="us-east-1"):
    """Rewrite what moto answers (for states and fields moto never produces)."""
    def hook(parsed, **_):
        change(parsed)

    harness.ctx.aws.home.ec2(region).meta.events.register(f"after-call.ec2.{operation}", hook)


def test_launch_by_id_posts_the_ids_then_updates_when_running(harness, aws):
    image_id = seed.image(aws, "web-v3", tags={"Family": "web"})
    harness.command(f'launch {image_id} t3.small 2 --name "web canary"')

    launched = instances(aws, **{"amibot:requested-by": "U0OPS"})
    assert len(launched) == 2
    ids = sorted(i["InstanceId"] for i in launched)
    assert {i["InstanceType"] for i in launched} == {"t3.small"}
    assert {i["ImageId"] for i in launched} == {image_id}
    tags = tags_of(launched[0])
    assert tags["Name"] == "web canary"
    assert tags["amibot:request"].startswith("launch-")
    volumes = aws.client("ec2").describe_volumes(
        Filters=[{"Name": "tag:amibot:request", "Values": [tags["amibot:request"]]}])["Volumes"]
    assert len(volumes) == 2 and tags_of(volumes[0])["amibot:requested-by"] == "U0OPS"

    started = posts(harness, "launched 2 ×")
    assert len(started) == 1 and started[0].params["channel"] == "C0OPS"
    assert all(instance_id in started[0].text for instance_id in ids)
    assert "Waiting for them to run" in started[0].text
    final = updates(harness, started[0].ts)
    assert len(final) == 1
    assert "2 instance(s) running" in final[0].text and all(i in final[0].text for i in ids)

    row = audit_rows(harness, "command.launch")[-1]
    detail = json.loads(row["detail"])
    assert row["outcome"] == "ok" and row["actor"] == "U0OPS" and row["target"] == image_id
    assert sorted(detail["instances"]) == ids and detail["request"] == tags["amibot:request"]
    assert detail["states"] == {i: "running" for i in ids}


def test_launch_uses_policy_defaults_for_subnet_security_groups_key_and_type(make_harness, aws):
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="ops-key")
    image_id = seed.image(aws, "web-v1")
    policy = {**POLICY, "launch": {**POLICY["launch"], "subnet_id": subnet, "security_group_ids": [group],
                                   "key_name": "ops-key", "default_instance_type": "t3a.nano"}}
    harness = make_harness(policy)
    harness.command(f"launch {image_id}")

    [instance] = instances(aws, **{"amibot:requested-by": "U0OPS"})
    assert instance["SubnetId"] == subnet and instance["KeyName"] == "ops-key"
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group]
    assert instance["InstanceType"] == "t3a.nano"
    assert tags_of(instance)["Name"] == "web-v1"  # the image name when no --name

    harness.command(f"launch {image_id} 3")  # a count may follow the image directly
    assert len(instances(aws, **{"amibot:requested-by": "U0OPS"})) == 4


def test_family_resolves_to_its_newest_available_version_a_name_to_its_image_in_one_region(harness, aws):
    now = datetime.now(UTC)
    older = seed.image(aws, "web-2025-01-01", tags={"Family": "web"}, created=now - timedelta(days=20))
    newer = seed.image(aws, "web-2025-02-01", tags={"Family": "web"}, created=now - timedelta(days=2))
    newest = seed.image(aws, "web-2025-03-01", tags={"Family": "web"}, created=now - timedelta(hours=2))
    aws.client("ec2").disable_image(ImageId=newest)

    harness.command("launch web")
    [instance] = instances(aws, **{"amibot:requested-by": "U0OPS"})
    assert instance["ImageId"] == newer
    assert "web-2025-02-01" in posts(harness, "launched")[-1].text

    harness.command("launch web-2025-01-01 --name old-one")
    [old] = instances(aws, Name="old-one")
    assert old["ImageId"] == older

    seed.image(aws, "db-v1", tags={"Family": "db"})
    europe = seed.image(aws, "db-v1", region="eu-west-1", tags={"Family": "db"})
    harness.command("launch db-v1")  # the same name in two regions: ask which
    assert "2 AMIs are named “db-v1”" in harness.last_reply().text
    assert instances(aws, Name="db-v1") == []
    harness.command("launch db-v1 --region eu-west-1")
    [instance] = instances(aws, "eu-west-1", Name="db-v1")
    assert instance["ImageId"] == europe


def test_disabled_deregistered_unknown_and_deprecated_images_are_refused(harness, aws):
    ec2 = aws.client("ec2")
    disabled = seed.image(aws, "old-v1")
    ec2.disable_image(ImageId=disabled)
    gone = seed.image(aws, "gone-v1")
    ec2.deregister_image(ImageId=gone)
    legacy = seed.image(aws, "legacy-v1")

    def deprecate(parsed):  # moto has no deprecation; AWS reports it in DescribeImages
        for image in parsed.get("Images", []):
            if image["ImageId"] == legacy:
                image["DeprecationTime"] = "2025-01-01T00:00:00.000Z"

    on_describe(harness, "DescribeImages", deprecate)

    harness.command(f"launch {disabled}")
    assert f"{disabled} (old-v1) is disabled and cannot be launched; `/ami enable {disabled}` first" in \
        harness.last_reply().text
    harness.command(f"launch {gone}")
    assert f"AMI {gone} not found" in harness.last_reply().text
    harness.command("launch nothing-like-this")
    assert "No AMI id, image name or family “nothing-like-this”" in harness.last_reply().text
    harness.command(f"launch {legacy}")
    assert "has been deprecated since 2025-01-01. Launch it anyway with `--force`" in harness.last_reply().text
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []
    assert [r["outcome"][:6] for r in audit_rows(harness, "command.launch")] == ["error:"] * 4

    harness.command(f"launch {legacy} --force")
    [instance] = instances(aws, **{"amibot:requested-by": "U0OPS"})
    assert instance["ImageId"] == legacy


MALFORMED = [
    ("launch {image} T3 micro", "`t3` is not an instance type"),
    ("launch {image} t3.micro 0", "`0` is not a number of instances"),
    ("launch {image} t3.micro many", "`many` is not a number of instances"),
    ("launch {image} t3.micro 5000", "at most 100 instances at once, not 5,000"),
    ("launch {image} --subnet vpc-123", "`vpc-123` is not a subnet id"),
    ("launch {image} --region moon-1", "moon-1 is not an AWS region"),
    ("launch {image} --name", "`--name` needs a value"),
    ("launch {image} t3.micro 1 extra", "`launch` does not take `extra`"),
    ("launch {image} --subnet subnet-0123456789abcdef0",  # AWS's refusal, in one sentence
     "AWS refused ec2:RunInstances in us-east-1: The subnet ID 'subnet-0123456789abcdef0' does not exist"),
]


def test_malformed_launches_get_a_clear_message(harness, aws):
    image_id = seed.image(aws, "web-v1")
    for text, message in MALFORMED:
        harness.command(text.format(image=image_id))
        assert message in harness.last_reply().text, text
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []


def test_a_failed_launch_says_why_and_the_wait_is_bounded(harness, aws, monkeypatch):
    monkeypatch.setattr(launch_service, "WAIT_SECONDS", 0.2)
    monkeypatch.setattr(launch_service, "POLL_SECONDS", 0.05)
    image_id = seed.image(aws, "web-v1")
    state = {}

    def pretend(parsed):  # moto runs every instance at once; AWS may not
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                instance["State"] = state["now"]
                instance["StateReason"] = {"Code": "Server.InsufficientInstanceCapacity",
                                           "Message": "Server.InsufficientInstanceCapacity: no capacity"}

    on_describe(harness, "DescribeInstances", pretend)
    state["now"] = {"Code": 48, "Name": "terminated"}
    harness.command(f"launch {image_id}")
    [final] = updates(harness, posts(harness, "launched 1 ×")[-1].ts)
    assert "1 of 1 instance(s) failed" in final.text
    assert "terminated — Server.InsufficientInstanceCapacity: no capacity" in final.text

    state["now"] = {"Code": 0, "Name": "pending"}
    started_at = time.monotonic()
    harness.command(f"launch {image_id} --name slow")
    assert time.monotonic() - started_at < 5
    final = updates(harness, posts(harness, "launched 1 ×")[-1].ts)[-1]
    assert "1 of 1 instance(s) still pending" in final.text and "did not run within the wait" in final.text


def test_only_operators_launch_and_only_in_allowed_channels_form_included(make_harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness = make_harness({**POLICY, "access": {"operators": ["U0OPS"], "channels": ["C0OPS"]}})
    harness.command(f"launch {image_id}", user="U0INTERN")
    assert "Only amibot operators may run `/ami launch`" in harness.last_reply().text
    harness.command("launch", user="U0INTERN")
    assert harness.fake.calls_to("views.open") == []
    option = {"text": {"type": "plain_text", "text": "web"}, "value": f"{image_id}@us-east-1"}
    submit(harness, {"image": option, "instance_type": "t3.micro", "count": "1"}, channel="C0RANDOM")
    assert "does not run `/ami launch` in this channel" in harness.fake.calls_to("chat.postEphemeral")[-1].text
    assert audit_rows(harness, "launch.form")[-1]["outcome"].startswith("refused:")
    assert instances(aws, **{"amibot:requested-by": "U0INTERN"}) == []
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []


# --- outside policy: approvals ---------------------------------------------------------------------------

def request_of(harness, kind="launch"):
    row = harness.ctx.store.one("SELECT * FROM requests WHERE kind = ? ORDER BY created_at DESC", (kind,))
    assert row, "no approval request was stored"
    return row


def test_an_instance_type_outside_policy_asks_for_approval_then_launches_when_approved(harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness.command(f"launch {image_id} m5.large --name big")
    reply = harness.last_reply().text
    assert "outside the launch policy" in reply
    assert "instance type m5.large is not in [launch].allowed_instance_types (`t3.*`, `t3a.*`)" in reply
    assert instances(aws, Name="big") == []
    request = request_of(harness)
    assert request["id"] in reply and request["state"] == "pending"
    approval = next(c for c in posts(harness) if request["id"] in c.text and "Approve" in c.text)
    assert "Launch 1 × m5.large from web-v1" in approval.text
    confirm = next(element["confirm"]["text"]["text"] for block in approval.params["blocks"]
                   if block["type"] == "actions" for element in block["elements"]
                   if element["action_id"] == "approval.approve")
    assert "from web-v1 (ami-" in confirm and "until someone terminates them" in confirm, confirm
    assert json.loads(audit_rows(harness, "command.launch")[-1]["detail"])["approval_request"] == request["id"]

    harness.click("approval.approve", value=request["id"], user="U0OPS", channel="C0OPS", message_ts=approval.ts)
    assert instances(aws, Name="big") == []  # the requester cannot approve their own request

    harness.click("approval.approve", value=request["id"], user="U0LEAD", channel="C0OPS", message_ts=approval.ts)
    [instance] = instances(aws, Name="big")
    assert instance["InstanceType"] == "m5.large"
    assert tags_of(instance)["amibot:request"] == request["id"]
    assert tags_of(instance)["amibot:requested-by"] == "U0OPS"
    done = request_of(harness)
    assert done["state"] == "succeeded" and instance["InstanceId"] in done["outcome"]
    thread = [c for c in posts(harness) if c.params.get("thread_ts") == approval.ts]
    assert any(":rocket: Launched " + instance["InstanceId"] in c.text for c in thread)


def test_a_cancelled_request_launches_nothing_and_an_image_disabled_meanwhile_fails_cleanly(harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness.command(f"launch {image_id} t3.micro 5")
    assert "5 instances is more than [launch].max_count (3)" in harness.last_reply().text
    request = request_of(harness)
    approval = next(c for c in posts(harness) if request["id"] in c.text)
    harness.click("approval.cancel", value=request["id"], user="U0OPS", channel="C0OPS", message_ts=approval.ts)
    assert request_of(harness)["state"] == "cancelled"

    harness.command(f"launch {image_id} c5.xlarge")
    request = request_of(harness)
    aws.client("ec2").disable_image(ImageId=image_id)
    approval = next(c for c in posts(harness) if request["id"] in c.text)
    harness.click("approval.approve", value=request["id"], user="U0LEAD", channel="C0OPS", message_ts=approval.ts)
    done = request_of(harness)
    assert done["state"] == "failed" and "is disabled and cannot be launched" in done["outcome"]
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []


# --- the form --------------------------------------------------------------------------------------------

def submit(harness, values, channel="C0OPS", user="U0OPS"):
    state = {"image": {"value": {"type": "static_select", "selected_option": values.get("image")}},
             "instance_type": {"value": {"type": "plain_text_input", "value": values.get("instance_type")}},
             "count": {"value": {"type": "number_input", "value": values.get("count")}},
             "name": {"value": {"type": "plain_text_input", "value": values.get("name")}}}
    payload = {"type": "view_submission", "team": {"id": "T0FAKE"}, "user": {"id": user, "name": user.lower()},
               "api_app_id": "A0AMIBOT", "trigger_id": f"t.{time.time_ns()}",
               "view": {"id": "V0FORM", "type": "modal", "callback_id": "launch_modal", "hash": "h",
                        "private_metadata": json.dumps({"channel": channel}), "state": {"values": state}}}
    return harness.interact(payload)


def form_options(harness):
    view = harness.fake.calls_to("views.update")[-1].params["view"]
    select = view["blocks"][0]["element"]
    return view, {group["label"]["text"]: group["options"] for group in select["option_groups"]}


def test_launch_without_arguments_opens_the_form_with_families_and_recent_images(harness, aws):
    harness.fake.fail_next["views.open"] = {"ok": False, "error": "expired_trigger_id"}
    harness.command("launch")
    assert "Slack closed the window for opening the launch form (3 seconds)" in harness.last_reply().text

    harness.command("launch")
    assert "There are no available images to launch" in harness.fake.calls_to("views.update")[-1].text

    now = datetime.now(UTC)
    web = seed.image(aws, "web-v1", tags={"Family": "web"}, created=now - timedelta(days=3))
    api = seed.image(aws, "api-v1", region="eu-west-1", created=now - timedelta(days=1))
    harness.command("launch")
    opened = harness.fake.calls_to("views.open")[-1]
    assert opened.params["trigger_id"] and "Finding your images" in opened.text
    view, groups = form_options(harness)
    assert harness.fake.calls_to("views.update")[-1].params["view_id"]
    assert view["callback_id"] == "launch_modal" and json.loads(view["private_metadata"]) == {"channel": "C0OPS"}
    families = [o["value"] for o in groups["Families"]]
    assert families.index("family:api") < families.index("family:web")  # the newest first
    assert [o["value"] for o in groups["Recent images"]][-2:] == [f"{api}@eu-west-1", f"{web}@us-east-1"]
    assert "web-v1 · us-east-1 · 3d" in harness.fake.calls_to("views.update")[-1].text
    assert view["blocks"][1]["element"]["initial_value"] == "t3.micro"
    assert "initial_option" not in view["blocks"][0]["element"]
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []

    # What an image's Launch button calls: the form with that image chosen
    from handlers.views.launch import open_launch_modal

    open_launch_modal(harness.ctx.slack, "1.trigger", harness.ctx, image_id=web, channel="C0OPS")
    view, _ = form_options(harness)
    assert view["blocks"][0]["element"]["initial_option"]["value"] == f"{web}@us-east-1"


def test_the_form_shows_errors_on_its_fields_and_launches_when_valid(harness, aws):
    image_id = seed.image(aws, "web-v1", tags={"Family": "web"})
    option = {"text": {"type": "plain_text", "text": "web"}, "value": f"{image_id}@us-east-1"}
    response = submit(harness, {"image": option, "instance_type": "not a type", "count": "0"})
    body = response.json()
    assert body["response_action"] == "errors"
    assert body["errors"]["instance_type"] == "not a type is not an instance type (e.g. t3.micro)."
    assert "not a number of instances" in body["errors"]["count"]
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []

    response = submit(harness, {"image": option, "instance_type": "t3.nano", "count": "2", "name": "from-form"})
    assert response.status == 200 and not response.body
    launched = instances(aws, Name="from-form")
    assert len(launched) == 2 and {i["InstanceType"] for i in launched} == {"t3.nano"}
    started = posts(harness, "launched 2 ×")[-1]
    assert started.params["channel"] == "C0OPS"
    assert "2 instance(s) running" in updates(harness, started.ts)[-1].text
    row = audit_rows(harness, "launch.form")[-1]
    assert row["outcome"] == "ok" and row["target"] == image_id
    assert sorted(json.loads(row["detail"])["instances"]) == sorted(i["InstanceId"] for i in launched)

    # A form has no response_url: when the bot is not in the channel, the user hears it directly
    harness.fake.fail_next["chat.postMessage"] = {"ok": False, "error": "not_in_channel"}
    submit(harness, {"image": option, "instance_type": "t3.nano", "count": "1", "name": "dm-me"}, channel="C0ELSE")
    [instance] = instances(aws, Name="dm-me")
    direct = posts(harness, instance["InstanceId"])[-1]
    assert direct.params["channel"] == "U0OPS"
    assert updates(harness, direct.ts)[-1].params["channel"] == "U0OPS"


def test_the_form_launches_a_family_and_asks_approval_outside_policy(harness, aws):
    seed.image(aws, "web-v1", tags={"Family": "web"})
    option = {"text": {"type": "plain_text", "text": "web"}, "value": "family:web"}
    submit(harness, {"image": option, "instance_type": "r6i.large", "count": "1"})
    request = request_of(harness)
    assert json.loads(request["params"])["instance_type"] == "r6i.large"
    ephemeral = harness.fake.calls_to("chat.postEphemeral")[-1]
    assert request["id"] in ephemeral.text and ephemeral.params["user"] == "U0OPS"
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []
