"""The digest's fleet-health part, through the real app over HTTP on the demo's emulated AWS (moto plus
bot.devtools.emulation for the Recycle Bin, Inspector findings, instance image metadata and Allowed AMIs):
images about to leave the Recycle Bin, drift, vulnerable images still in use, stale images with critical
findings ranked first, a current version Allowed AMIs would block, and the trend — and, on plain moto, every
part it cannot check said so instead of "none"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import seed
from tests.support.emulation import CURL, EmulatedHarness, retention_rules

REGION = "us-east-1"
POLICY = {"aws": {"regions": [REGION]}, "access": {"operators": ["U0OPS"]},
          "approvals": {"approvers": ["U0LEAD"]}, "digest": {"stale_after_days": 90, "keep_latest": 2}}
NOW = datetime.now(UTC)


@pytest.fixture
def app(aws, fake_slack, tmp_path):
    running = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"), POLICY).start()
    yield running
    running.stop()


def family(app, name, ages):
    source = seed.instance(app.session)
    return [seed.image(app.session, f"{name}-{number}", tags={"Family": name, "Version": str(number)},
                       from_instance=source, created=NOW - timedelta(days=age))
            for number, age in enumerate(ages, start=1)]


def digest_text(app) -> str:
    app.command("digest", user="U0OPS")
    posted = [call for call in app.fake.calls_to("chat.postMessage") if "digest" in call.text.lower()]
    assert posted, "no digest was posted"
    return posted[-1].text


def test_the_digest_reports_fleet_health_with_the_worst_first(app):
    retention_rules(app, days=14)
    web1, web2 = family(app, "web", [200, 20])
    app.command(f"promote {web2} --force", user="U0OPS")
    for image_id in (web1, web1, web2):
        seed.instance(app.session, image_id=image_id)
    batch = family(app, "batch", [300, 250, 200])
    app.emulation.add_findings(REGION, web1, [CURL])
    app.emulation.add_findings(REGION, batch[0], [CURL])
    leaving = seed.image(app.session, "old-web-0")
    app.session.client("ec2", REGION).deregister_image(ImageId=leaving)
    app.emulation.entered_bin(REGION, leaving, NOW - timedelta(days=8))  # 14-day rule: leaves in 6 days
    app.emulation.set_allowed(REGION, "enabled", [{"ImageNames": ["golden-*"]}])

    text = digest_text(app)
    assert "Leaving the Recycle Bin for good within 7 days" in text and leaving in text
    assert f"`/ami restore {leaving}`" in text
    assert "*Drift:* 2 instance(s) not on their family's current version" in text
    assert "*web* (us-east-1): 2 behind current web-2, 1 on it" in text
    assert f"web-1 `{web1}` · us-east-1 · 1 critical · 2 instance(s)" in text
    assert "Allowed AMIs would block* web's current version web-2" in text
    # the stale batch-1 has a critical finding: said on its line, and listed first among the stale images
    stale_lines = [line for line in text.splitlines() if "days old ·" in line]
    assert batch[0] in stale_lines[0] and ":red_circle: 1 critical finding" in stale_lines[0]
    # the deregistered image's snapshot stays: the image is in the bin and a restore needs it
    assert "snapshot(s) of images now in the Recycle Bin are not listed as orphaned" in text
    assert "which is gone" not in text

    history = app.ctx.store.one("SELECT drifted_instances FROM digest_history")
    assert history["drifted_instances"] == 2


def test_on_an_endpoint_without_the_newer_apis_the_digest_says_what_it_could_not_check(harness, aws):
    seed.image(aws, "lonely")
    harness.command("digest", user="U0OPS")
    text = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "Not fully checked" in text
    assert "Recycle Bin: this AWS endpoint does not support ec2:ListImagesInRecycleBin" in text
    assert "Allowed AMIs: this AWS endpoint does not support ec2:GetAllowedImagesSettings" in text
    assert "Leaving the Recycle Bin" not in text


def _in_group(session, instance_id: str, group: str) -> str:
    session.client("ec2", REGION).create_tags(Resources=[instance_id], Tags=[{"Key": "aws:autoscaling:groupName",
                                                                             "Value": group}])
    return instance_id


def test_the_drift_part_says_to_roll_out_the_families_whose_auto_scaling_groups_run_an_older_version(app):
    web1, web2 = family(app, "web", [60, 20])
    api1, api2 = family(app, "api", [60, 20])
    app.command(f"promote {web2} --force", user="U0OPS")
    app.command(f"promote {api2} --force", user="U0OPS")
    _in_group(app.session, seed.instance(app.session, image_id=web1), "web-asg")
    seed.instance(app.session, image_id=api1)  # api: one loose instance behind, no group to roll
    text = digest_text(app)
    web = next(line for line in text.splitlines() if line.startswith("• *web*"))
    assert "roll it out: `/ami rollout web` (1 Auto Scaling group: web-asg)" in web, text
    api = next(line for line in text.splitlines() if line.startswith("• *api*"))
    assert "roll it out" not in api


def test_on_plain_moto_the_drift_part_finds_the_groups_from_the_instances_the_scan_listed(harness, aws):
    """No instance image metadata: drift takes the instances the digest's own scan listed — with their group."""
    source = seed.instance(aws)
    old = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"}, from_instance=source,
                     created=NOW - timedelta(days=60))
    new = seed.image(aws, "web-2", tags={"Family": "web", "Version": "2"}, from_instance=source,
                     created=NOW - timedelta(days=20))
    harness.command(f"promote {new}", user="U0OPS")
    _in_group(aws, seed.instance(aws, image_id=old), "web-asg")
    harness.command("digest", user="U0OPS")
    text = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "*web* (us-east-1): 1 behind current web-2, 0 on it" in text, text
    assert "roll it out: `/ami rollout web` (1 Auto Scaling group: web-asg)" in text
