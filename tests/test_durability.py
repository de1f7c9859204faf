"""Nothing Slack asked for is lost across a restart: queued jobs run, interrupted ones are handled."""

from __future__ import annotations

import json

from tests.support import seed


def leave_job(harness, state, text, key):
    """What a process that died would leave behind: a command job, still queued or caught running."""
    harness.ctx.store.execute(
        "INSERT INTO jobs (kind, payload, state, created_at, updated_at) VALUES ('command', ?, ?, 'x', 'x')",
        (json.dumps({"text": text, "user_id": "U0OPS", "channel_id": "C0OPS",
                     "response_url": harness.fake.response_url(key)}), state))


def test_queued_command_runs_after_restart(make_harness, aws):
    seed.image(aws, "survivor")
    first = make_harness()
    first.stop()
    # A command acked and recorded, but the process died before a worker picked it up.
    leave_job(first, "queued", "list", "lost")
    second = make_harness()
    second.wait_idle()
    assert "survivor" in second.last_reply().text
    assert second.ctx.store.one("SELECT state FROM jobs")["state"] == "done"


def test_interrupted_read_only_command_runs_again(make_harness, aws):
    first = make_harness()
    first.stop()
    leave_job(first, "running", "list", "again")
    second = make_harness()
    second.wait_idle()
    assert "AMIs" in second.last_reply().text or "No AMIs" in second.last_reply().text


def test_interrupted_changing_command_is_reported_not_repeated(make_harness, aws):
    image_id = seed.image(aws, "half-done")
    first = make_harness()
    first.stop()
    leave_job(first, "running", f"deregister {image_id}", "half")
    second = make_harness()
    second.wait_idle()
    assert "restarted while running `/ami deregister" in second.last_reply().text
    assert not second.fake.calls_to("chat.postMessage")  # no approval request silently re-created
    assert second.ctx.store.one("SELECT outcome FROM audit WHERE action = 'command.interrupted'")


def test_prune_forgets_old_keys_and_finished_jobs_only(make_harness, aws):
    from datetime import UTC, datetime, timedelta

    from bot.wiring import prune

    harness = make_harness()
    store = harness.ctx.store
    old, fresh = "2026-01-01T00:00:00.000000Z", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.execute("INSERT INTO slack_requests (key, received_at) VALUES ('event:old', ?), ('event:new', ?)",
                  (old, fresh))
    for state, stamp in (("done", old), ("failed", old), ("interrupted", old), ("queued", old), ("done", fresh)):
        store.execute("INSERT INTO jobs (kind, payload, state, created_at, updated_at) VALUES ('x', '{}', ?, ?, ?)",
                      (state, stamp, stamp))
    assert prune(store, datetime.now(UTC) + timedelta(minutes=1)) == {"slack_requests": 1, "jobs": 2}
    assert [r["key"] for r in store.query("SELECT key FROM slack_requests")] == ["event:new"]
    assert sorted(r["state"] for r in store.query("SELECT state FROM jobs")) == ["done", "interrupted", "queued"]
