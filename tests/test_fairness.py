"""Nobody waits behind slow AWS (issue 14 §4), functionally: AWS calls are made to hang on an Event the test
releases, then we check who is answered anyway, in what order AWS work starts, and what a late job says.

The boundary: botocore's `before-call` event on the very clients amibot uses (ctx.aws caches one per service
and region), so every EC2 API call blocks before it reaches moto, exactly like a hung endpoint.
"""

from __future__ import annotations

import threading
import time

import pytest

from bot.render.approvals import APPROVE
from bot.render.digest import DEREGISTER
from tests.support.harness import REGIONS

HANG_LIMIT = 20  # seconds a stuck call waits at most, so a broken test fails instead of hanging


class StuckAws:
    """Every EC2 call waits until release(); counts the calls that are waiting."""

    def __init__(self):
        self.released = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def attach(self, harness) -> None:
        for region in REGIONS:
            harness.ctx.aws.home.ec2(region).meta.events.register("before-call", self._hang)

    def _hang(self, **_):
        with self._lock:
            self.waiting += 1
        self.released.wait(HANG_LIMIT)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def stuck(make_harness):
    """Set up after make_harness, so it is torn down (released) before the harnesses stop."""
    aws = StuckAws()
    yield aws
    aws.release()


def started(make_harness, stuck, **jobs) -> object:
    policy = {"aws": {"regions": REGIONS}, "access": {"operators": ["U0OPS", "U0A", "U0B"]},
              "approvals": {"approvers": ["U0LEAD"]}, "jobs": jobs}
    harness = make_harness(policy_data=policy)
    stuck.attach(harness)
    return harness


def send(harness, text: str, user: str, key: str):
    harness.command(text, user=user, wait=False, response_url=harness.fake.response_url(key))


def click(harness, action_id: str, value: str, user: str, key: str):
    payload = harness.local.sim.block_actions_payload({"action_id": action_id, "value": value}, user, "C0OPS")
    payload["response_url"] = harness.fake.response_url(key)
    harness.interact(payload, wait=False)


def answers(harness, key: str) -> list:
    return [call for call in harness.fake.calls_to("response_url") if call.params.get("_key") == key]


def answer(harness, key: str, timeout: float = 10.0):
    return harness.fake.wait_for(lambda call: call.method == "response_url" and call.params.get("_key") == key,
                                 timeout=timeout)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def job_states(harness, user: str) -> list[str]:
    return [row["state"] for row in harness.ctx.store.query(
        "SELECT state FROM jobs WHERE kind = 'command' AND json_extract(payload, '$.user_id') = ? ORDER BY id",
        (user,))]


def test_work_that_needs_no_aws_is_answered_while_every_aws_worker_is_stuck(make_harness, stuck):
    harness = started(make_harness, stuck, workers=4, per_user=2)
    for number in range(6):  # more AWS work than workers, from three users: every AWS worker is stuck
        send(harness, "list", ["U0OPS", "U0A", "U0B"][number % 3], f"list-{number}")
    wait_until(lambda: stuck.waiting >= 4)

    send(harness, "list --bogus", "U0A", "usage")
    send(harness, "frobnicate", "U0A", "unknown")
    send(harness, "requests", "U0B", "requests")
    send(harness, "audit", "U0B", "audit")
    send(harness, "deregister ami-0123456789abcdef0", "U0NOBODY", "refused-command")  # not an operator
    click(harness, DEREGISTER, "us-east-1:ami-0123456789abcdef0", "U0NOBODY", "refused-digest-click")
    click(harness, APPROVE, "req-doesnotexist", "U0LEAD", "approval-click")

    assert "has no option `--bogus`" in answer(harness, "usage").text
    assert "Unknown subcommand `frobnicate`" in answer(harness, "unknown").text
    assert "request" in answer(harness, "requests").text.lower()
    assert answer(harness, "audit").text
    assert "Only amibot operators may run `/ami deregister`" in answer(harness, "refused-command").text
    assert "Only amibot operators may run" in answer(harness, "refused-digest-click").text
    assert "req-doesnotexist" in answer(harness, "approval-click").text
    # …all while the AWS work is still stuck, unanswered
    assert not stuck.released.is_set()
    assert not any(answers(harness, f"list-{number}") for number in range(6))
    refused = harness.ctx.store.one("SELECT outcome FROM audit WHERE action = 'command.deregister'")
    assert refused["outcome"].startswith("refused:")

    stuck.release()
    harness.wait_idle()
    assert all(len(answers(harness, f"list-{number}")) == 1 for number in range(6))


def test_one_users_burst_does_not_hold_back_another_users_command(make_harness, stuck):
    harness = started(make_harness, stuck, workers=4, per_user=2)
    for number in range(10):
        send(harness, "list", "U0A", f"a-{number}")
    wait_until(lambda: job_states(harness, "U0A").count("running") == 2)
    send(harness, "list", "U0B", "b")

    # B's command starts while A's burst is still queued: A may hold only 2 of the 4 workers.
    wait_until(lambda: job_states(harness, "U0B") == ["running"])
    states = job_states(harness, "U0A")
    assert states.count("running") == 2 and states.count("queued") == 8

    stuck.release()
    harness.wait_idle()
    order = [call.params.get("_key") for call in harness.fake.calls_to("response_url")]
    assert sorted(order) == sorted([f"a-{number}" for number in range(10)] + ["b"])
    assert order.index("b") < order.index("a-9")  # B was not served after the whole burst


def test_a_job_past_its_deadline_tells_the_user_once_and_still_answers(make_harness, stuck):
    harness = started(make_harness, stuck, deadline_seconds=1)
    send(harness, "list", "U0OPS", "slow")

    late = answer(harness, "slow", timeout=5)
    assert "`/ami list` is taking longer than 1 second; AWS is slow" in late.text
    time.sleep(1.5)  # well past the deadline again: still told only once
    assert len(answers(harness, "slow")) == 1

    stuck.release()
    harness.wait_idle()
    told, result = answers(harness, "slow")
    assert told is late and "AMIs" in result.text  # the answer is delivered when AWS gets back
    assert harness.ctx.store.one("SELECT state FROM jobs WHERE kind = 'command'")["state"] == "done"
