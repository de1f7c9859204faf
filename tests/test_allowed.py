"""Allowed AMIs: `/ami allowed`, and the warnings `/ami launch` and `/ami promote` give for an image the
account's criteria would block. moto lacks GetAllowedImagesSettings: the one-attempt EC2 client amibot uses
for it is stubbed with botocore's Stubber (response shapes from AWS's API reference)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from moto.core import DEFAULT_ACCOUNT_ID

from bot.services.allowed import ALLOWED, BLOCKED, UNKNOWN, AllowedSettings, verdict
from bot.services.images import Image
from tests.support import seed
from tests.support.probes import route_probes

POLICY = {"aws": {"regions": ["us-east-1"]}}
NOW = datetime.now(UTC)
ME = DEFAULT_ACCOUNT_ID


@pytest.fixture
def policy_data():
    return POLICY


@pytest.fixture
def allowed_stub(harness, monkeypatch):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    route_probes(harness, monkeypatch, ec2=ec2)
    with Stubber(ec2) as stub:
        yield stub
        stub.assert_no_pending_responses()


def image(name="web-1", owner=ME, created_days=10, deprecated_days=None, **raw):
    return Image(id="ami-0123456789abcdef0", name=name, region="us-east-1", state="available", owner_id=owner,
                 created=NOW - timedelta(days=created_days) if created_days is not None else None, public=False,
                 deprecation_time=NOW - timedelta(days=deprecated_days) if deprecated_days is not None else None,
                 raw=raw)


def on(*criteria, state="enabled"):
    return AllowedSettings("us-east-1", state=state, criteria=list(criteria))


@pytest.mark.parametrize(("settings", "subject", "expected"), [
    (on({"ImageProviders": ["none"]}), image(), ALLOWED),
    (on({"ImageProviders": ["amazon"]}), image(), BLOCKED),
    (on({"ImageProviders": ["amazon", ME]}), image(), ALLOWED),
    (on({"ImageProviders": ["amazon"]}), image(owner="137112412989", ImageOwnerAlias="amazon"), ALLOWED),
    (on({"ImageProviders": ["none"], "ImageNames": ["web-*"]}), image(name="api-1"), BLOCKED),
    (on({"ImageProviders": ["none"], "ImageNames": ["web-*"]}, {"ImageNames": ["api-?"]}), image(name="api-1"),
     ALLOWED),
    (on({"CreationDateCondition": {"MaximumDaysSinceCreated": 30}}), image(created_days=45), BLOCKED),
    (on({"CreationDateCondition": {"MaximumDaysSinceCreated": 30}}), image(created_days=None), UNKNOWN),
    (on({"DeprecationTimeCondition": {"MaximumDaysSinceDeprecated": 7}}), image(deprecated_days=9), BLOCKED),
    (on({"DeprecationTimeCondition": {"MaximumDaysSinceDeprecated": 7}}), image(), ALLOWED),
    (on({"ImageProviders": ["none"], "ScanResultCondition": {"MaximumSeverityLabel": "HIGH"}}), image(), UNKNOWN),
    (on(), image(), BLOCKED),
    (on({"ImageProviders": ["amazon"]}, state="disabled"), image(), ALLOWED),
    (AllowedSettings("us-east-1", error="this AWS endpoint does not support ec2:GetAllowedImagesSettings"),
     image(), UNKNOWN),
])
def test_verdict_follows_awss_rules_any_criterion_every_condition(settings, subject, expected):
    assert verdict(settings, subject, ME, NOW).result == expected


def test_allowed_shows_state_and_criteria(harness, allowed_stub):
    allowed_stub.add_response("get_allowed_images_settings", {
        "State": "audit-mode", "ManagedBy": "account",
        "ImageCriteria": [{"ImageProviders": ["amazon", "none"]},
                          {"ImageNames": ["golden-*"], "CreationDateCondition": {"MaximumDaysSinceCreated": 90}}]}, {})
    harness.command("allowed")
    text = harness.last_reply().text
    assert "*us-east-1*" in text and "*audit mode*" in text and "managed by account" in text
    assert "1. providers `amazon`, `none`" in text
    assert "2. names `golden-*` and created within 90 days" in text


def test_an_endpoint_without_allowed_amis_is_unknown(harness):
    harness.command("allowed")
    text = harness.last_reply().text
    assert "unknown: this AWS endpoint does not support ec2:GetAllowedImagesSettings" in text
    assert "disabled" not in text


def test_launch_warns_when_allowed_amis_would_block_the_image_and_still_launches(harness, aws, allowed_stub):
    image_id = seed.image(aws, "web-2")
    allowed_stub.add_response("get_allowed_images_settings",
                              {"State": "enabled", "ImageCriteria": [{"ImageProviders": ["amazon"]}]}, {})
    harness.command(f"launch {image_id}")
    warnings = [reply.text for reply in harness.replies() if "Allowed AMIs" in reply.text]
    assert warnings and "meets none of the 1 Allowed AMIs criteria in us-east-1: EC2 will refuse" in warnings[0]
    row = harness.ctx.store.one("SELECT detail FROM audit WHERE action = 'command.launch'")
    assert "allowed_amis" in row["detail"]


def test_promote_says_when_the_new_current_version_would_be_blocked(harness, aws, allowed_stub):
    image_id = seed.image(aws, "web-3", tags={"Family": "web"})
    allowed_stub.add_response("get_image_findings", {"ImageFindings": []}, {"ImageId": image_id})
    allowed_stub.add_response("get_allowed_images_settings",
                              {"State": "enabled", "ImageCriteria": [{"ImageNames": ["golden-*"]}]}, {})
    harness.command(f"promote {image_id}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "promoted" in posted.lower() and "meets none of the 1 Allowed AMIs criteria" in posted


def test_promote_of_an_allowed_image_says_nothing_about_it(harness, aws, allowed_stub):
    image_id = seed.image(aws, "golden-4", tags={"Family": "golden"})
    allowed_stub.add_response("get_image_findings", {"ImageFindings": []}, {"ImageId": image_id})
    allowed_stub.add_response("get_allowed_images_settings",
                              {"State": "enabled", "ImageCriteria": [{"ImageNames": ["golden-*"]}]}, {})
    harness.command(f"promote {image_id}")
    assert "Allowed AMIs" not in harness.fake.calls_to("chat.postMessage")[-1].text
