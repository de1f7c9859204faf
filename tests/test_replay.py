"""Every kind of Slack delivery, replayed, acts once (issue 14 §1), and malformed signed payloads are answered
cleanly (§6), over real HTTP against the running app (the `harness`).

Each payload is posted three times, exactly as signed by Slack — twice as it was, once more with
X-Slack-Retry-Num: 1 — and the test counts the effect where a user or AWS would see it."""

from __future__ import annotations

import json
import logging
import urllib.parse

import pytest
from slack_bolt import App

from bot.render import launch as launch_render
from bot.render.approvals import APPROVE, CANCEL, REJECT
from bot.render.bake import PROMOTE_ACTION
from bot.render.digest import CLEANUP, DEREGISTER, SNOOZE
from bot.render.lifecycle import LAUNCH_ACTION, SHARE_ACTION
from bot.render.share import ANY_REGION, FIELD_REGION, FIELD_TARGET, SHARE_FORM, VALUE
from bot.services import launch as launch_service
from bot.slack import delivery_keys
from tests.support import seed

POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]}}
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


@pytest.fixture
def policy_data():
    return json.loads(json.dumps(POLICY))


def replay(harness, body: str, content_type: str = "application/x-www-form-urlencoded") -> None:
    """The same signed delivery three times: twice identical, once as Slack's retry. Each is acked."""
    for headers in ({}, {}, RETRY):
        response = harness.post(body, content_type=content_type, headers=headers)
        assert response.status == 200, response
        assert response.elapsed < 3
    harness.wait_idle()


def interactive(payload: dict) -> str:
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def count(harness, sql: str, params: tuple = ()) -> int:
    return harness.ctx.store.one(f"SELECT count(*) AS n FROM ({sql})", params)["n"]


