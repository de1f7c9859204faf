"""The daily digest never loses a day: a run that fails after its claim is retried the same day with backoff,
carries on across a restart, posts once, and shows its state in /healthz; a region that fails for any reason
is a warning line, never "all clean". The clock is injected: nothing sleeps."""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from bot.services import digest
from tests.support.digest import daily_policy, digest_posts, registered

NINE = datetime(2026, 5, 4, 9, 0, 1, tzinfo=UTC)


def health(running) -> dict:
    with urllib.request.urlopen(running.url + "/healthz", timeout=5) as response:
        return json.loads(response.read())


def failing(aws_layer, monkeypatch, times: int, error: Exception):
    """Make the first `times` region scans of this Aws raise `error` (a failing endpoint, not an AwsError)."""
    real = aws_layer.each_target
    left = [times]

    def each_target(function, targets=None, on_result=None):
        if left[0] > 0:
            left[0] -= 1
            raise error
        return real(function, targets, on_result)

    monkeypatch.setattr(aws_layer, "each_target", each_target)
    return left


@pytest.fixture
def early(make_harness, aws):
    """An app started at 08:00 (before the 09:00 run: no catch-up), its clock in a list to move it."""
    registered(aws, "retry-v1", 300, now=NINE)
    now = [NINE - timedelta(hours=1)]
    running = make_harness(daily_policy("09:00", "UTC"), clock=lambda: now[0])
    running.wait_idle()
    return running, now


def test_a_digest_that_raises_after_its_claim_is_retried_across_a_restart_and_posts_once(
        early, make_harness, monkeypatch, caplog):
    running, now = early
    failing(running.ctx.aws, monkeypatch, 1, RuntimeError("endpoint exploded"))
    now[0] = NINE
    with caplog.at_level(logging.ERROR, logger="bot.services.digest"):
        outcome = digest.run_daily(running.ctx)
    assert outcome.startswith("failed (attempt 1 of 4): RuntimeError: endpoint exploded; retrying at 09:01")
    assert any("attempt 1 of 4" in record.getMessage() and "endpoint exploded" in record.getMessage()
               for record in caplog.records)
    assert digest_posts(running, "C0DIGEST") == []
    assert health(running)["digest"] == {
        "date": "2026-05-04", "channel": "C0DIGEST", "state": "retry", "attempts": 1,
        "error": "RuntimeError: endpoint exploded", "next_attempt_at": "2026-05-04T09:01:01.000000Z"}
    # not yet due: neither the schedule firing again nor the retry check does anything
    now[0] = NINE + timedelta(seconds=30)
    assert digest.run_daily(running.ctx) == "already posted"
    assert digest.retry_due(running.ctx) is None
    # the process stops; the next one starts after the retry was due and carries on from the claim row
    running.stop()
    now[0] = NINE + timedelta(minutes=2)
    second = make_harness(daily_policy("09:00", "UTC"), clock=lambda: now[0])
    second.wait_idle()
    [post] = digest_posts(second, "C0DIGEST")
    assert "AMI digest for 2026-05-04" in post.text and "1 stale image" in post.text
    assert health(second)["digest"] == {"date": "2026-05-04", "channel": "C0DIGEST", "state": "posted",
                                        "attempts": 2}
    assert digest.retry_due(second.ctx) is None and digest.run_daily(second.ctx) == "already posted"
    assert len(digest_posts(second, "C0DIGEST")) == 1
    outcomes = [row["outcome"] for row in second.ctx.store.query(
        "SELECT outcome FROM audit WHERE action = 'digest.daily' ORDER BY id")]
    assert outcomes[0].startswith("failed (attempt 1 of 4)") and outcomes[1].startswith("posted: 1 stale")


def test_the_backoff_is_bounded_and_the_last_failure_is_said_in_the_channel(early, monkeypatch):
    running, now = early
    failing(running.ctx.aws, monkeypatch, 10, RuntimeError("still broken"))
    now[0] = NINE
    digest.run_daily(running.ctx)
    due_times = []
    for _ in range(3):
        row = running.ctx.store.one("SELECT next_attempt_at FROM digest_runs")
        due_times.append(row["next_attempt_at"])
        now[0] = datetime.fromisoformat(row["next_attempt_at"].replace("Z", "+00:00"))
        assert digest.retry_due(running.ctx) is not None
    assert due_times == ["2026-05-04T09:01:01.000000Z", "2026-05-04T09:06:01.000000Z", "2026-05-04T09:21:01.000000Z"]
    row = running.ctx.store.one("SELECT state, attempts, error FROM digest_runs")
    assert row == {"state": "failed", "attempts": 4, "error": "RuntimeError: still broken"}
    [notice] = [c for c in running.fake.calls_to("chat.postMessage") if c.params.get("channel") == "C0DIGEST"]
    assert "could not be made" in notice.text and "still broken" in notice.text
    now[0] += timedelta(hours=1)
    assert digest.retry_due(running.ctx) is None  # out of attempts: nothing more today
    assert health(running)["digest"]["state"] == "failed"


def test_a_run_that_died_with_its_process_is_retried(early):
    running, now = early
    now[0] = NINE
    assert digest.claim(running.ctx.store, "2026-05-04", "C0DIGEST", now[0])  # claimed, then the process died
    now[0] = NINE + timedelta(minutes=10)
    assert digest.retry_due(running.ctx) is None  # it may still be running
    now[0] = NINE + digest.CRASHED_AFTER + timedelta(seconds=1)
    assert digest.retry_due(running.ctx).startswith("posted: 1 stale")
    assert len(digest_posts(running, "C0DIGEST")) == 1


def test_a_region_failing_for_any_reason_is_a_warning_line_not_all_clean(harness, aws, monkeypatch):
    registered(aws, "fresh-v1", 5)
    real = digest.scan_region

    def scan_region(aws_layer, region, *args, **kwargs):
        if region == "eu-west-1":
            raise KeyError("Reservations")  # not an AwsError: a parser surprise
        return real(aws_layer, region, *args, **kwargs)

    monkeypatch.setattr(digest, "scan_region", scan_region)
    harness.command("digest", channel="C0OPS")
    [post] = digest_posts(harness)
    assert "*eu-west-1*: not checked — could not be checked (KeyError" in post.text
    # "all clean" only for the region that was checked, never for the account
    assert "no stale images and no orphaned snapshots in us-east-1 (1 image checked)" in post.text
    assert "eu-west-1 (" not in post.text
