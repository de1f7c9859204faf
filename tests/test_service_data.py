"""Services return data (issue 20 §2): an approval request stores the data its message is rendered from, not
Block Kit (requests stored before, with their blocks, still display); the engine's thread lines carry their data
to the outbox, which escapes it; the dashboard service never calls Slack; the launch use-case is the service's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bot.core import authority
from bot.render.approvals import detail_blocks
from bot.render.deregister import ACCOUNTS_BLOCK
from bot.services import approvals, dashboard
from bot.services import launch as launch_service
from bot.services.launch import LaunchOrder
from bot.services.usage_reports import AVAILABLE, PENDING, OtherAccounts
from handlers.actions.deregister import _with_report
from tests.support import seed

POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]},
          "launch": {"max_count": 3, "allowed_instance_types": ["t3.*"]}}


@pytest.fixture
def policy_data():
    return json.loads(json.dumps(POLICY))


def posts(harness, containing=""):
    return [call for call in harness.fake.calls_to("chat.postMessage") if containing in call.text]


def block_texts(call) -> str:
    return json.dumps(call.params.get("blocks", []))


def mrkdwn_texts(call) -> list[str]:
    """The texts Slack parses for mentions and links in a message's blocks (plain_text is shown as typed)."""
    found = []

    def walk(value):
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            if value.get("type") == "mrkdwn":
                found.append(value["text"])
            for item in value.values():
                walk(item)
    walk(call.params.get("blocks", []))
    return found


PARAMS = {"image_id": "ami-1", "region": "us-east-1", "instance_type": "t3.micro", "count": 1}  # a launch's


def test_a_launch_request_stores_its_details_as_data_and_its_message_renders_them(harness, aws):
    image_id = seed.image(aws, "web <@U123> v1")
    harness.command(f"launch {image_id} m5.large --name big")
    row = harness.ctx.store.one("SELECT * FROM requests WHERE kind = 'launch'")
    details = json.loads(row["details"])
    assert isinstance(details, dict) and details["view"] == launch_service.DETAILS_VIEW  # data, not blocks
    assert details["image"] == {"id": image_id, "name": "web <@U123> v1", "region": "us-east-1"}
    assert details["order"]["instance_type"] == "m5.large" and details["order"]["name"] == "big"
    approval = next(call for call in posts(harness, row["id"]) if "Approve" in block_texts(call))
    shown = "\n".join(mrkdwn_texts(approval))
    assert "*Instances*" in shown and "m5.large" in shown and "*Name tag*" in shown
    assert "web &lt;@U123&gt; v1" in shown and "<@U123>" not in shown  # the data, escaped where it is rendered


def test_a_request_stored_with_pre_rendered_blocks_still_displays(harness, aws):
    """A database from before details were data: its requests hold Block Kit; their messages show it as it is."""
    stored = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Stored before:* blocks as they were"}}]
    request = approvals.create_request(harness.ctx, kind=launch_service.KIND, params=PARAMS,
                                       requester="U0OPS", channel="C0OPS", title="An old request", details=stored)
    harness.wait_idle()
    assert json.loads(harness.ctx.store.one("SELECT details FROM requests WHERE id = ?", (request.id,))["details"]) \
        == stored
    [approval] = posts(harness, request.id)
    assert "*Stored before:* blocks as they were" in block_texts(approval)


def test_the_outcome_line_is_data_the_outbox_escapes_and_old_thread_rows_still_go_out(harness, aws):
    request = approvals.create_request(harness.ctx, kind=launch_service.KIND, params=PARAMS,
                                       requester="U0OPS", channel="C0OPS", title="Outcome", details=[])
    harness.wait_idle()
    store = harness.ctx.store
    store.execute("UPDATE requests SET state = 'executing' WHERE id = ?", (request.id,))
    approvals._finish(harness.ctx, request, approvals.FAILED, "AWS said <!channel> & no")
    # an intent an older build wrote: mrkdwn text, delivered as it is
    store.execute("INSERT INTO outbox (intent, subject, state, next_at, created_at) VALUES (?, ?, 'pending', 0, '')",
                  (json.dumps({"kind": "thread", "text": ":bell: written by an older build",
                               "request_id": request.id}), request.id))
    harness.ctx.outbox.deliver_due()
    intents = [json.loads(row["intent"]) for row in store.query("SELECT intent FROM outbox ORDER BY id")]
    assert {"kind": "outcome", "state": "failed", "outcome": "AWS said <!channel> & no",
            "request_id": request.id} in intents  # the engine writes the words as they are
    thread = [call.params["text"] for call in posts(harness) if call.params.get("thread_ts")]
    assert ":x: Failed: AWS said &lt;!channel&gt; &amp; no" in thread
    assert ":bell: written by an older build" in thread
    assert {row["state"] for row in store.query("SELECT state FROM outbox")} == {"delivered"}


class NoSlack:
    """A context whose Slack client must not be touched."""

    def __init__(self, store, clock):
        self.store, self.clock, self.touched = store, clock, []

    @property
    def slack(self):
        self.touched.append("slack")
        raise AssertionError("a service called Slack")


def test_the_dashboard_records_a_posted_digest_without_calling_slack(harness):
    ctx = NoSlack(harness.ctx.store, harness.ctx.clock)
    findings = SimpleNamespace(stale=[], orphans=[], monthly_cost=1.5, drifted_instances=None)  # the totals read
    dashboard.record_posted_digest(ctx, "2026-06-01", findings, "C0DIGEST", "1.000", "https://example/p1")
    assert ctx.touched == []
    assert dashboard.last_digest(harness.ctx.store).permalink == "https://example/p1"