def instances(aws, **tags):
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    reservations = aws.client("ec2").describe_instances(Filters=filters)["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def answers_at(harness, response_url: str):
    key = response_url.rsplit("/", 1)[-1]
    return [call for call in harness.fake.calls_to("response_url") if call.params.get("_key") == key]


def approval(harness) -> tuple[str, str]:
    """The last approval message's ts and request id."""
    for call in reversed(harness.fake.calls_to("chat.postMessage")):
        for block in call.params.get("blocks") or []:
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("action_id") == APPROVE:
                    return call.ts, element["value"]
    raise AssertionError("no approval message")


def click_payload(harness, action_id: str, value: str, user: str = "U0LEAD", message_ts: str | None = None,
                  message: dict | None = None) -> dict:
    return harness.local.sim.block_actions_payload({"action_id": action_id, "value": value}, user, "C0OPS",
                                                   message_ts=message_ts, message=message)


def test_a_replayed_command_launches_once(harness, aws):
    image_id = seed.image(aws, "replay-cmd")
    body = harness.command_body(f"launch {image_id} t3.micro 2 --name replayed-cmd")
    replay(harness, body)
    launched = instances(aws, Name="replayed-cmd")
    assert len(launched) == 2
    assert count(harness, "SELECT * FROM jobs WHERE kind = 'command'") == 1
    assert count(harness, "SELECT * FROM audit WHERE action = 'command.launch'") == 1
    assert len([c for c in harness.fake.calls_to("chat.postMessage") if "launched 2 ×" in c.text]) == 1
    # The launch's reference (its tag and EC2 ClientToken) comes from the delivery, not from the run
    trigger = urllib.parse.parse_qs(body)["trigger_id"][0]
    assert {launch_service.TAG_REQUEST: launch_service.launch_reference(f"command:{trigger}")}.items() <= \
        {t["Key"]: t["Value"] for t in launched[0]["Tags"]}.items()


def test_a_replayed_approval_click_decides_and_answers_once(harness, aws):
    image_id = seed.image(aws, "replay-approve")
    harness.command(f"deregister {image_id}")
    message_ts, request_id = approval(harness)
    payload = click_payload(harness, APPROVE, request_id, message_ts=message_ts)
    replay(harness, interactive(payload))
    assert not aws.client("ec2").describe_images(ImageIds=[image_id])["Images"]
    assert count(harness, "SELECT * FROM jobs WHERE kind = 'approval.click'") == 1
    assert count(harness, "SELECT * FROM approvals WHERE request_id = ?", (request_id,)) == 1
    assert count(harness, "SELECT * FROM audit WHERE action = 'request.approval'") == 1
    assert count(harness, "SELECT * FROM audit WHERE action = 'request.succeeded'") == 1
    assert count(harness, "SELECT * FROM audit WHERE outcome LIKE 'refused%'") == 0
    assert len(answers_at(harness, payload["response_url"])) == 1  # no "already decided" second answer


def test_a_replayed_digest_deregistration_click_opens_one_request(harness, aws):
    image_id = seed.image(aws, "replay-digest")
    payload = click_payload(harness, DEREGISTER, f"us-east-1:{image_id}", user="U0OPS")
    replay(harness, interactive(payload))
    assert count(harness, "SELECT * FROM requests WHERE kind = 'deregister'") == 1
    assert count(harness, "SELECT * FROM jobs WHERE kind = 'digest.click'") == 1
    assert len(answers_at(harness, payload["response_url"])) == 1
    assert len([c for c in harness.fake.calls_to("chat.postMessage") if image_id in c.text]) == 1


def test_a_replayed_snooze_click_snoozes_once(harness, aws):
    image_id = seed.image(aws, "replay-snooze")
    payload = click_payload(harness, SNOOZE, f"us-east-1:{image_id}", user="U0OPS")
    replay(harness, interactive(payload))
    assert count(harness, "SELECT * FROM snoozes WHERE image_id = ?", (image_id,)) == 1
    assert count(harness, "SELECT * FROM audit WHERE action = 'digest.snooze'") == 1
    assert len(answers_at(harness, payload["response_url"])) == 1


def test_a_replayed_launch_form_submission_launches_once(harness, aws):
    image_id = seed.image(aws, "replay-form")
    option = {"text": {"type": "plain_text", "text": "replay-form"}, "value": f"{image_id}@us-east-1"}
    view = {"id": "V0REPLAY", "hash": "1700000000.abc", "type": "modal", "callback_id": "launch_modal",
            "private_metadata": json.dumps({"channel": "C0OPS"}), "state": {"values": {
                "image": {"value": {"type": "static_select", "selected_option": option}},
                "instance_type": {"value": {"type": "plain_text_input", "value": "t3.nano"}},
                "count": {"value": {"type": "number_input", "value": "3"}},
                "name": {"value": {"type": "plain_text_input", "value": "replayed-form"}}}}}
    payload = {"type": "view_submission", "team": {"id": "T0FAKE"}, "user": {"id": "U0OPS", "name": "u0ops"},
               "api_app_id": "A0AMIBOT", "trigger_id": "42.submit.1", "view": view}
    replay(harness, interactive(payload))
    launched = instances(aws, Name="replayed-form")
    assert len(launched) == 3
    assert count(harness, "SELECT * FROM jobs WHERE kind = 'launch.form'") == 1
    assert count(harness, "SELECT * FROM audit WHERE action = 'launch.form'") == 1
    reference = launch_service.launch_reference(delivery_keys.delivery_key(payload))
    assert {t["Key"]: t["Value"] for t in launched[0]["Tags"]}[launch_service.TAG_REQUEST] == reference


def test_a_launch_job_run_twice_asks_aws_with_one_client_token(harness, aws):
    """Under the de-duplication, the action itself is idempotent: the same job payload (a recovered or repeated
    job) sends RunInstances the same ClientToken, so AWS starts its instances once (moto does not implement
    ClientToken idempotency, so the tokens are checked as sent)."""
    from handlers.views.launch import JOB_KIND

    image_id = seed.image(aws, "replay-token")
    tokens = []
    harness.ctx.aws.home.ec2("us-east-1").meta.events.register(
        "before-parameter-build.ec2.RunInstances", lambda params, **_: tokens.append(params["ClientToken"]))
    payload = {"order": {"image_ref": image_id, "instance_type": "t3.nano", "count": 1, "name": "twice",
                         "subnet_id": None, "region": "us-east-1", "force": False},
               "user": "U0OPS", "channel": "C0OPS", "delivery": "view:V1:9.submit.9"}
    harness.ctx.jobs.kinds[JOB_KIND].run(payload)
    harness.ctx.jobs.kinds[JOB_KIND].run(payload)
    assert len(tokens) == 2 and tokens[0] == tokens[1] == launch_service.launch_reference("view:V1:9.submit.9")


def test_a_replayed_reject_submission_rejects_once(harness, aws):
    image_id = seed.image(aws, "replay-reject")
    harness.command(f"deregister {image_id}")
    message_ts, request_id = approval(harness)
    reject = click_payload(harness, REJECT, request_id, message_ts=message_ts)
    replay(harness, interactive(reject))  # the Reject button opens the reason form: once
    opened = harness.fake.calls_to("views.open")
    assert len(opened) == 1
    modal = opened[0].params["view"]
    payload = {"type": "view_submission", "team": {"id": "T0FAKE"}, "user": {"id": "U0LEAD", "name": "u0lead"},
               "api_app_id": "A0AMIBOT", "trigger_id": "43.submit.1",
               "view": {**modal, "id": "V0REJECT", "hash": "1700000000.def", "state": {"values": {
                   "reason": {"value": {"type": "plain_text_input", "value": "not yet"}}}}}}
    replay(harness, interactive(payload))
    assert harness.ctx.store.one("SELECT state, note FROM requests WHERE id = ?", (request_id,)) == {
        "state": "rejected", "note": "not yet"}
    assert count(harness, "SELECT * FROM jobs WHERE kind = 'approval.click'") == 1
    assert count(harness, "SELECT * FROM audit WHERE action = 'request.rejected'") == 1
    assert count(harness, "SELECT * FROM audit WHERE outcome LIKE 'refused%'") == 0
    assert len([c for c in harness.fake.calls_to("chat.postEphemeral") if c.params.get("user") == "U0LEAD"]) == 1
    assert aws.client("ec2").describe_images(ImageIds=[image_id])["Images"]


def test_a_replayed_launch_button_opens_one_form(harness, aws):
    image_id = seed.image(aws, "replay-button")
    replay(harness, interactive(click_payload(harness, LAUNCH_ACTION, image_id, user="U0OPS")))
    assert len(harness.fake.calls_to("views.open")) == 1
    assert len(harness.fake.calls_to("views.update")) == 1


def test_a_replayed_app_home_opened_event_publishes_once(harness, aws):
    """One delivery publishes the tab (and may queue one refresh that publishes it again); its replays add
    nothing to that."""
    body = harness.local.sim.event_body({"type": "app_home_opened", "user": "U0OPS", "tab": "home",
                                         "channel": "D0HOME"})
    assert harness.post(body, content_type="application/json").status == 200
    harness.wait_idle()
    published, jobs = len(harness.fake.calls_to("views.publish")), count(harness, "SELECT * FROM jobs")
    assert published >= 1 and harness.fake.calls_to("views.publish")[0].params["user_id"] == "U0OPS"
    for headers in ({}, RETRY):
        assert harness.post(body, content_type="application/json", headers=headers).status == 200
    harness.wait_idle()
    assert len(harness.fake.calls_to("views.publish")) == published
    assert count(harness, "SELECT * FROM jobs") == jobs
    assert count(harness, "SELECT * FROM slack_requests WHERE key = ?",
                 (f"event:{json.loads(body)['event_id']}",)) == 1


def test_the_delivery_key_is_the_same_in_both_modes_and_distinguishes_deliveries():
    click = {"type": "block_actions", "trigger_id": "1.t", "actions": [{"action_id": "a", "action_ts": "9.1"}]}
    assert delivery_keys.delivery_key(click) == "click:1.t:a:9.1"
    assert delivery_keys.delivery_key({**click, "trigger_id": "2.t"}) != delivery_keys.delivery_key(click)
    assert delivery_keys.delivery_key({"command": "/ami", "trigger_id": "3.t", "text": "list"}) == "command:3.t"
    assert delivery_keys.delivery_key({"type": "event_callback", "event_id": "Ev1", "event": {}}) == "event:Ev1"
    submitted = {"type": "view_submission", "trigger_id": "4.t", "view": {"id": "V1", "hash": "h1"}}
    assert delivery_keys.delivery_key(submitted) == "view:V1:4.t"
    assert delivery_keys.delivery_key({**submitted, "trigger_id": None}) == "view:V1:h1"
    assert delivery_keys.delivery_key({"type": "shortcut", "b": 1, "a": 2}) == delivery_keys.delivery_key(
        {"a": 2, "type": "shortcut", "b": 1})  # canonical: key order does not matter
    assert delivery_keys.delivery_key(["not", "an", "object"]) is None


# --- malformed, but signed -------------------------------------------------------------------------------------

MALFORMED = [
    {"type": "block_actions", "user": {"id": "U0LEAD"}, "actions": [], "trigger_id": "1.a",
     "container": {"type": "message", "channel_id": "C0OPS", "message_ts": "1.1"}},
    {"type": "block_actions", "user": "x", "trigger_id": "1.b",
     "actions": [{"action_id": APPROVE, "value": "req-1", "action_ts": "1"}],
     "container": {"type": "message", "channel_id": "C0OPS", "message_ts": "1.1"}},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "trigger_id": "1.c",
     "actions": [{"action_id": DEREGISTER, "value": "us-east-1:ami-0123456789abcdef0", "action_ts": "1"}]},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "trigger_id": "1.d", "container": "C0OPS",
     "actions": [{"action_id": SNOOZE, "value": "us-east-1:ami-0123456789abcdef0", "action_ts": "1"}]},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "trigger_id": "1.e", "actions": ["approve"],
     "container": {"type": "message", "channel_id": "C0OPS"}},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "trigger_id": "1.f", "actions": "approve",
     "container": {"type": "message", "channel_id": "C0OPS"}},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "trigger_id": "1.g",
     "actions": [{"action_id": DEREGISTER, "value": 5, "action_ts": "1"}],
     "container": {"type": "message", "channel_id": "C0OPS"}},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "trigger_id": "1.h",
     "actions": [{"action_id": SNOOZE, "value": "us-east-1:ami-0123456789abcdef0"}],
     "container": {"type": "message", "channel_id": "C0OPS"}, "message": {"blocks": ["x"]}},
    {"type": "view_submission", "user": {"id": "U0OPS"}, "view": {"callback_id": "launch_modal", "state": "x"}},
    {"type": "view_submission", "user": {"id": "U0OPS"}, "view": "launch_modal"},
    {"type": "view_submission", "user": {"id": "U0OPS"}, "view": {"type": "modal", "callback_id": "launch_modal",
                                                                  "private_metadata": 7}},
    {"type": "view_submission", "user": 5, "view": {"type": "modal", "callback_id": "approval.reject_reason",
                                                    "private_metadata": "req-1|C0OPS"}},
    {"type": "block_actions", "user": {"id": "U0OPS"}, "event": "x", "actions": [{"action_id": SNOOZE}],
     "container": {"type": "message", "channel_id": "C0OPS"}},
]


