"""`/ami revoke` end to end on the demo's emulated AWS (deprecation is emulated; moto lacks it): the request shows
what will change before anyone approves, only operators ask and someone else approves, its approval rolls the
channel back and deprecates and disables the image (and its descendants), each step once, even across a restart."""

from __future__ import annotations

import pytest

from bot.durable.steps import Steps
from bot.services import approvals, revoke
from bot.services.lineage import SOURCE_TAG
from tests.support import seed
from tests.support.emulation import REGION, EmulatedHarness
from tests.support.home import open_home, view_text

POLICY = {"aws": {"regions": [REGION]}, "access": {"operators": ["U0OPS", "U0LEAD"]},
          "approvals": {"approvers": ["U0LEAD"]}}
PARAMETER = "/amibot/web/current"


@pytest.fixture
def app(aws, fake_slack, tmp_path):
    running = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"), POLICY).start()
    yield running
    running.stop()


def family(app) -> tuple[str, str]:
    """web-1.4.0 promoted, then web-1.5.0 promoted: 1.5.0 is current, 1.4.0 the previous version."""
    old, new = seed.family(app.session, ["1.4.0", "1.5.0"])
    app.command(f"promote {old}")
    app.command(f"promote {new}")
    return old, new


def group_on(app, image_id: str, name: str = "web-asg", size: int = 2) -> None:
    ec2 = app.session.client("ec2", REGION)
    template = ec2.create_launch_template(LaunchTemplateName=f"{name}-lt", LaunchTemplateData={
        "ImageId": image_id, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    app.session.client("autoscaling", REGION).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=size, DesiredCapacity=size, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})


def image_of(app, image_id: str) -> dict:
    return app.session.client("ec2", REGION).describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]


def parameter(app) -> str:
    return app.session.client("ssm", REGION).get_parameter(Name=PARAMETER)["Parameter"]["Value"]


def request_message(app):
    for call in app.fake.calls_to("chat.postMessage"):
        if "approval.approve" in str(call.params.get("blocks")):
            return call
    raise AssertionError("no approval message was posted")


def the_request(app) -> approvals.Request:
    row = app.ctx.store.one("SELECT id FROM requests WHERE kind = 'revoke' ORDER BY created_at DESC")
    return approvals.get(app.ctx, row["id"])


def approve(app, request: approvals.Request, user: str = "U0LEAD") -> approvals.Request:
    app.click("approval.approve", request.id, user=user)
    app.wait_idle()
    return approvals.get(app.ctx, request.id)


def audited(app, action: str) -> list[dict]:
    return app.ctx.store.query("SELECT target, outcome FROM audit WHERE action = ?", (action,))


def test_the_request_shows_the_channel_move_the_images_and_what_runs_them(app):
    old, new = family(app)
    group_on(app, new)
    app.command(f'revoke {new} --reason "CVE-2024-6387 in sshd"')
    text = request_message(app).text
    assert "CVE-2024-6387 in sshd" in text
    assert f"{PARAMETER}" in text and f"`{new}` → `{old}`" in text  # the channel moves back
    assert "Deprecated now and disabled (1)" in text and new in text
    assert "2 instance(s) in 1 Auto Scaling group(s)" in text and "web-asg (us-east-1) (2)" in text
    request = the_request(app)
    assert request.state == "pending" and request.params["reason"] == "CVE-2024-6387 in sshd"
    assert parameter(app) == new and image_of(app, new)["State"] == "available"  # nothing changed yet


def test_self_approval_and_a_non_operator_are_refused_and_nothing_changes(app):
    _, new = family(app)
    app.command(f"revoke {new}", user="U0NOBODY")
    assert "operator" in app.last_reply().text
    assert app.ctx.store.query("SELECT id FROM requests WHERE kind = 'revoke'") == []
    app.command(f"revoke {new} --reason bad")
    request = approve(app, the_request(app), user="U0OPS")  # the requester
    assert request.state == "pending"
    assert parameter(app) == new and image_of(app, new)["State"] == "available"
    assert "DeprecationTime" not in image_of(app, new)
    assert audited(app, "revoke.plan") == []


