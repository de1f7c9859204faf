"""The new image's Share button opens a small form; submitting it shares exactly as `/ami share` does."""

from __future__ import annotations

import json

import pytest

from tests.support import seed

FRIEND, STRANGER = "111122223333", "444455556666"
POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]},
          "sharing": {"allowed_accounts": [FRIEND]}}


@pytest.fixture
def policy_data():
    return json.loads(json.dumps(POLICY))


def launch_accounts(aws, image_id):
    permissions = aws.client("ec2").describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
    return [p.get("UserId") for p in permissions["LaunchPermissions"]]


def open_form(harness, image_id):
    harness.click("image.share", image_id, user="U0OPS")
    opened = harness.fake.calls_to("views.open")
    assert opened, "the Share button opened no form"
    return {**opened[-1].params["view"], "id": "V0SHARE", "hash": "h1"}


def submit(harness, view, target, region="any", user="U0OPS"):
    values = {"share_target": {"value": {"type": "plain_text_input", "value": target}},
              "share_region": {"value": {"type": "static_select", "selected_option": {"value": region}}}}
    return harness.interact(harness.local.sim.view_submission_payload(view, user, values))


def test_share_button_opens_a_form_and_sharing_with_an_allowed_account_happens_at_once(harness, aws):
    image_id = seed.image(aws, "web-7")
    view = open_form(harness, image_id)
    assert view["callback_id"] == "share.form"
    assert [block["block_id"] for block in view["blocks"] if block["type"] == "input"] == [
        "share_target", "share_region"]
    regions = [option["value"] for option in view["blocks"][2]["element"]["options"]]
    assert regions == ["any", "us-east-1", "eu-west-1"]

    response = submit(harness, view, FRIEND, region="us-east-1")
    assert response.status == 200 and not response.body.strip()  # accepted: the modal closes
    assert launch_accounts(aws, image_id) == [FRIEND]
    posted = harness.fake.calls_to("chat.postMessage")[-1]
    assert "shared" in posted.text and FRIEND in posted.text
    row = harness.ctx.store.one("SELECT * FROM audit WHERE action = 'command.share' ORDER BY id DESC")
    assert row["actor"] == "U0OPS" and row["target"] == image_id and row["outcome"] == "ok"


def test_a_bad_target_is_shown_on_the_field_and_nothing_is_shared(harness, aws):
    image_id = seed.image(aws, "web-8")
    view = open_form(harness, image_id)
    response = submit(harness, view, "12345")
    body = response.json()
    assert body["response_action"] == "errors"
    assert "is not an AWS account id" in body["errors"]["share_target"]
    assert launch_accounts(aws, image_id) == []


def test_a_stranger_account_from_the_form_needs_approval(harness, aws):
    image_id = seed.image(aws, "web-9")
    view = open_form(harness, image_id)
    submit(harness, view, STRANGER)
    assert launch_accounts(aws, image_id) == []
    request = harness.ctx.store.one("SELECT * FROM requests WHERE kind = 'share'")
    assert request and request["state"] == "pending" and STRANGER in request["title"]


def test_the_same_submission_replayed_shares_once(harness, aws):
    image_id = seed.image(aws, "web-10")
    view = open_form(harness, image_id)
    values = {"share_target": {"value": {"type": "plain_text_input", "value": STRANGER}},
              "share_region": {"value": {"type": "static_select", "selected_option": {"value": "any"}}}}
    payload = harness.local.sim.view_submission_payload(view, "U0OPS", values)
    for headers in ({}, {}, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}):
        harness.interact(payload, headers=headers)
    assert len(harness.ctx.store.query("SELECT * FROM requests WHERE kind = 'share'")) == 1
