"""Issue 11 §3 across three accounts, through the real app: `/ami share` by account name in the image's own
account, `[sharing].allow_configured_accounts`, approval messages and audit rows that name the account, and the
per-account `approvers` and `operators` of `[[accounts]]`."""

from __future__ import annotations

import json

from bot.durable.steps import DONE, Step, Steps
from bot.services import approvals
from tests.support import seed

REGIONS = ["us-east-1", "eu-west-1"]
PROD_LABEL = f"prod ({seed.PROD})"
BAKE_LABEL = f"bake ({seed.BAKE})"


def policy(sharing: dict | None = None, prod: dict | None = None, **sections) -> dict:
    """Three accounts; global approver U0LEAD, global operators U0OPS and U0LEAD; `prod` adds keys to prod's
    [[accounts]] entry (its own approvers / operators)."""
    data = seed.three_accounts(REGIONS, approvals={"approvers": ["U0LEAD"]},
                               access={"operators": ["U0OPS", "U0LEAD"]}, sharing=sharing or {}, **sections)
    for account in data["accounts"]:
        if account["name"] == "prod":
            account.update(prod or {})
    return data


def prod_image(aws, name: str = "web-v1") -> tuple[str, object]:
    session = seed.account_session(aws, seed.PROD)
    return seed.image(session, name), session


def launch_permissions(session, image_id: str, region: str = "us-east-1") -> list[dict]:
    return session.client("ec2", region).describe_image_attribute(
        ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]


def volume_permissions(session, image_id: str) -> list[dict]:
    ec2 = session.client("ec2", "us-east-1")
    [image] = ec2.describe_images(ImageIds=[image_id])["Images"]
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    return ec2.describe_snapshot_attribute(SnapshotId=snapshot_id,
                                           Attribute="createVolumePermission")["CreateVolumePermissions"]


def last_request(harness) -> dict:
    row = harness.ctx.store.one("SELECT * FROM requests ORDER BY created_at DESC, rowid DESC")
    assert row, "no approval request was stored"
    return row


def request_message(harness, request_id: str):
    return [c for c in harness.fake.calls_to("chat.postMessage") if request_id in c.text and "Approve" in c.text][0]