def test_malformed_signed_payloads_are_answered_cleanly_and_run_nothing(harness, aws, caplog):
    caplog.set_level(logging.INFO)
    before = len(harness.fake.calls)
    for payload in MALFORMED:
        response = harness.interact(payload)
        assert response.status == 400, (payload, response)  # from the app's shape check (or, for a body Bolt
        # cannot even read, from the HTTP server's own guard)
    # A launch form whose values are not what Slack sends is answered on its fields, and launches nothing
    odd = {"type": "view_submission", "user": {"id": "U0OPS"}, "trigger_id": "1.z", "view": {
        "type": "modal", "callback_id": "launch_modal", "private_metadata": "[1]",
        "state": {"values": {"image": "x", "count": {"value": {"value": 3}}, "name": []}}}}
    response = harness.interact(odd)
    assert response.status == 200 and response.json()["response_action"] == "errors"
    assert set(response.json()["errors"]) == {"image", "count"}
    # An event without the fields the Home tab needs is acked and ignored
    event = harness.event({"type": "app_home_opened", "tab": "home", "user": {"id": "U0OPS"}})
    assert event.status == 200

    assert count(harness, "SELECT * FROM jobs") == 0
    assert count(harness, "SELECT * FROM requests") == 0 and count(harness, "SELECT * FROM snoozes") == 0
    assert [c.method for c in harness.fake.calls[before:]] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and r.name in ("bot.app", "bot.slack.server")]
    assert len(warnings) == len(MALFORMED)  # one line each, without the payload
    assert all("\n" not in w and "U0OPS" not in w and "ami-0123456789abcdef0" not in w for w in warnings)


