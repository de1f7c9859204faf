"""The outbox: every message the approval engine owes Slack is delivered — after a crash, after a failure —
and a request message is posted once (its ts, stored, turns any retry into an update)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bot.services import approvals
from tests import seed

POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]}}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def policy_data():
    return POLICY


def approval_posts(fake, delivered_only=True):
    """chat.postMessage calls that carried an approval message (delivered: Slack answered ok)."""
    found = []
    for call in fake.calls_to("chat.postMessage"):
        if delivered_only and call.response is None:
            continue
        if any(element.get("action_id") == "approval.approve" for block in call.params.get("blocks", [])
               if block.get("type") == "actions" for element in block["elements"]):
            found.append(call)
    return found


def outbox_rows(harness):
    return harness.ctx.store.query("SELECT * FROM outbox ORDER BY id")


def test_a_request_whose_message_was_never_posted_is_posted_once_at_restart(make_harness, aws):
    first = make_harness(POLICY)
    image_id = seed.image(aws, "never-posted")
    # The process "dies" right after committing the request: nothing gets to Slack.
    outbox = first.ctx.extras["outbox"]
    outbox.stop()
    first.ctx.extras["outbox.kick"] = lambda: 0
    first.command(f"deregister {image_id}", user="U0OPS", wait=False)
    assert first.ctx.extras["listeners"].wait_idle(30) and first.ctx.jobs.wait_idle(30)
    [request] = approvals.pending(first.ctx)
    assert request.message_ts is None and not approval_posts(first.fake)
    assert [json.loads(row["intent"])["kind"] for row in outbox_rows(first)] == ["request_message"]
    first.stop()

    second = make_harness(POLICY)
    second.wait_idle()
    [posted] = approval_posts(second.fake)
    assert request.id in posted.text and posted.params["channel"] == "C0OPS"
    assert approvals.get(second.ctx, request.id).message_ts == posted.ts
    second.stop()
    third = make_harness(POLICY)  # and never again
    third.wait_idle()
    assert len(approval_posts(third.fake)) == 1


def test_a_crash_after_slack_answered_a_post_updates_instead_of_posting_again(make_harness, aws):
    first = make_harness(POLICY)
    first.command(f"deregister {seed.image(aws, 'posted-once')}", user="U0OPS")
    [request] = approvals.pending(first.ctx)
    assert request.message_ts
    # As if killed after Slack answered and the ts was stored, before the row was marked delivered.
    first.ctx.store.execute("UPDATE outbox SET state = 'sending', ts = NULL")
    first.stop()
    updates_before = len(first.fake.calls_to("chat.update"))
    second = make_harness(POLICY)
    second.wait_idle()
    assert len(approval_posts(second.fake)) == 1
    updates = [c for c in second.fake.calls_to("chat.update")[updates_before:] if c.params["ts"] == request.message_ts]
    assert updates and request.id in updates[-1].text
    assert {row["state"] for row in outbox_rows(second)} == {"delivered"}


def test_a_failing_post_is_retried_and_delivered_once(harness, aws):
    harness.ctx.extras["outbox"].backoff = 0.2
    harness.fake.fail_next["chat.postMessage"] = {"ok": False, "error": "internal_error"}
    harness.command(f"deregister {seed.image(aws, 'flaky-slack')}", user="U0OPS")
    [failed] = [c for c in harness.fake.calls_to("chat.postMessage") if c.response is None]
    [delivered] = approval_posts(harness.fake)
    assert "Deregister" in failed.text and delivered.ts
    [request] = approvals.pending(harness.ctx)
    assert request.message_ts == delivered.ts
    [row] = outbox_rows(harness)
    assert row["state"] == "delivered" and row["attempts"] == 2 and row["ts"] == delivered.ts
    # The rest of the request's life still reaches Slack, in order: approve → thread posts and updates.
    harness.click("approval.approve", request.id, user="U0LEAD", message_ts=delivered.ts)
    thread = [c.text for c in harness.fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == delivered.ts]
    assert thread[0].startswith(":gear: Executing") and "Succeeded" in thread[-1]
    assert {row["state"] for row in outbox_rows(harness)} == {"delivered"}


def test_a_channel_the_bot_cannot_post_in_sends_the_request_to_the_requester(harness, aws):
    harness.fake.fail_next["chat.postMessage"] = {"ok": False, "error": "not_in_channel"}
    harness.command(f"deregister {seed.image(aws, 'no-channel')}", user="U0OPS")
    [posted] = approval_posts(harness.fake)
    assert posted.params["channel"] == "U0OPS"  # the requester sees it, rather than nobody
    [request] = approvals.pending(harness.ctx)
    assert request.message_ts == posted.ts
    assert harness.ctx.store.one("SELECT * FROM audit WHERE action = 'request.message-redirected'")


def test_the_engine_never_imports_render():
    tree = ast.parse((ROOT / "bot" / "services" / "approvals.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names]
    assert not [name for name in imported if name.startswith("bot.render") or name == "bot.slack.outbox"]


def test_old_delivered_messages_and_finished_steps_are_pruned(harness, aws):
    from datetime import timedelta

    from bot.durable.steps import DONE, PLANNED, Step, Steps
    from bot.slack import outbox

    harness.command(f"deregister {seed.image(aws, 'pruned')}", user="U0OPS")
    Steps(harness.ctx.store, "request:old").plan([Step("deregister_image", "ami-1", state=DONE)])
    Steps(harness.ctx.store, "request:open").plan([Step("deregister_image", "ami-2", state=PLANNED)])
    harness.ctx.store.execute("UPDATE steps SET updated_at = '2020-01-01T00:00:00Z'")
    assert outbox.prune(harness.ctx) == {"outbox": 0, "steps": 1}  # the open plan stays, however old
    later = harness.ctx.clock() + timedelta(days=8)
    harness.ctx.clock = lambda: later
    assert outbox.prune(harness.ctx)["outbox"] == 1
    assert [row["owner"] for row in harness.ctx.store.query("SELECT owner FROM steps")] == ["request:open"]