def test_the_digest_command_records_the_permalink_slack_gives(harness, aws):
    harness.command("digest", user="U0OPS")
    [row] = harness.ctx.store.query("SELECT channel, message_ts, permalink FROM digest_history")
    assert row["message_ts"] and row["permalink"] and row["message_ts"].replace(".", "") in row["permalink"]


def test_the_launch_use_case_is_the_services_and_tells_the_edge(harness, aws):
    """Called without Slack: it decides and launches; the edge hears of the start and where it said so."""
    image_id = seed.image(aws, "use-case")
    told, warned, detail = [], [], {}

    def started_at(image, ids, ref, where):
        told.append((image.id, ids, ref))
        return "9.9", None  # the ts of the edge's message, in the command's channel

    with authority.acting("U0OPS", "/ami launch"):  # as the dispatcher runs a command
        started = launch_service.start_launch(
            harness.ctx, LaunchOrder(image_id, "t3.micro", name="direct"), "U0OPS", "C0OPS", detail, "ref-1",
            warn=warned.append, started=started_at)
    assert started.request is None and started.reference == "ref-1" and started.result.instance_ids
    assert told == [(image_id, started.result.instance_ids, "ref-1")] and warned == []
    assert detail["instances"] == started.result.instance_ids and detail["request"] == "ref-1"
    [wait] = [step for step in harness.ctx.store.query("SELECT data FROM steps WHERE owner = 'launch:ref-1'")
              if json.loads(step["data"]).get("ts")]
    assert json.loads(wait["data"])["ts"] == "9.9"  # where the edge said it: a resumed wait updates that message

    with authority.acting("U0OPS", "/ami launch"):
        asked = launch_service.start_launch(
            harness.ctx, LaunchOrder(image_id, "m5.large"), "U0OPS", "C0OPS", {}, warn=warned.append,
            started=lambda *_: pytest.fail("an approval launches nothing"))
    assert asked.request is not None and asked.reasons and asked.result is None


def test_a_stage_change_request_stores_the_image_and_its_use_as_data(make_harness, aws):
    app = make_harness({**POLICY, "access": {"operators": ["U0OPS", "U0LEAD"]}})
    image = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1.0"})
    seed.instance(aws, image_id=image, name="prod-1")
    app.command(f"promote {image}")
    app.command(f"disable {image}")
    row = app.ctx.store.one("SELECT * FROM requests WHERE kind = 'disable'")
    details = json.loads(row["details"])
    assert details["view"] == "stage-change" and details["image"]["family"] == "web"
    assert [item["name"] for item in details["usage"]["instances"]] == ["prod-1"]
    shown = "\n".join(mrkdwn_texts(next(call for call in posts(app, row["id"]) if "Approve" in block_texts(call))))
    assert "*Family*\nweb — *current version*" in shown and "*Version*\n1.0" in shown
    assert "*What happens*\nThe image is disabled" in shown and "prod-1" in shown and "/amibot/web/current" in shown


def test_a_deregistration_request_stores_its_preflight_as_data_without_account_secrets(make_harness, aws):
    app = make_harness({**POLICY, "access": {"operators": ["U0OPS"]}})
    image = seed.image(aws, "old <!here> build")
    app.command(f"deregister {image}", user="U0OPS")
    row = app.ctx.store.one("SELECT * FROM requests WHERE kind = 'deregister'")
    details = json.loads(row["details"])
    assert details["view"] == "deregister" and details["preflight"]["image"]["id"] == image
    assert set(details["preflight"]["owner"]) == {"id", "name"}  # never a role ARN or an external id
    shown = "\n".join(mrkdwn_texts(next(call for call in posts(app, row["id"]) if "Approve" in block_texts(call))))
    assert f"*Image*\n`{image}` old &lt;!here&gt; build" in shown and "*Snapshots to delete*" in shown
    assert "<!here>" not in shown


def test_a_usage_report_lands_in_data_details_and_in_stored_blocks_alike():
    pending = OtherAccounts("the 1 account it is shared with", PENDING, report_id="r-1")
    ready = OtherAccounts("the 1 account it is shared with", AVAILABLE, report_id="r-1",
                          accounts={"222222222222": {"ec2:Instance": 3}})
    stored = [{"type": "section", "block_id": ACCOUNTS_BLOCK, "text": {"type": "mrkdwn", "text": "unknown yet"}}]
    [block] = _with_report(stored, ready)  # a request an older build stored rendered: its block is replaced
    assert "Used by 1 other account" in block["text"]["text"]
    data = {"view": "deregister", "force": False, "keep_snapshots": False, "at": "2026-06-01T00:00:00+00:00",
            "preflight": {"image": {"id": "ami-1", "name": "n", "region": "us-east-1", "state": "available",
                                    "created": None}, "usage": {}, "shares": None, "snapshots": [],
                          "protection": None, "recycle_days": None, "recycle_known": False, "notes": [],
                          "other_accounts": pending.to_payload(), "owner": {"id": "", "name": ""},
                          "many": False, "elsewhere": []}}
    updated = _with_report(data, ready)
    assert updated["preflight"]["other_accounts"]["state"] == AVAILABLE and data["preflight"]["other_accounts"][
        "state"] == PENDING  # a new value, the stored one untouched
    assert "Used by 1 other account" in json.dumps(detail_blocks(updated))
    assert "Used by 1 other account" not in json.dumps(detail_blocks(data))
