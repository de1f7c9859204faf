"""Per-account authority with no path around it (issue 19 §1), through the real app over HTTP.

The world: [access].operators = [U0GLOBAL]; prod's [[accounts]] entry names its own operators, [U0PRODOP]; bake
(the bot's own account) and staging keep the global list. For every changing kind — each changing subcommand of the
registry, each digest button, the launch and share forms — the account it changes is resolved from what it acts on,
and that account's operators decide, with or without `--account`:
- a global operator is refused on prod's resources, and prod's AWS state and the request table are untouched;
- prod's operator is let through on prod's resources without `--account`.
The table is checked against the registry, so a changing subcommand added later fails here until it has a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import pytest

from bot.core import authority
from bot.core.errors import AccessDenied
from bot.render.digest import CLEANUP, DEREGISTER, SNOOZE
from tests.support import seed
from tests.support.seed import PROD

REGIONS = ["us-east-1", "eu-west-1"]
GLOBAL, PRODOP = "U0GLOBAL", "U0PRODOP"
PROD_ONLY = "Only the operators of prod (111111111111)"


@pytest.fixture
def org(make_harness):
    data = seed.three_accounts(REGIONS, access={"operators": [GLOBAL]}, approvals={"approvers": ["U0LEAD"]},
                               sharing={"allow_configured_accounts": True})
    data["accounts"][1]["operators"] = [PRODOP]
    # web is baked in prod (from a builder instance there): `/ami bake web` changes prod without --account
    data["bakes"] = [{"family": "web", "account": "prod", "region": "us-east-1", "instance": "i-0123456789abcdef0"}]
    return make_harness(data)


@pytest.fixture
def prod(aws):
    return seed.account_session(aws, PROD)


@dataclass
class World:
    image: str  # prod's, family web, version 2 (promoted once over version 1 where a row needs it)
    older: str
    instance: str
    snapshot: str


def build(org, prod) -> World:
    instance = seed.instance(prod)
    older = seed.image(prod, "web-1", tags={"Family": "web", "Version": "1"}, from_instance=instance)
    image = seed.image(prod, "web-2", tags={"Family": "web", "Version": "2"}, from_instance=instance)
    volume = prod.client("ec2", "us-east-1").create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    snapshot = prod.client("ec2", "us-east-1").create_snapshot(VolumeId=volume)["SnapshotId"]
    return World(image, older, instance, snapshot)


def promote_twice(org, world: World) -> None:
    for image_id in (world.older, world.image):
        said = answer_count(org)
        org.command(f"promote {image_id}", user=PRODOP)
        assert "is now the current version" in answers_since(org, said)


def group_in_prod(org, world: World) -> None:
    """web-2 current in prod, and an Auto Scaling group there still launching web-1: what a rollout would change."""
    promote_twice(org, world)
    session = seed.account_session(boto3.session.Session(region_name="us-east-1"), PROD)
    ec2 = session.client("ec2", "us-east-1")
    template = ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={
        "ImageId": world.older, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    session.client("autoscaling", "us-east-1").create_auto_scaling_group(
        AutoScalingGroupName="web-asg", MinSize=0, MaxSize=1, DesiredCapacity=0, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})


@dataclass
class Row:
    """One changing kind acting on prod. `act(org, world, user)` sends it; `prepare` builds what it needs."""

    act: Callable
    prepare: Callable | None = None


def command(text: str) -> Callable:
    def send(org, world, user):
        org.command(text.format(w=world), user=user)

    return send


def digest_button(action_id: str, value: str) -> Callable:
    def send(org, world, user):
        org.click(action_id, value.format(w=world, prod=PROD), user=user)

    return send


def launch_form(org, world, user):
    state = {"image": {"value": {"type": "static_select", "selected_option": {"value": world.image}}},
             "instance_type": {"value": {"type": "plain_text_input", "value": "t3.micro"}},
             "count": {"value": {"type": "number_input", "value": "1"}},
             "name": {"value": {"type": "plain_text_input", "value": None}}}
    org.interact({"type": "view_submission", "team": {"id": "T0FAKE"}, "user": {"id": user, "name": user.lower()},
                  "api_app_id": "A0AMIBOT", "trigger_id": f"t.{user}",
                  "view": {"id": f"V0{user}", "type": "modal", "callback_id": "launch_modal", "hash": "h",
                           "private_metadata": json.dumps({"channel": "C0OPS"}), "state": {"values": state}}})


def share_form(org, world, user):
    values = {"share_target": {"value": {"type": "plain_text_input", "value": "staging"}},
              "share_region": {"value": {"type": "static_select", "selected_option": {"value": "any"}}}}
    view = {"id": f"V0{user}", "type": "modal", "callback_id": "share.form", "hash": "h",
            "private_metadata": json.dumps({"channel": "C0OPS", "image_id": world.image}),
            "state": {"values": values}}
    org.interact(org.local.sim.view_submission_payload(view, user, values))


# Every changing subcommand, acting on prod's resources WITHOUT --account (where it makes something new, the
# account it makes it in is named: without it that is the bot's own account, checked in the bake rows below).
SUBCOMMANDS: dict[str, Row] = {
    "promote": Row(command("promote {w.image}")),
    "rollback": Row(command("rollback web"), prepare=promote_twice),
    "deregister": Row(command("deregister {w.image} --force")),
    "deprecate": Row(command("deprecate {w.image}")),
    "undeprecate": Row(command("undeprecate {w.image}")),
    "disable": Row(command("disable {w.image}")),
    "enable": Row(command("enable {w.image}")),
    "protect": Row(command("protect {w.image}")),
    "unprotect": Row(command("unprotect {w.image}")),
    "copy": Row(command("copy {w.image} eu-west-1")),
    "share": Row(command("share {w.image} staging")),
    "unshare": Row(command("unshare {w.image} staging")),
    "launch": Row(command("launch {w.image}")),
    "restore": Row(command("restore {w.image}")),
    "create": Row(command("create {w.instance} web-3 --account prod")),
    "register": Row(command("register {w.snapshot} web-from-snap --account prod")),
    "base": Row(command("base al2023 --copy web-base --family web --account prod")),
    "recycle-bin": Row(command("recycle-bin enable --account prod")),
    "bake": Row(command("bake web")),
    "rollout": Row(command("rollout web"), prepare=lambda org, world: group_in_prod(org, world)),
    "revoke": Row(command("revoke {w.image} --reason test")),
}

OTHER_KINDS: dict[str, Row] = {
    "digest: request deregistration (a button naming no account)":
        Row(digest_button(DEREGISTER, "us-east-1:{w.image}")),
    "digest: request deregistration (naming prod)": Row(digest_button(DEREGISTER, "{prod}:us-east-1:{w.image}")),
    "digest: snooze (a button naming no account)": Row(digest_button(SNOOZE, "us-east-1:{w.image}")),
    "digest: request cleanup (naming prod)": Row(digest_button(CLEANUP, "{prod}:us-east-1:{w.snapshot}")),
    "launch form": Row(launch_form),
    "share form": Row(share_form),
}

KINDS = {**{f"/ami {name}": row for name, row in SUBCOMMANDS.items()}, **OTHER_KINDS}


def test_every_changing_subcommand_has_a_row(org):
    changing = {spec.name for spec in org.ctx.registry.specs if spec.changing or spec.changing_when}
    assert changing == set(SUBCOMMANDS), "give each changing subcommand a row in SUBCOMMANDS"


def prod_state(prod) -> dict:
    """What a change in prod would show: images (state, tags, launch permissions), instances, parameters,
    snapshots."""
    ec2, ssm = prod.client("ec2", "us-east-1"), prod.client("ssm", "us-east-1")
    images = {}
    for region in REGIONS:
        for image in prod.client("ec2", region).describe_images(Owners=["self"])["Images"]:
            shares = prod.client("ec2", region).describe_image_attribute(
                ImageId=image["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
            images[image["ImageId"]] = (image["State"], sorted(map(str, image.get("Tags", []))), str(shares),
                                        image.get("DeprecationTime"))
    instances = sorted(i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"])
    parameters = {p["Name"]: p.get("Version") for p in ssm.describe_parameters()["Parameters"]}
    snapshots = sorted(s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"])
    return {"images": images, "instances": instances, "parameters": parameters, "snapshots": snapshots}


def outcomes(org, since: int) -> list[str]:
    return [row["outcome"] for row in org.ctx.store.query("SELECT outcome FROM audit WHERE id > ? ORDER BY id",
                                                          (since,))]


def last_audit_id(org) -> int:
    return org.ctx.store.one("SELECT COALESCE(MAX(id), 0) AS id FROM audit")["id"]


def answer_count(org) -> int:
    return len(org.fake.calls_since(0))


def answers_since(org, count: int) -> str:
    """Everything the bot said in Slack since `count` calls: answers, posts, views."""
    return "\n".join(call.text for call in org.fake.calls_since(count))


def prepared(org, prod, kind: str):
    """The world of prod's resources, and the row for `kind` with its preparation done."""
    world = build(org, prod)
    row = KINDS[kind]
    if row.prepare:
        row.prepare(org, world)
    return world, row


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_global_operator_is_refused_on_prods_resources(org, prod, kind):
    world, row = prepared(org, prod, kind)
    before, requests, audited, said = prod_state(prod), org.ctx.store.query("SELECT id FROM requests"), \
        last_audit_id(org), answer_count(org)

    row.act(org, world, GLOBAL)
    org.wait_idle()

    assert PROD_ONLY in answers_since(org, said)
    assert any(outcome.startswith("refused") for outcome in outcomes(org, audited))
    assert org.ctx.store.query("SELECT id FROM requests") == requests  # no request opened
    assert prod_state(prod) == before  # and nothing changed in prod