# --- every listener the app registers, replayed ------------------------------------------------------------

# Bolt's public decorators that register a listener; the first argument names what it listens to.
LISTENER_DECORATORS = ("action", "block_action", "attachment_action", "command", "event", "message", "function",
                       "shortcut", "global_shortcut", "message_shortcut", "view", "view_submission", "view_closed",
                       "options", "block_suggestion", "dialog_submission", "dialog_cancellation",
                       "dialog_suggestion", "step", "assistant")


@pytest.fixture
def registered_listeners(monkeypatch) -> list[tuple[str, object]]:
    """(decorator, what it listens to) for every listener an app built after this registers, in order: Bolt's
    public decorators, recorded and then run as usual."""
    seen: list[tuple[str, object]] = []

    def recording(name, original):
        def decorator(self, *args, **kwargs):
            seen.append((name, args[0] if args else next(iter(kwargs.values()), None)))
            return original(self, *args, **kwargs)
        return decorator

    for name in LISTENER_DECORATORS:
        if hasattr(App, name):
            monkeypatch.setattr(App, name, recording(name, getattr(App, name)))
    return seen


FORM = "application/x-www-form-urlencoded"


def pending_request(harness, aws, name: str) -> tuple[str, str]:
    """A deregistration waiting for approval: its message's ts and its request id."""
    harness.command(f"deregister {seed.image(aws, name)}")
    return approval(harness)


