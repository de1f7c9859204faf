"""Nothing Slack asked for is lost across a restart: queued jobs run, interrupted ones are handled."""

from __future__ import annotations

import json

from tests import seed


def test_queued_command_runs_after_restart(make_harness, aws):
    seed.image(aws, "survivor")
    first = make_harness()
    first.stop()
    # A command acked and recorded, but the process died before a worker picked it up.
    first.ctx.store.execute(
        "INSERT INTO jobs (kind, payload, state, created_at, updated_at) VALUES ('command', ?, 'queued', 'x', 'x')",
        (json.dumps({"text": "list", "user_id": "U0OPS", "channel_id": "C0OPS",
                     "response_url": first.fake.response_url("lost")}),))
    second = make_harness()
    second.wait_idle()
    assert "survivor" in second.last_reply().text
    assert second.ctx.store.one("SELECT state FROM jobs")["state"] == "done"


def test_interrupted_read_only_command_runs_again(make_harness, aws):
    first = make_harness()
    first.stop()
    first.ctx.store.execute(
        "INSERT INTO jobs (kind, payload, state, created_at, updated_at) VALUES ('command', ?, 'running', 'x', 'x')",
        (json.dumps({"text": "list", "user_id": "U0OPS", "channel_id": "C0OPS",
                     "response_url": first.fake.response_url("again")}),))
    second = make_harness()
    second.wait_idle()
    assert "AMIs" in second.last_reply().text or "No AMIs" in second.last_reply().text


def test_interrupted_changing_command_is_reported_not_repeated(make_harness, aws):
    image_id = seed.image(aws, "half-done")
    first = make_harness()
    first.stop()
    first.ctx.store.execute(
        "INSERT INTO jobs (kind, payload, state, created_at, updated_at) VALUES ('command', ?, 'running', 'x', 'x')",
        (json.dumps({"text": f"deregister {image_id}", "user_id": "U0OPS", "channel_id": "C0OPS",
                     "response_url": first.fake.response_url("half")}),))
    second = make_harness()
    second.wait_idle()
    assert "restarted while running `/ami deregister" in second.last_reply().text
    assert not second.fake.calls_to("chat.postMessage")  # no approval request silently re-created
    assert second.ctx.store.one("SELECT outcome FROM audit WHERE action = 'command.interrupted'")