def test_approval_rolls_the_channel_back_deprecates_and_disables_with_audit_rows(app):
    old, new = family(app)
    group_on(app, new)
    app.command(f'revoke {new} --reason "broken agent"')
    done = approve(app, the_request(app))
    assert done.state == "succeeded", done.outcome
    assert parameter(app) == old
    described = image_of(app, new)
    assert described["State"] == "disabled" and described.get("DeprecationTime")
    assert {tag["Key"]: tag["Value"] for tag in described["Tags"]}[revoke.REVOKED_TAG] == "broken agent"
    for action in ("plan", "rollback_channel", "tag_revoked", "deprecate_image", "disable_image", "offer_rollout"):
        assert len(audited(app, f"revoke.{action}")) == 1, action
    thread = [call.text for call in app.fake.calls_to("chat.postMessage") if call.params.get("thread_ts")]
    assert any("`/ami rollout web`" in text and "web-asg" in text and "2 instance(s)" in text for text in thread), \
        thread


def test_descendants_are_revoked_too(app):
    _, new = family(app)
    child = seed.image(app.session, "web-1.5.0-hardened",
                       tags={"Family": "web-hardened", SOURCE_TAG: new})
    app.command(f"revoke {new} --descendants --reason cve")
    text = request_message(app).text
    assert "Deprecated now and disabled (2)" in text and child in text
    done = approve(app, the_request(app))
    assert done.state == "succeeded", done.outcome
    assert image_of(app, child)["State"] == "disabled" and image_of(app, child).get("DeprecationTime")
    assert image_of(app, new)["State"] == "disabled"


def test_revoking_a_version_that_is_not_current_moves_no_channel(app):
    old, new = family(app)
    app.command(f"revoke {old} --reason old")
    assert "no channel moves" in request_message(app).text
    done = approve(app, the_request(app))
    assert done.state == "succeeded", done.outcome
    assert parameter(app) == new and image_of(app, old)["State"] == "disabled"
    assert audited(app, "revoke.rollback_channel") == []


def test_a_restart_mid_execution_resumes_and_repeats_nothing(aws, fake_slack, tmp_path, monkeypatch):
    db = str(tmp_path / "amibot.db")
    first = EmulatedHarness(fake_slack, db, POLICY).start()
    old, new = family(first)
    first.command(f"revoke {new} --reason crash")
    request = the_request(first)
    real = revoke._run

    def dies_before_disabling(ctx, request, steps, step, progress):  # the process is killed right here
        if step.action in (revoke.DISABLE, revoke.OFFER):
            return None
        return real(ctx, request, steps, step, progress)

    monkeypatch.setattr(revoke, "_run", dies_before_disabling)
    approve(first, request)
    first.ctx.store.execute("UPDATE requests SET state = 'executing', outcome = NULL WHERE id = ?", (request.id,))
    first.stop()
    monkeypatch.setattr(revoke, "_run", real)
    assert parameter(first) == old and image_of(first, new)["State"] == "available"

    second = EmulatedHarness(fake_slack, db, POLICY).start()
    try:
        second.wait_idle()
        done = approvals.get(second.ctx, request.id)
        assert done.state == "succeeded", done.outcome
        assert done.outcome.startswith(f"Before the restart: moved web@-/us-east-1 back, tagged {new}, "
                                       f"deprecated {new}; after: disabled {new}, offered the rollout")
        assert image_of(second, new)["State"] == "disabled" and parameter(second) == old
        for action in ("rollback_channel", "tag_revoked", "deprecate_image", "disable_image"):
            assert len(audited(second, f"revoke.{action}")) == 1, action
        rolled = second.ctx.store.query("SELECT id FROM promotions WHERE rolled_back_at IS NOT NULL")
        assert len(rolled) == 1
        assert all(not step.open for step in Steps(second.ctx.store, f"request:{request.id}").all())
    finally:
        second.stop()


