"""The App Home tab as a dashboard, through the real app over HTTP: what an approver and a requester see, the
fleet read in the background (never before the tab opens), the digest's trend, and decisions taken on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.services.dashboard import record_digest
from tests.support import seed
from tests.support.home import open_home, view_text
from tests.support.waiting import until

POLICY = {"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS"]},
          "approvals": {"approvers": ["U0LEAD"]}}


@pytest.fixture
def policy_data():
    return POLICY


def buttons(call) -> list[tuple[str, str]]:
    return [(element["action_id"], element.get("value", "")) for block in call.params["view"]["blocks"]
            if block["type"] == "actions" for element in block["elements"]]


def deregistration_request(harness, aws, name="old-web"):
    image_id = seed.image(aws, name)
    harness.command(f"deregister {image_id}", user="U0OPS")
    return harness.ctx.store.one("SELECT id FROM requests ORDER BY created_at DESC")["id"]


def test_an_approver_sees_what_waits_for_them_with_its_buttons(harness, aws):
    request_id = deregistration_request(harness, aws)
    published = open_home(harness, "U0LEAD")
    first = published[0]
    assert first.params["view"]["type"] == "home" and len(first.params["view"]["blocks"]) <= 100
    text = view_text(first)
    assert "Waiting for you (1)" in text and request_id in text and "Deregister old-web" in text
    assert ("approval.approve", request_id) in buttons(first) and ("approval.reject", request_id) in buttons(first)


def test_a_requester_sees_their_requests_and_no_buttons_to_approve_them(harness, aws):
    request_id = deregistration_request(harness, aws)
    first = open_home(harness, "U0OPS")[0]
    text = view_text(first)
    assert "Waiting for you (0)" in text and "Nothing waits for your approval." in text
    assert f"`{request_id}`" in text and "— *pending*" in text
    assert ("approval.approve", request_id) not in buttons(first)


def test_the_tab_opens_before_aws_is_read_then_refreshes_with_the_fleet(harness, aws):
    source = seed.instance(aws)
    old = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"}, from_instance=source,
                     created=datetime.now(UTC) - timedelta(days=40))
    new = seed.image(aws, "web-2", tags={"Family": "web", "Version": "2"}, from_instance=source,
                     created=datetime.now(UTC) - timedelta(days=3))
    harness.command(f"promote {new}", user="U0OPS")
    for image_id in (new, new, old):
        seed.instance(aws, image_id=image_id)
    published = open_home(harness, "U0LEAD")
    assert len(published) == 2  # at once from SQLite, then again once the background job read AWS
    assert "Reading the fleet from AWS" in view_text(published[0])
    fresh = view_text(published[1])
    assert "*web* (us-east-1): current *web-2* · 3 days old · 2 of 3 instances on current, :warning: 1 on older" \
        in fresh
    assert "vulnerabilities unknown" in fresh  # moto has no Inspector: unknown, never "no critical findings"

    again = open_home(harness, "U0LEAD")
    assert len(again) == 1 and "current *web-2*" in view_text(again[0])  # from the cache: no second AWS read
    refreshes = harness.ctx.store.query("SELECT id FROM jobs WHERE kind = 'home.refresh'")
    assert len(refreshes) == 1


def test_the_digest_trend_and_what_it_would_retire(harness, aws):
    today = datetime.now(UTC).date()
    for days_ago in range(29, 0, -1):
        record_digest(harness.ctx.store, (today - timedelta(days=days_ago)).isoformat(), stale_images=30 - days_ago,
                      orphaned_snapshots=days_ago % 4, monthly_waste=10.0 + days_ago, drifted_instances=None)
    seed.image(aws, "ancient", created=datetime.now(UTC) - timedelta(days=400))
    harness.command("digest", user="U0OPS")  # today's real digest adds the 30th day
    text = view_text(open_home(harness, "U0OPS")[0])
    assert "What the digest would retire" in text
    assert "/archives/C0OPS/p" in text and f"|the {today.isoformat()} digest>" in text  # a link to the message
    assert "Last 30 digest(s)" in text
    stale_line = next(line for line in text.splitlines() if "stale images:" in line)
    assert stale_line.startswith("`▁") and "█" in stale_line  # rising from 1 to 29, then today's


def test_approving_on_the_home_tab_decides_and_republishes_saying_so(harness, aws):
    request_id = deregistration_request(harness, aws)
    home = open_home(harness, "U0LEAD")[-1].params["view"]
    payload = harness.local.sim.block_actions_payload({"action_id": "approval.approve", "value": request_id},
                                                      "U0LEAD", None, view={**home, "id": "V0HOME"})
    harness.interact(payload)
    state = harness.ctx.store.one("SELECT state FROM requests WHERE id = ?", (request_id,))["state"]
    assert state in ("approved", "executing", "succeeded")
    latest = [c for c in harness.fake.calls_to("views.publish") if c.params["user_id"] == "U0LEAD"][-1]
    assert f"Approved {request_id}" in view_text(latest) and "Waiting for you (0)" in view_text(latest)


def test_many_waiting_requests_stay_within_a_hundred_blocks(harness, aws):
    for number in range(30):
        deregistration_request(harness, aws, name=f"old-{number}")
    first = open_home(harness, "U0LEAD")[0]
    assert len(first.params["view"]["blocks"]) <= 100
    assert "…and 22 more: `/ami requests`." in view_text(first)



def test_a_rollout_in_progress_shows_its_percentage_weighted_by_instances_and_goes_once_it_finished(
        make_harness, aws, monkeypatch):
    """Two groups on web-1.4.0, of 2 and 4 instances, refreshed to web-1.5.0 on the emulated instance refresh (one
    instance an hour of its clock). The tab reads the progress the watch recorded — never AWS on open."""
    import dataclasses

    from tests.support.approvals import approval_message
    from tests.support.rollout import Clock, emulated_refreshes, pinned_group

    clock = Clock()
    emulation = emulated_refreshes(monkeypatch, clock, step_seconds=3600)
    old, _new = seed.family(aws, ["1.4.0", "1.5.0"])
    pinned_group(aws, "web-small", old, 2)
    pinned_group(aws, "web-big", old, 4)
    app = make_harness(POLICY)
    app.ctx.waits = dataclasses.replace(app.ctx.waits, rollout_poll_seconds=0.05)
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    assert "Rollouts in progress" not in view_text(open_home(app, "U0OPS")[0])  # asked for, not started
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts, wait=False)
    until(lambda: len(emulation.refreshes_of("us-east-1", "web-small") + emulation.refreshes_of("us-east-1",
                                                                                                "web-big")) == 2)

    def recorded(percents):
        def check():
            row = app.ctx.store.one("SELECT details FROM requests WHERE id = ?", (request_id,))
            progress = json.loads(row["details"]).get("progress") or {}
            return sorted(item.get("percent") or 0 for item in progress.values()) == percents
        return check

    clock.now += timedelta(hours=2, minutes=30)  # InProgress: one instance of each group replaced
    until(recorded([25, 50]))
    text = view_text(open_home(app, "U0OPS", wait=False)[0])
    assert "Rollouts in progress (1)" in text
    # (2 × 50 % + 4 × 25 %) / 6 instances = 33 %, not the groups' plain average 37 %
    assert "*web* → 1.5.0 · 0 of 2 groups done · *33 %*" in text, text
    assert "<https://" in text and "the request's message>" in text.split("Rollouts in progress")[1]

    clock.now += timedelta(hours=1)  # web-small done (100 %), web-big half way: (2 × 100 + 4 × 50) / 6
    until(recorded([50, 100]))
    text = view_text(open_home(app, "U0OPS", wait=False)[0])
    assert "*web* → 1.5.0 · 1 of 2 groups done · *66 %*" in text, text

    clock.now += timedelta(hours=5)
    app.wait_idle()  # the watch saw every group finish and said so
    assert "Rollouts in progress" not in view_text(open_home(app, "U0OPS")[0])


def test_a_rollout_group_that_failed_is_named_with_its_reason_while_the_others_go_on(make_harness, aws, monkeypatch):
    import dataclasses

    from tests.support.approvals import approval_message
    from tests.support.rollout import Clock, emulated_refreshes, pinned_group

    clock = Clock()
    emulation = emulated_refreshes(monkeypatch, clock, step_seconds=3600)
    emulation.fail_next_refresh("Instance i-0abc failed health checks", after=1, group="web-small")
    old, _new = seed.family(aws, ["1.4.0", "1.5.0"])
    pinned_group(aws, "web-small", old, 2)
    pinned_group(aws, "web-big", old, 6)
    app = make_harness(POLICY)
    app.ctx.waits = dataclasses.replace(app.ctx.waits, rollout_poll_seconds=0.05)
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts, wait=False)
    until(lambda: all(emulation.refreshes_of("us-east-1", name) for name in ("web-big", "web-small")))

    def rolled_back():
        row = app.ctx.store.one("SELECT details FROM requests WHERE id = ?", (request_id,))
        progress = json.loads(row["details"]).get("progress") or {}
        return sorted(item.get("status") or "" for item in progress.values()) == ["InProgress", "RollbackSuccessful"]

    # web-small: one replaced, then it fails and AWS rolls it back; web-big: 4 of its 6 replaced meanwhile
    clock.now += timedelta(hours=5, minutes=30)
    until(rolled_back)
    text = view_text(open_home(app, "U0OPS", wait=False)[0])
    assert "*web* → 1.5.0 · 1 of 2 groups done · *" in text, text
    assert ":x: web-small: Instance i-0abc failed health checks" in text
    clock.now += timedelta(hours=5)
    app.wait_idle()
