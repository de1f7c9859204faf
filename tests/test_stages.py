"""The stage commands end to end: deprecate/undeprecate and protect/unprotect (moto lacks them: the
"not supported" path against moto, the real calls through botocore's Stubber), disable/enable against
moto, and the approval that disabling or unprotecting a family's current version needs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber

from tests.support import seed

NOW = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "access": {"operators": ["U0OPS", "U0LEAD"]},
          "approvals": {"approvers": ["U0LEAD"]}}


@pytest.fixture
def app(make_harness):
    return make_harness(POLICY, clock=lambda: NOW)


def state_of(aws, image_id):
    return aws.client("ec2").describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]["State"]


def posted(app):
    return app.fake.calls_to("chat.postMessage")[-1]


class StubbedEc2:
    """The app's us-east-1 EC2 client behind a Stubber; describe_images answers with moto's own view
    of the image (plus what moto cannot show, e.g. DeprecationTime or DeregistrationProtection)."""

    def __init__(self, app, aws, image_id, **extra):
        self.client = app.ctx.aws.home.ec2("us-east-1")
        described = aws.client("ec2").describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]
        self.image = {**described, **extra}
        self.stub = Stubber(self.client)

    def describe(self):
        self.stub.add_response("describe_images", {"Images": [self.image]},
                               {"Owners": ["self"], "IncludeDisabled": True,
                                "Filters": [{"Name": "image-id", "Values": [self.image["ImageId"]]}]})

    def scan(self):
        # expected_params None: the scan's filters are bot.services.references' business
        self.stub.add_response("describe_instances", {"Reservations": []}, None)
        self.stub.add_response("describe_launch_template_versions", {"LaunchTemplateVersions": []}, None)

    def __enter__(self):
        self.stub.activate()
        return self

    def __exit__(self, *exc):
        self.stub.deactivate()


def approve_last_request(app):
    request = app.ctx.store.one("SELECT * FROM requests ORDER BY created_at DESC LIMIT 1")
    app.click("approval.approve", request["id"], user="U0LEAD")
    app.fake.wait_for_method("chat.postMessage", where=lambda c: "Succeeded" in c.text or "Failed" in c.text)
    app.wait_idle()
    return app.ctx.store.one("SELECT * FROM requests WHERE id = ?", (request["id"],))


# --- deprecate / undeprecate --------------------------------------------------------------------

def test_deprecate_in_n_days_calls_aws_with_the_rounded_time(app, aws):
    image = seed.image(aws, "web-1")
    with StubbedEc2(app, aws, image) as ec2:
        ec2.describe()
        ec2.stub.add_response("enable_image_deprecation", {"Return": True},
                              {"ImageId": image, "DeprecateAt": datetime(2026, 1, 31, 12, 1, tzinfo=UTC)})
        app.command(f"deprecate {image} --in 30 days")
        ec2.stub.assert_no_pending_responses()
    text = posted(app).text
    assert f"set deprecation at 2026-01-31 12:01 UTC for `{image}`" in text and f"/ami undeprecate {image}" in text
    row = app.ctx.store.one("SELECT detail, outcome FROM audit WHERE action = 'command.deprecate'")
    assert row["outcome"] == "ok" and "2026-01-31T12:01:00+00:00" in row["detail"]


def test_deprecate_at_a_date_and_undeprecate(app, aws):
    image = seed.image(aws, "web-1")
    with StubbedEc2(app, aws, image, DeprecationTime="2026-03-01T00:00:00.000Z") as ec2:
        ec2.describe()
        ec2.stub.add_response("enable_image_deprecation", {"Return": True},
                              {"ImageId": image, "DeprecateAt": datetime(2026, 3, 1, tzinfo=UTC)})
        app.command(f"deprecate {image} --at 2026-03-01")
        assert "2026-03-01 00:00 UTC" in posted(app).text
        ec2.describe()
        ec2.stub.add_response("disable_image_deprecation", {"Return": True}, {"ImageId": image})
        app.command(f"undeprecate {image}")
        ec2.stub.assert_no_pending_responses()
    assert f"cancelled the deprecation of `{image}`" in posted(app).text


BAD_DATES = [
    ("--at yesterday", "`--at yesterday` is not a date"),
    ("--at 2025-12-31", "`--at 2025-12-31` is in the past"),
    ("--at 2026-01-01T12:00Z", "`--at 2026-01-01T12:00Z` is in the past"),
    ("--in soon", "`--in soon` is not a duration"),
    ("--in 3 fortnights", "`--in 3 fortnights` is not a duration"),
    ("--in 0 days", "`--in` needs a positive duration"),
    ("--in 30 days --at 2026-05-01", "either `--in N days` or `--at DATE`, not both"),
    ("days", "`deprecate` does not take `days`"),
    ("--in 4000 days", "at most 10 years ahead"),
]


def test_deprecate_refuses_bad_dates_before_looking_anything_up(app):
    # The image does not exist: had the bot gone to AWS, the answer would be "not found".
    for flags, expected in BAD_DATES:
        app.command(f"deprecate ami-0123456789abcdef0 {flags}")
        assert expected in app.last_reply().text, flags
    outcomes = app.ctx.store.query("SELECT outcome FROM audit WHERE action = 'command.deprecate'")
    assert len(outcomes) == len(BAD_DATES) and all(row["outcome"].startswith("usage:") for row in outcomes)


def test_deprecation_and_protection_say_when_the_endpoint_does_not_support_them(app, aws):
    image = seed.image(aws, "web-1")
    app.command(f"deprecate {image} --in 2 weeks")
    assert "this AWS endpoint does not support ec2:EnableImageDeprecation" in app.last_reply().text
    app.command(f"undeprecate {image}")
    assert "this AWS endpoint does not support ec2:DisableImageDeprecation" in app.last_reply().text
    app.command(f"protect {image}")
    assert "this AWS endpoint does not support ec2:EnableImageDeregistrationProtection" in app.last_reply().text
    app.command(f"unprotect {image}")
    assert "this AWS endpoint does not support ec2:DisableImageDeregistrationProtection" in app.last_reply().text


# --- disable / enable ---------------------------------------------------------------------------

def test_disable_and_enable_change_the_state_in_aws(app, aws):
    image = seed.image(aws, "web-1")
    app.command(f"disable {image}")
    assert state_of(aws, image) == "disabled"
    text = posted(app).text
    assert f"disabled `{image}`" in text and "ready to deregister" in text and f"/ami enable {image}" in text
    app.command(f"disable {image}")
    assert "is already disabled" in app.last_reply().text
    app.command(f"enable {image}")
    assert state_of(aws, image) == "available" and f"enabled `{image}`" in posted(app).text
    app.command(f"enable {image}")
    assert "is available, not disabled; nothing to enable" in app.last_reply().text
    app.command("disable ami-0123456789abcdef0")
    assert "AMI ami-0123456789abcdef0 not found" in app.last_reply().text
    app.command(f"disable {image}", user="U0RANDOM")
    assert "Only amibot operators" in app.last_reply().text and state_of(aws, image) == "available"


def approve_confirmation(message) -> str:
    """The text of the Approve button's confirmation dialog in a request's message."""
    return next(element["confirm"]["text"]["text"] for block in message.params["blocks"] if block["type"] == "actions"
                for element in block["elements"] if element["action_id"] == "approval.approve")


def test_disabling_the_current_version_needs_approval(app, aws):
    image = seed.image(aws, "web-1", tags={"Family": "web"})
    seed.instance(aws, image_id=image, name="prod-1")
    app.command(f"promote {image}")
    app.command(f"disable {image}")
    assert "is the current version of *web*, so this needs approval" in app.last_reply().text
    assert state_of(aws, image) == "available"
    request = app.ctx.store.one("SELECT * FROM requests")
    assert request["kind"] == "disable" and request["state"] == "pending" and request["requester"] == "U0OPS"
    message = app.fake.calls_to("chat.postMessage")[-1]
    assert request["id"] in message.text and "prod-1" in message.text and "/amibot/web/current" in message.text
    confirm = approve_confirmation(message)  # names the image and how it is undone
    assert f"Disable web-1 ({image})" in confirm and f"/ami enable {image}" in confirm and len(confirm) <= 300

    app.click("approval.approve", request["id"], user="U0OPS")  # the requester cannot approve
    assert state_of(aws, image) == "available"
    done = approve_last_request(app)
    assert done["state"] == "succeeded" and state_of(aws, image) == "disabled"
    assert f"disabled {image} in us-east-1" in done["outcome"]


# --- protect / unprotect ------------------------------------------------------------------------

def test_protect_and_unprotect_through_the_api(app, aws):
    image = seed.image(aws, "web-1")
    with StubbedEc2(app, aws, image, DeregistrationProtection="disabled") as ec2:
        ec2.describe()
        ec2.stub.add_response("enable_image_deregistration_protection", {"Return": "enabled-with-cooldown"},
                              {"ImageId": image, "WithCooldown": True})
        app.command(f"protect {image} --cooldown")
        assert f"protected from deregistration `{image}`" in posted(app).text
        assert "24-hour cooldown" in posted(app).text
        ec2.image["DeregistrationProtection"] = "enabled"
        ec2.describe()
        app.command(f"protect {image}")
        assert "is already protected (enabled)" in app.last_reply().text
        ec2.describe()
        ec2.stub.add_response("disable_image_deregistration_protection", {"Return": "disabled"}, {"ImageId": image})
        app.command(f"unprotect {image}")
        ec2.stub.assert_no_pending_responses()
    assert f"removed deregistration protection from `{image}`" in posted(app).text


def test_unprotecting_the_current_version_needs_approval(app, aws):
    image = seed.image(aws, "web-1", tags={"Family": "web"})
    app.command(f"promote {image}")
    with StubbedEc2(app, aws, image, DeregistrationProtection="enabled") as ec2:
        ec2.describe()
        ec2.scan()  # the blast radius shown to the approvers
        app.command(f"unprotect {image}")
        assert "needs approval" in app.last_reply().text
        request = app.ctx.store.one("SELECT * FROM requests")
        assert request["kind"] == "unprotect" and request["danger"] == 1
        confirm = approve_confirmation(app.fake.calls_to("chat.postMessage")[-1])
        assert f"web-1 ({image})" in confirm and f"/ami protect {image}" in confirm
        ec2.describe()  # the approved execution looks again, then acts
        ec2.stub.add_response("disable_image_deregistration_protection", {"Return": "disabled"}, {"ImageId": image})
        done = approve_last_request(app)
        ec2.stub.assert_no_pending_responses()
    assert done["state"] == "succeeded" and f"removed deregistration protection from {image}" in done["outcome"]