def audit_rows(harness, action: str) -> list[dict]:
    rows = harness.ctx.store.query("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))
    return [{**row, "detail": json.loads(row["detail"])} for row in rows]


def test_share_by_account_name_acts_in_the_owning_account_without_approval_when_configured_accounts_are_allowed(
        make_harness, aws):
    image_id, prod = prod_image(aws)
    harness = make_harness(policy(sharing={"allow_configured_accounts": True}))

    harness.command(f"share {image_id} staging")

    assert launch_permissions(prod, image_id) == [{"UserId": seed.STAGING}]  # in prod, where the image is
    assert volume_permissions(prod, image_id) == [{"UserId": seed.STAGING}]
    assert harness.ctx.store.query("SELECT * FROM requests") == []
    shared = [c for c in harness.fake.calls_to("chat.postMessage") if "shared" in c.text]
    assert shared and f"with account `{seed.STAGING}`" in shared[-1].text
    [row] = audit_rows(harness, "command.share")
    assert row["outcome"] == "ok" and row["target"] == image_id
    assert row["detail"]["account"] == seed.PROD and row["detail"]["account_label"] == PROD_LABEL
    assert row["detail"]["target"] == seed.STAGING and row["detail"]["target_name"] == "staging"

    harness.command(f"audit {image_id}")
    assert PROD_LABEL in harness.last_reply().text  # the history shows the account

    harness.command(f"unshare {image_id} STAGING")  # names in any case
    assert launch_permissions(prod, image_id) == []
    assert volume_permissions(prod, image_id) == []


def test_an_unknown_account_name_lists_the_known_ones(make_harness, aws):
    image_id, prod = prod_image(aws)
    harness = make_harness(policy(sharing={"allow_configured_accounts": True}))

    harness.command(f"share {image_id} qa")

    reply = harness.last_reply().text
    assert "`qa` is not an account amibot manages" in reply
    assert "`bake`, `prod`, `staging`" in reply
    assert launch_permissions(prod, image_id) == []


def test_without_allow_configured_accounts_a_managed_account_needs_approval_and_the_message_names_the_account(
        make_harness, aws):
    image_id, prod = prod_image(aws)
    harness = make_harness(policy())

    harness.command(f"share {image_id} staging")

    reply = harness.last_reply().text
    assert "[sharing].allow_configured_accounts is off" in reply
    assert launch_permissions(prod, image_id) == []
    request = last_request(harness)
    params = json.loads(request["params"])
    assert params["account"] == seed.PROD and params["target"] == seed.STAGING
    message = request_message(harness, request["id"])
    assert f"*Account:* {PROD_LABEL}" in message.text
    assert f"account staging ({seed.STAGING})" in message.text  # the title names the receiver too
    [created] = audit_rows(harness, "request.created")
    assert created["detail"]["account_label"] == PROD_LABEL
    harness.command("requests")
    assert f"{request['id']}" in harness.last_reply().text and PROD_LABEL in harness.last_reply().text

    harness.click("approval.approve", value=request["id"], user="U0LEAD", message_ts=message.ts)

    assert last_request(harness)["state"] == "succeeded"
    assert launch_permissions(prod, image_id) == [{"UserId": seed.STAGING}]
    assert volume_permissions(prod, image_id) == [{"UserId": seed.STAGING}]
    assert all(row["detail"]["account_label"] == PROD_LABEL for row in audit_rows(harness, "request.succeeded"))
    harness.command(f"audit {request['id']}")
    assert PROD_LABEL in harness.last_reply().text


def test_an_approver_listed_only_for_prod_approves_prod_requests_and_not_the_bake_accounts(make_harness, aws):
    prod_id, prod = prod_image(aws)
    bake_id = seed.image(aws, "bake-v1")
    stranger = "444455556666"
    harness = make_harness(policy(prod={"approvers": ["U0PRODLEAD"]}))

    harness.command(f"share {prod_id} {stranger}")
    prod_request = last_request(harness)
    prod_message = request_message(harness, prod_request["id"])
    assert "<@U0PRODLEAD>" in prod_message.text and "<@U0LEAD>" not in prod_message.text  # who may approve

    harness.command(f"share {bake_id} {stranger}")
    bake_request = last_request(harness)
    bake_message = request_message(harness, bake_request["id"])
    assert f"*Account:* {BAKE_LABEL}" in bake_message.text and "<@U0LEAD>" in bake_message.text

    # The Home tab of each lists what they may approve: the prod approver's has the prod request only
    from tests.support.home import open_home, view_text

    prod_home, lead_home = view_text(open_home(harness, "U0PRODLEAD")[-1]), view_text(open_home(harness, "U0LEAD")[-1])
    assert prod_request["id"] in prod_home and bake_request["id"] not in prod_home
    assert bake_request["id"] in lead_home and prod_request["id"] not in lead_home

    # The prod approver may not approve in bake…
    harness.click("approval.approve", value=bake_request["id"], user="U0PRODLEAD", message_ts=bake_message.ts)
    refusal = harness.last_reply().text
    assert f"You are not an approver for {bake_request['id']} (in {BAKE_LABEL})" in refusal
    assert last_request_by_id(harness, bake_request["id"])["state"] == "pending"
    [refused] = audit_rows(harness, "request.approve-refused")
    assert refused["detail"]["account_label"] == BAKE_LABEL

    # …the global approver may not approve in prod (prod's list replaces the global one)…
    harness.click("approval.approve", value=prod_request["id"], user="U0LEAD", message_ts=prod_message.ts)
    assert f"(in {PROD_LABEL})" in harness.last_reply().text
    assert last_request_by_id(harness, prod_request["id"])["state"] == "pending"

    # …and each approves in their own account.
    harness.click("approval.approve", value=prod_request["id"], user="U0PRODLEAD", message_ts=prod_message.ts)
    assert last_request_by_id(harness, prod_request["id"])["state"] == "succeeded"
    assert launch_permissions(prod, prod_id) == [{"UserId": stranger}]
    harness.click("approval.approve", value=bake_request["id"], user="U0LEAD", message_ts=bake_message.ts)
    assert last_request_by_id(harness, bake_request["id"])["state"] == "succeeded"
    assert launch_permissions(aws, bake_id) == [{"UserId": stranger}]


def last_request_by_id(harness, request_id: str) -> dict:
    return harness.ctx.store.one("SELECT * FROM requests WHERE id = ?", (request_id,))


def test_per_account_operators_replace_the_global_ones_for_that_account(make_harness, aws):
    prod_id, prod = prod_image(aws)
    bake_id = seed.image(aws, "bake-v1")
    harness = make_harness(policy(sharing={"allow_configured_accounts": True}, prod={"operators": ["U0PRODOPS"]}))

    harness.command(f"share {prod_id} staging", user="U0OPS")  # a global operator, not prod's
    reply = harness.last_reply().text
    assert f"Only the operators of {PROD_LABEL} may run `/ami share` there" in reply
    assert "Its operators: <@U0PRODOPS>; ask one of them" in reply
    assert launch_permissions(prod, prod_id) == []
    [refused] = audit_rows(harness, "command.share")
    assert refused["outcome"].startswith("refused:") and refused["detail"]["account_label"] == PROD_LABEL

    harness.command(f"share {prod_id} staging", user="U0PRODOPS")  # prod's operator, in no global list
    assert launch_permissions(prod, prod_id) == [{"UserId": seed.STAGING}]

    harness.command(f"share {bake_id} staging", user="U0PRODOPS")  # bake keeps [access].operators
    assert f"Only amibot operators may run `/ami share` in {BAKE_LABEL}" in harness.last_reply().text
    assert "Operators: <@U0OPS>, <@U0LEAD>; ask one of them" in harness.last_reply().text
    assert launch_permissions(aws, bake_id) == []

    harness.command(f"share {bake_id} staging", user="U0NOBODY")  # an operator nowhere: refused before any AWS
    assert "Only amibot operators may run `/ami share`." in harness.last_reply().text
    harness.command(f"share {bake_id} staging", user="U0OPS")
    assert launch_permissions(aws, bake_id) == [{"UserId": seed.STAGING}]


def test_a_share_interrupted_in_prod_is_finished_in_prod_after_a_restart(make_harness, aws):
    image_id, prod = prod_image(aws, "shared-half")
    ec2 = prod.client("ec2", "us-east-1")
    [snapshot_id] = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image_id])["Images"][0]
                     ["BlockDeviceMappings"] if "Ebs" in m]
    first = make_harness(policy())
    first.command(f"share {image_id} staging")
    request_id = last_request(first)["id"]
    # The launch permission went through in prod; the process died before the snapshot's permission.
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": seed.STAGING}]})
    first.ctx.store.execute("UPDATE requests SET state = 'executing' WHERE id = ?", (request_id,))
    steps = Steps(first.ctx.store, f"request:{request_id}")
    launch_step, _ = steps.plan([Step("launch_permission", image_id), Step("snapshot_permission", snapshot_id)])
    steps.mark(launch_step, DONE, "done")
    first.stop()

    second = make_harness(policy())
    second.wait_idle()

    done = approvals.get(second.ctx, request_id)
    assert done.state == "succeeded", done.outcome
    assert f"after: granted createVolumePermission on {snapshot_id}" in done.outcome
    assert volume_permissions(prod, image_id) == [{"UserId": seed.STAGING}]


def test_the_share_form_takes_an_account_name_and_says_which_names_it_knows(make_harness, aws):
    image_id, prod = prod_image(aws, "web-form")
    harness = make_harness(policy(sharing={"allow_configured_accounts": True}))
    harness.click("image.share", image_id, user="U0OPS")
    view = {**harness.fake.calls_to("views.open")[-1].params["view"], "id": "V0SHARE", "hash": "h1"}

    def submit(target: str):
        values = {"share_target": {"value": {"type": "plain_text_input", "value": target}},
                  "share_region": {"value": {"type": "static_select", "selected_option": {"value": "any"}}}}
        return harness.interact(harness.local.sim.view_submission_payload(view, "U0OPS", values))

    refused = submit("qa").json()
    assert refused["response_action"] == "errors"
    assert "qa is not an account amibot manages (it knows bake, prod, staging)" in refused["errors"]["share_target"]
    assert launch_permissions(prod, image_id) == []

    assert submit("Staging").status == 200
    assert launch_permissions(prod, image_id) == [{"UserId": seed.STAGING}]
