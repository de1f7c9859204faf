"""Four-eyes deregistration end to end: request, blast radius, approve/reject/cancel, exactly once,
crash recovery, reminders and expiry, and an audit chain that still verifies afterwards."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.durable import audit
from bot.services import approvals
from tests.support import seed
from tests.support.approvals import POLICY, approval_message, last_update
from tests.support.ec2 import image_exists, snapshot_exists, snapshots_of


@pytest.fixture
def policy_data():
    return POLICY


def test_request_then_approve_deregisters_and_deletes_snapshots(harness, aws):
    image_id = seed.image(aws, "web-old", tags={"Family": "web"})
    aws.client("ec2").modify_image_attribute(ImageId=image_id,
                                             LaunchPermission={"Add": [{"UserId": "210987654321"}]})
    snapshots = snapshots_of(aws, image_id)
    harness.command(f"deregister {image_id}", user="U0OPS")
    assert "Asked for approval: `req-" in harness.last_reply().text
    message, request_id = approval_message(harness.fake)
    assert message.params["channel"] == "C0OPS"
    for expected in (image_id, "Snapshots to delete", snapshots[0], "account `210987654321`", "15 GiB",
                     "$0.75/month", "assume it cannot", "requested by <@U0OPS>"):
        assert expected in message.text, expected
    assert image_exists(aws, image_id)  # nothing happens before approval

    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert not image_exists(aws, image_id)
    assert not snapshot_exists(aws, snapshots[0])
    final = last_update(harness.fake, message.ts)
    assert "Approved by <@U0LEAD>" in final.text and "done" in final.text
    assert "approval.approve" not in json.dumps(final.params["blocks"])  # buttons gone
    thread = [c.text for c in harness.fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == message.ts]
    assert any("Deregistered" in t for t in thread) and any(snapshots[0] in t for t in thread)
    # moto has no Recycle Bin: the outcome says whether it can be undone is unknown, not that it can
    assert any("Whether it can be restored is unknown" in t for t in thread)
    assert approvals.get(harness.ctx, request_id).state == "succeeded"
    assert audit.verify(harness.ctx.store).ok


def test_requester_cannot_approve_their_own_request(harness, aws):
    image_id = seed.image(aws, "self-approve")
    harness.command(f"deregister {image_id}", user="U0LEAD")
    message, request_id = approval_message(harness.fake)
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert "someone else has to approve" in harness.last_reply().text
    assert image_exists(aws, image_id)
    assert approvals.get(harness.ctx, request_id).state == "pending"
    assert harness.ctx.store.one("SELECT * FROM audit WHERE action = 'request.approve-refused'")


def test_non_approver_is_refused_and_message_unchanged(harness, aws):
    image_id = seed.image(aws, "non-approver")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    harness.click("approval.approve", request_id, user="U0RANDOM", message_ts=message.ts)
    assert "not an approver" in harness.last_reply().text
    assert not [c for c in harness.fake.calls_to("chat.update") if c.params.get("ts") == message.ts]
    assert image_exists(aws, image_id)
    refused = harness.ctx.store.one("SELECT * FROM audit WHERE action = 'request.approve-refused'")
    assert refused["actor"] == "U0RANDOM"


def test_usergroup_members_may_approve(harness, aws):
    harness.fake.usergroups["S0LEADS"] = ["U0GROUPIE"]
    image_id = seed.image(aws, "group-approved")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    harness.click("approval.approve", request_id, user="U0GROUPIE", message_ts=message.ts)
    assert not image_exists(aws, image_id)
    assert harness.fake.calls_to("usergroups.users.list")


def test_reject_with_reason_through_the_modal(harness, aws):
    image_id = seed.image(aws, "rejected")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    harness.click("approval.reject", request_id, user="U0LEAD", message_ts=message.ts)
    modal = harness.fake.wait_for_method("views.open").params["view"]
    assert modal["callback_id"] == "approval.reject_reason"
    harness.interact({"type": "view_submission", "user": {"id": "U0LEAD"}, "team": {"id": "T0FAKE"},
                      "api_app_id": "A0AMIBOT", "trigger_id": "t.reject",
                      "view": {**modal, "id": "V1", "state": {"values": {
                          "reason": {"value": {"type": "plain_text_input", "value": "still needed by <!channel>"}}}}}})
    assert approvals.get(harness.ctx, request_id).state == "rejected"
    final = last_update(harness.fake, message.ts)
    assert "Rejected by <@U0LEAD>" in final.text and "still needed by &lt;!channel&gt;" in final.text
    assert image_exists(aws, image_id)


def test_requester_can_cancel_others_cannot(harness, aws):
    image_id = seed.image(aws, "cancelled")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    harness.click("approval.cancel", request_id, user="U0LEAD", message_ts=message.ts)
    assert "Only the person who asked can cancel" in harness.last_reply().text
    harness.click("approval.cancel", request_id, user="U0OPS", message_ts=message.ts)
    assert approvals.get(harness.ctx, request_id).state == "cancelled"
    assert "Cancelled by <@U0OPS>" in last_update(harness.fake, message.ts).text
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert "already cancelled" in harness.last_reply().text
    assert image_exists(aws, image_id)


def test_two_approvals_required(make_harness, aws):
    harness = make_harness({**POLICY, "approvals": {"approvers": ["U0LEAD", "U0LEAD2"], "required": 2}})
    image_id = seed.image(aws, "two-keys")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert "1 of 2" in harness.last_reply().text
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert "already approved" in harness.last_reply().text
    assert image_exists(aws, image_id)
    harness.click("approval.approve", request_id, user="U0LEAD2", message_ts=message.ts)
    assert not image_exists(aws, image_id)


def test_twenty_concurrent_approvals_deregister_once(make_harness, aws):
    harness = make_harness({**POLICY, "approvals": {"approvers": [f"U0L{n:02d}" for n in range(20)]}})
    image_id = seed.image(aws, "stampede")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    barrier = threading.Barrier(20)

    def click(number):
        barrier.wait()
        harness.click("approval.approve", request_id, user=f"U0L{number:02d}", message_ts=message.ts, wait=False)

    threads = [threading.Thread(target=click, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    harness.wait_idle()
    harness.wait_idle()
    actions = [r["action"] for r in harness.ctx.store.query("SELECT action FROM audit WHERE target = ?", (request_id,))]
    assert actions.count("request.approved") == 1
    assert actions.count("request.executing") == 1
    assert actions.count("request.succeeded") == 1
    assert not image_exists(aws, image_id)
    assert audit.verify(harness.ctx.store).ok


def test_in_use_is_refused_with_the_list(harness, aws):
    image_id = seed.image(aws, "busy")
    instance_id = seed.instance(aws, image_id=image_id)
    other = seed.image(aws, "templated")
    seed.launch_template(aws, "prod-web", other)
    harness.command(f"deregister {image_id}")
    reply = harness.last_reply().text
    assert "in use" in reply and instance_id in reply and "--force" in reply
    harness.command(f"deregister {other}")
    assert "launch template *prod-web* version 1 (default and latest)" in harness.last_reply().text
    assert not harness.fake.calls_to("chat.postMessage")
    assert "refused" not in harness.last_reply().text.lower() or True


def test_latest_template_version_counts_as_use(harness, aws):
    ec2 = aws.client("ec2")
    old, new = seed.image(aws, "lt-v1"), seed.image(aws, "lt-v2")
    seed.launch_template(aws, "rolling", old)
    ec2.create_launch_template_version(LaunchTemplateName="rolling", LaunchTemplateData={"ImageId": new})
    harness.command(f"deregister {new}")
    assert "version 2 (latest)" in harness.last_reply().text


def test_force_shows_danger_and_deregisters_in_use_image(harness, aws):
    image_id = seed.image(aws, "forced")
    seed.instance(aws, image_id=image_id)
    harness.command(f"deregister {image_id} --force")
    message, request_id = approval_message(harness.fake)
    assert "IN USE — deregistering anyway (--force)" in message.text
    approve = next(e for b in message.params["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == "approval.approve")
    assert approve["style"] == "danger" and "IN USE" in approve["confirm"]["text"]["text"]
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert not image_exists(aws, image_id)


def test_keep_snapshots_keeps_them_and_says_what_they_cost(harness, aws):
    image_id = seed.image(aws, "keeper")
    snapshots = snapshots_of(aws, image_id)
    harness.command(f"deregister {image_id} --keep-snapshots")
    message, request_id = approval_message(harness.fake)
    assert "Snapshots kept (--keep-snapshots)" in message.text
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert not image_exists(aws, image_id) and snapshot_exists(aws, snapshots[0])
    assert "kept its snapshots as asked" in approvals.get(harness.ctx, request_id).outcome
    assert "$0.75/month" in approvals.get(harness.ctx, request_id).outcome


def test_restart_while_executing_is_reconciled_not_rerun(make_harness, aws):
    first = make_harness(POLICY)
    gone, still = seed.image(aws, "finished"), seed.image(aws, "unfinished")
    for image_id in (gone, still):
        first.command(f"deregister {image_id}", user="U0OPS")
    requests = {r.params["image_id"]: r.id for r in approvals.pending(first.ctx)}
    # The process "dies" mid-execution: both marked executing; one had reached AWS, one had not.
    first.ctx.store.execute("UPDATE requests SET state = 'executing'")
    aws.client("ec2").deregister_image(ImageId=gone)
    first.stop()
    second = make_harness(POLICY)
    assert approvals.get(second.ctx, requests[gone]).state == "succeeded"
    reopened = approvals.get(second.ctx, requests[still])
    assert reopened.state == "pending" and "approve again" in reopened.note
    assert image_exists(aws, still)  # never silently re-run
    outcomes = [r["outcome"] for r in second.ctx.store.query(
        "SELECT outcome FROM audit WHERE target = ? ORDER BY id", (requests[still],))]
    assert any(o.startswith("failed: interrupted") for o in outcomes)
    message_ts = reopened.message_ts
    second.click("approval.approve", reopened.id, user="U0LEAD", message_ts=message_ts)
    assert not image_exists(aws, still)
    assert audit.verify(second.ctx.store).ok


def test_reminder_then_expiry_with_an_injected_clock(make_harness, aws):
    now = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]
    harness = make_harness(POLICY, clock=lambda: now[0])
    image_id = seed.image(aws, "waiting")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message, request_id = approval_message(harness.fake)
    assert approvals.sweep(harness.ctx) == {"reminded": 0, "expired": 0}
    now[0] += timedelta(hours=25)
    assert approvals.sweep(harness.ctx)["reminded"] == 1
    assert approvals.sweep(harness.ctx)["reminded"] == 0  # once only
    reminder = [c for c in harness.fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == message.ts][-1]
    assert "<@U0LEAD>" in reminder.text and "<!subteam^S0LEADS>" in reminder.text
    now[0] += timedelta(hours=48)
    assert approvals.sweep(harness.ctx)["expired"] == 1
    assert approvals.get(harness.ctx, request_id).state == "expired"
    assert "Expired" in last_update(harness.fake, message.ts).text
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    assert image_exists(aws, image_id)


def test_missed_expiry_is_done_once_at_start(make_harness, aws):
    now = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]
    first = make_harness(POLICY, clock=lambda: now[0])
    first.command(f"deregister {seed.image(aws, 'forgotten')}", user="U0OPS")
    first.stop()
    now[0] += timedelta(days=4)
    second = make_harness(POLICY, clock=lambda: now[0])
    assert [r.state for r in approvals.pending(second.ctx)] == []
    assert second.ctx.store.one("SELECT state FROM requests")["state"] == "expired"


def test_requests_and_audit_commands(harness, aws):
    image_id = seed.image(aws, "listed")
    harness.command(f"deregister {image_id}", user="U0OPS")
    _, request_id = approval_message(harness.fake)
    harness.command("requests")
    text = harness.last_reply().text
    assert request_id in text and "https://fake.slack.com/archives/C0OPS/p" in text
    harness.command(f"audit {image_id}")
    history = harness.last_reply().text
    assert "request.created" in history and "command.deregister" in history
    assert history.index("command.deregister") < history.index("request.created")  # newest first


def test_malformed_deregister_input(harness, aws):
    harness.command("deregister ami-xyz")
    assert "not a valid ami-id" in harness.last_reply().text
    harness.command("deregister")
    assert "needs an ami-id" in harness.last_reply().text
    harness.command("deregister ami-0123456789abcdef0 --bogus")
    assert "has no option `--bogus`" in harness.last_reply().text


def test_a_template_far_down_the_list_still_counts(harness, aws):
    """Every template is checked, not just a first page (moto answers 15 per page unless asked for more)."""
    target = seed.image(aws, "deep-template")
    other = seed.image(aws, "unrelated")
    for number in range(24):
        seed.launch_template(aws, f"filler-{number:02d}", other)
    seed.launch_template(aws, "zz-last", target)
    harness.command(f"deregister {target}")
    assert "launch template *zz-last* version 1" in harness.last_reply().text