@pytest.mark.parametrize("kind", list(KINDS))
def test_prods_own_operator_is_let_through_without_naming_the_account(org, prod, kind):
    world, row = prepared(org, prod, kind)
    audited, said = last_audit_id(org), answer_count(org)

    row.act(org, world, PRODOP)
    org.wait_idle()

    answers = answers_since(org, said)
    assert answers, "the user was told something"
    assert "Only the operators" not in answers and "Only amibot operators" not in answers, answers
    assert not any(outcome.startswith("refused") and "operators" in outcome for outcome in outcomes(org, audited))


# The bot's own account (bake) keeps [access].operators: where a command makes something new without --account,
# it makes it there, so prod's operator has no say and the global operator has.
BAKE_ROWS = {
    "create": "create {instance} web-3",
    "base": "base al2023 --copy web-base --family web",
    "promote": "promote {image}",
}


@pytest.mark.parametrize("name", list(BAKE_ROWS))
def test_in_the_bots_own_account_the_global_operators_decide(org, aws, name):
    instance = seed.instance(aws)
    image = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"}, from_instance=instance)
    text = BAKE_ROWS[name].format(instance=instance, image=image)
    said = answer_count(org)
    org.command(text, user=PRODOP)
    assert "Only amibot operators may run" in answers_since(org, said)
    said = answer_count(org)
    org.command(text, user=GLOBAL)
    assert "Only" not in answers_since(org, said)


def test_a_change_in_an_account_the_action_did_not_authorize_is_refused_before_it_leaves(org, prod):
    """The guard under every client: a runner that forgot to authorize fails closed (a bug, logged), never
    acts on someone else's authority."""
    world = build(org, prod)
    handle = org.ctx.aws.of("prod")
    with authority.acting(GLOBAL, "/ami test"), pytest.raises(AccessDenied, match="had not checked who may act"):
        handle.ec2("us-east-1").create_tags(Resources=[world.image], Tags=[{"Key": "x", "Value": "y"}])
    with authority.acting(PRODOP, "/ami test"):
        authority.authorize(org.ctx, "prod")
        handle.ec2("us-east-1").create_tags(Resources=[world.image], Tags=[{"Key": "x", "Value": "y"}])
    tags = prod.client("ec2", "us-east-1").describe_images(ImageIds=[world.image])["Images"][0]["Tags"]
    assert {"Key": "x", "Value": "y"} in tags