def test_show_marks_a_revoked_image_with_the_reason(app):
    _, new = family(app)
    app.command(f'revoke {new} --reason "CVE-2024-6387"')
    approve(app, the_request(app))
    app.command(f"show {new}")
    assert "Revoked*: CVE-2024-6387" in app.last_reply().text


def test_the_home_tab_lists_revoked_images_with_the_reason(app):
    _, new = family(app)
    app.command(f'revoke {new} --reason "CVE-2024-6387"')
    approve(app, the_request(app))
    [published] = open_home(app, "U0OPS")[-1:]
    text = view_text(published)
    assert "Revoked images" in text and new in text and "CVE-2024-6387" in text


def test_a_restart_after_the_rollback_was_claimed_but_before_the_channel_moved_moves_it(aws, fake_slack, tmp_path,
                                                                                          monkeypatch):
    db = str(tmp_path / "amibot.db")
    first = EmulatedHarness(fake_slack, db, POLICY).start()
    old, new = family(first)
    first.command(f"revoke {new} --reason crash")
    request = the_request(first)
    real = revoke._run
    monkeypatch.setattr(revoke, "_run", lambda *args: None)  # killed before any step ran …
    approve(first, request)
    # … but after rollback() claimed the promotion row (its conditional UPDATE), before it wrote the parameter
    first.ctx.store.execute("UPDATE promotions SET rolled_back_at = '2026-01-01T00:00:00' WHERE image_id = ?", (new,))
    first.ctx.store.execute("UPDATE requests SET state = 'executing', outcome = NULL WHERE id = ?", (request.id,))
    first.stop()
    monkeypatch.setattr(revoke, "_run", real)
    assert parameter(first) == new

    second = EmulatedHarness(fake_slack, db, POLICY).start()
    try:
        second.wait_idle()
        done = approvals.get(second.ctx, request.id)
        assert done.state == "succeeded", done.outcome
        assert parameter(second) == old and image_of(second, new)["State"] == "disabled"
    finally:
        second.stop()


def test_with_instance_refresh_available_the_revocation_opens_the_rollout_request_with_its_plan(
        aws, fake_slack, tmp_path):
    """The incident path's last step: a second four-eyes request — a rollout of the family's (rolled back)
    current version to the groups still running the revoked image — not just a suggestion."""
    from bot.devtools.demo import RunEmulations

    app = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"), POLICY, runs=RunEmulations.new(0.05)).start()
    try:
        old, new = family(app)
        group_on(app, new)
        app.command(f"revoke {new} --reason cve")
        revocation = the_request(app)
        done = approve(app, revocation)
        assert done.state == "succeeded", done.outcome
        [follow_up] = [row for row in app.ctx.store.query("SELECT id, kind, params, requester FROM requests")
                       if row["kind"] == "rollout"]
        assert follow_up["requester"] == revocation.requester  # so its approver, not its requester, approves it
        thread = [call.text for call in app.fake.calls_to("chat.postMessage") if call.params.get("thread_ts")]
        assert any(f"Rollout request `{follow_up['id']}`" in text and "web-asg" in text for text in thread), thread
        assert "web-asg" in follow_up["params"] and parameter(app) == old  # the plan rolls back to the old version
    finally:
        app.stop()


def test_metrics_count_the_images_revoked_once(app):
    from prometheus_client.parser import text_string_to_metric_families

    from bot.core import metrics

    _, new = family(app)
    seed.image(app.session, "web-1.5.0-hardened", tags={"Family": "web-hardened", SOURCE_TAG: new})
    app.command(f"revoke {new} --descendants --reason cve")
    request = the_request(app)
    assert approve(app, request).state == "succeeded"
    approve(app, request)  # a replayed approval revokes (and counts) nothing more
    text = metrics.render(app.ctx.metrics.registry)[0].decode()
    samples = {sample.name: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    assert samples.get("amibot_images_revoked_total") == 2.0