def clicked(action_id: str, user: str = "U0LEAD", value=None):
    """A delivery builder: a click on `action_id` in a message. Its value is `value(harness, aws)`, or by default
    the id of a pending request, in the request's approval message."""
    def build(harness, aws) -> tuple[str, str]:
        if value is None:
            message_ts, request_id = pending_request(harness, aws, f"every-{action_id.replace('.', '-')}")
            return interactive(click_payload(harness, action_id, request_id, user, message_ts=message_ts)), FORM
        return interactive(click_payload(harness, action_id, value(harness, aws), user)), FORM
    return build


def submission(harness, callback_id: str, metadata: str, values: dict, user: str = "U0OPS") -> tuple[str, str]:
    """The modal `callback_id` submitted with `values`, as Slack sends it."""
    view = {"id": f"V0{callback_id.upper()}", "hash": "1700000000.x", "type": "modal", "callback_id": callback_id,
            "private_metadata": metadata}
    return interactive(harness.local.sim.view_submission_payload(view, user, values)), FORM


def an_image(harness, aws) -> str:
    return seed.image(aws, "every-image")


def an_image_in_a_region(harness, aws) -> str:
    return f"us-east-1:{seed.image(aws, 'every-digest')}"


def an_orphan_in_a_region(harness, aws) -> str:
    ec2 = aws.client("ec2")
    volume = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    return f"us-east-1:{ec2.create_snapshot(VolumeId=volume, Description='every-orphan')['SnapshotId']}"


def reject_reason(harness, aws) -> tuple[str, str]:
    _, request_id = pending_request(harness, aws, "every-reject-reason")
    return submission(harness, "approval.reject_reason", f"{request_id}|C0OPS",
                      {"reason": {"value": {"type": "plain_text_input", "value": "not yet"}}}, user="U0LEAD")


def launch_form(harness, aws) -> tuple[str, str]:
    image_id = seed.image(aws, "every-launch-form")
    option = {"text": {"type": "plain_text", "text": "every-launch-form"}, "value": f"{image_id}@us-east-1"}
    return submission(harness, launch_render.CALLBACK_ID, json.dumps({"channel": "C0OPS"}), {
        "image": {"value": {"type": "static_select", "selected_option": option}},
        "instance_type": {"value": {"type": "plain_text_input", "value": "t3.nano"}},
        "count": {"value": {"type": "number_input", "value": "1"}},
        "name": {"value": {"type": "plain_text_input", "value": "every-form"}}})


def share_form(harness, aws) -> tuple[str, str]:
    metadata = json.dumps({"image_id": seed.image(aws, "every-share-form"), "channel": "C0OPS"})
    return submission(harness, SHARE_FORM, metadata, {
        FIELD_TARGET: {VALUE: {"type": "plain_text_input", "value": "210987654321"}},
        FIELD_REGION: {VALUE: {"type": "static_select", "selected_option": {"value": ANY_REGION}}}})


def home_opened(harness, aws) -> tuple[str, str]:
    return harness.local.sim.event_body({"type": "app_home_opened", "user": "U0OPS", "tab": "home",
                                         "channel": "D0HOME"}), "application/json"


