"""`/ami allowed`, `/ami recycle-bin` and `/ami restore` across managed accounts, through the real app over HTTP.

moto has no Allowed AMIs and no Recycle Bin: an account's report says "unknown" there, and the Recycle Bin
calls of the prod account are stubbed with botocore's Stubber (response shapes from AWS's API reference)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tests.support import seed
from tests.support.approvals import approval_message
from tests.support.probes import route_probes

REGIONS = ["us-east-1"]
PEOPLE = {"access": {"operators": ["U0OPS"]}, "approvals": {"approvers": ["U0LEAD"]}}


@pytest.fixture
def org(make_harness):
    return make_harness(seed.three_accounts(REGIONS, **PEOPLE))


def texts(reply) -> str:
    return reply.text + "\n" + str(reply.params.get("blocks"))


def test_allowed_reports_every_account_under_its_name(org):
    org.command("allowed")
    shown = texts(org.last_reply())
    for label in ("bake (123456789012)", "prod (111111111111)", "staging (222222222222)"):
        assert label in shown
    assert "unknown" in shown  # moto has no Allowed AMIs: unknown, never "disabled"


def test_account_narrows_and_an_unknown_account_is_named(org):
    org.command("allowed --account prod")
    shown = texts(org.last_reply())
    assert "bake (123456789012)" not in shown and "staging" not in shown and "us-east-1" in shown
    org.command("recycle-bin --account nowhere")
    assert "account nowhere is not one amibot manages" in org.last_reply().text
    assert "prod (111111111111)" in org.last_reply().text


def test_account_without_accounts_configured_says_so(harness):
    harness.command("allowed --account prod")
    assert "no accounts are configured" in harness.last_reply().text


def test_recycle_bin_enable_asks_which_account_then_creates_the_rules_there(org, monkeypatch):
    org.command("recycle-bin enable --days 10")
    assert "say which with `--account NAME` (bake, prod, staging)" in org.last_reply().text
    assert org.ctx.store.query("SELECT * FROM requests") == []

    org.command("recycle-bin enable --days 10 --account prod")
    message, request_id = approval_message(org.fake)
    assert "prod (111111111111)" in message.text and "account 111111111111" in message.text
    rbin = boto3.client("rbin", region_name="us-east-1")
    route_probes(org, monkeypatch, rbin=rbin, account="prod")
    with Stubber(rbin) as stub:
        for resource_type, rule_id in (("EC2_IMAGE", "prod-img"), ("EBS_SNAPSHOT", "prod-snap")):
            stub.add_response("list_rules", {"Rules": []}, {"ResourceType": resource_type})
            stub.add_response("create_rule", {"Identifier": rule_id}, {
                "ResourceType": resource_type, "Description": ANY,
                "Tags": [{"Key": "amibot:request", "Value": request_id}],
                "RetentionPeriod": {"RetentionPeriodValue": 10, "RetentionPeriodUnit": "DAYS"}})
        org.click("approval.approve", request_id, user="U0LEAD")
        stub.assert_no_pending_responses()  # the prod account's rbin client made both rules
    request = org.ctx.store.one("SELECT state, outcome FROM requests WHERE id = ?", (request_id,))
    assert request["state"] == "succeeded"
    assert "us-east-1 images (prod-img), us-east-1 snapshots (prod-snap)" in request["outcome"]


def test_restore_finds_the_image_in_the_account_whose_bin_holds_it(org, monkeypatch):
    image_id = "ami-0123456789abcdef0"
    ec2_bins = {}
    for account in ("bake", "prod", "staging"):
        ec2_bins[account] = boto3.client("ec2", region_name="us-east-1")
        route_probes(org, monkeypatch, ec2=ec2_bins[account], account=account)
    stubs = {account: Stubber(client) for account, client in ec2_bins.items()}
    for account, stub in stubs.items():
        listed = [{"ImageId": image_id, "Name": "web-1", "Description": "",
                   "RecycleBinEnterTime": "2026-11-30T00:00:00Z", "RecycleBinExitTime": "2026-12-10T00:00:00Z"}
                  ] if account == "prod" else []
        stub.add_response("list_images_in_recycle_bin", {"Images": listed}, {"ImageIds": [image_id]})
    stubs["prod"].add_response("list_snapshots_in_recycle_bin", {"Snapshots": []}, None)
    stubs["prod"].add_response("restore_image_from_recycle_bin", {"Return": True}, {"ImageId": image_id})
    for stub in stubs.values():
        stub.activate()
    org.command(f"restore {image_id}")
    for stub in stubs.values():
        stub.deactivate()
    stubs["prod"].assert_no_pending_responses()
    posted = [call for call in org.fake.calls if call.method == "chat.postMessage"]
    assert posted and image_id in posted[-1].text and "restored" in posted[-1].text
    rows = org.ctx.store.query("SELECT detail, action FROM audit WHERE action LIKE '%restore%'")
    assert rows and '"account": "111111111111"' in rows[-1]["detail"]


def test_drift_judges_instances_in_every_account_by_the_bake_accounts_families(org, aws):
    from tests.support.seed import family

    v1, v2 = family(aws, ["1.0.0", "2.0.0"])
    prod, staging = seed.account_session(aws, seed.PROD), seed.account_session(aws, seed.STAGING)
    for session, count in ((prod, 2), (staging, 1)):
        for _ in range(count):  # each runs bake's v1
            seed.instance_on_shared_image(session, v1)
    seed.instance(aws, image_id=v2)  # bake itself runs the current version

    org.command("drift web")
    shown = texts(org.last_reply())
    assert "3 instances on *web-1.0.0*" in shown and "1 version behind current web-2.0.0" in shown
    assert "prod 2, staging 1" in shown
    assert "1 instance on current web-2.0.0" in shown

    org.command("drift web --account staging")
    shown = texts(org.last_reply())
    assert "1 instance on *web-1.0.0*" in shown and "staging 1" in shown and "prod" not in shown


def test_an_accounts_own_operators_decide_every_changing_command_on_its_images(make_harness, aws):
    data = seed.three_accounts(REGIONS, **PEOPLE)
    data["accounts"][1]["operators"] = ["U0PRODOPS"]  # prod's operators replace [access].operators there
    org = make_harness(data)
    prod_image = seed.image(seed.account_session(aws, seed.PROD), "prod-web-1")
    bake_image = seed.image(aws, "bake-web-1")

    org.command(f"deregister {prod_image}", user="U0OPS")  # a global operator, not one of prod's
    assert "Only the operators of prod (111111111111) may run `/ami deregister` there" in org.last_reply().text
    assert org.ctx.store.query("SELECT * FROM requests") == []
    org.command(f"deprecate {prod_image}", user="U0OPS")
    assert "Only the operators of prod (111111111111)" in org.last_reply().text
    prod_ec2 = seed.account_session(aws, seed.PROD).client("ec2", "us-east-1")
    assert "DeprecationTime" not in prod_ec2.describe_images(ImageIds=[prod_image])["Images"][0]

    org.command(f"deregister {bake_image}", user="U0PRODOPS")  # prod's operator has no say in bake
    assert "Only amibot operators may run `/ami deregister`" in org.last_reply().text
    org.command(f"deregister {prod_image}", user="U0PRODOPS")
    assert "Asked for approval" in org.last_reply().text
    [request] = org.ctx.store.query("SELECT params FROM requests")
    assert '"account": "111111111111"' in request["params"]