# For each listener the app registers, a delivery as Slack sends it that the listener accepts (and acts on).
DELIVERIES = {
    ("command", "/ami"): lambda harness, aws: (harness.command_body("list"), FORM),
    ("action", APPROVE): clicked(APPROVE),
    ("action", REJECT): clicked(REJECT),
    ("action", CANCEL): clicked(CANCEL, user="U0OPS"),
    ("action", DEREGISTER): clicked(DEREGISTER, "U0OPS", an_image_in_a_region),
    ("action", SNOOZE): clicked(SNOOZE, "U0OPS", an_image_in_a_region),
    ("action", CLEANUP): clicked(CLEANUP, "U0OPS", an_orphan_in_a_region),
    ("action", LAUNCH_ACTION): clicked(LAUNCH_ACTION, "U0OPS", an_image),
    ("action", SHARE_ACTION): clicked(SHARE_ACTION, "U0OPS", an_image),
    ("action", PROMOTE_ACTION): clicked(PROMOTE_ACTION, "U0OPS", lambda harness, aws: "bake-0123456789ab"),
    ("view", launch_render.CALLBACK_ID): launch_form,
    ("view", "approval.reject_reason"): reject_reason,
    ("view", SHARE_FORM): share_form,
    ("event", "app_home_opened"): home_opened,
}


def effects(harness) -> dict[str, int]:
    """What a delivery can leave behind: calls to Slack (the Web API and response_urls) and rows in each table."""
    tables = [row["name"] for row in harness.ctx.store.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {"slack calls": len(harness.fake.calls), **{table: count(harness, f"SELECT * FROM {table}")
                                                          for table in tables}}


def payload_of(form: str) -> dict:
    """The payload a form-encoded delivery carries: an interaction's JSON, or a slash command's fields."""
    fields = dict(urllib.parse.parse_qsl(form))
    return json.loads(fields["payload"]) if "payload" in fields else fields


def test_every_listener_acts_once_on_a_replayed_delivery(registered_listeners, make_harness, aws):
    """A guard for listeners added later: every listener the app registers is sent a delivery it accepts, then
    the same delivery again and as Slack's retry. The first claims its delivery key (a job's dedupe key, or
    delivery_keys.claim) and acts; the replays leave nothing behind — no Slack call, no row anywhere."""
    harness = make_harness(json.loads(json.dumps(POLICY)))
    registered = [(kind, on if isinstance(on, str) else repr(on)) for kind, on in registered_listeners]
    assert len(registered) >= 8
    assert not set(registered) - set(DELIVERIES), (
        "a listener without a delivery in DELIVERIES: add one, so its exactly-once is checked",
        sorted(set(registered) - set(DELIVERIES)))
    assert not set(DELIVERIES) - set(registered), sorted(set(DELIVERIES) - set(registered))
    for listener in registered:
        body, content_type = DELIVERIES[listener](harness, aws)
        harness.wait_idle()
        key = delivery_keys.delivery_key(json.loads(body) if content_type == "application/json" else payload_of(body))
        assert harness.post(body, content_type=content_type).status == 200, listener
        harness.wait_idle()
        assert count(harness, "SELECT key FROM slack_requests WHERE key = ? UNION ALL "
                              "SELECT id FROM jobs WHERE dedupe_key = ?", (key, key)) == 1, (listener, key)
        acted = effects(harness)
        for headers in ({}, RETRY):
            assert harness.post(body, content_type=content_type, headers=headers).status == 200, listener
        harness.wait_idle()
        assert effects(harness) == acted, listener


def test_payloads_as_slack_sends_them_pass_the_shape_check(harness):
    """No false alarms: clicks in a message, an ephemeral message and a modal, a submission, a command and an
    event, shaped as Slack shapes them, are all sound."""
    sim = harness.local.sim
    modal = {"id": "V1", "type": "modal", "callback_id": "launch_modal", "hash": "1.a", "blocks": []}
    sound = [
        sim.block_actions_payload({"action_id": APPROVE, "value": "req-1"}, "U1", "C1", message_ts="1.2"),
        sim.block_actions_payload({"action_id": SNOOZE, "value": "x"}, "U1", "C1", ephemeral=True),
        sim.block_actions_payload({"action_id": "pick", "type": "static_select",
                                   "selected_option": {"value": "a"}}, "U1", None, view=modal),
        sim.view_submission_payload(modal, "U1", {"image": {"value": {"type": "static_select",
                                                                      "selected_option": {"value": "a"}}}}),
        dict(urllib.parse.parse_qsl(sim.command_body("list", "U1", "C1"))),
        json.loads(sim.event_body({"type": "app_home_opened", "user": "U1", "tab": "home"})),
    ]
    for payload in sound:
        assert delivery_keys.problem(payload) is None, payload
        assert delivery_keys.delivery_key(payload).split(":")[0] in ("click", "view", "command", "event")
