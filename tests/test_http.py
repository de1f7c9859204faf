"""The HTTP surface: signatures, retries, health, hostile input, access control, the Home tab."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.support import seed


def test_bad_signature_is_401_and_nothing_runs(harness):
    body = harness.command_body("list")
    response = harness.post(body, signature="v0=" + "0" * 64)
    assert response.status == 401
    time.sleep(0.3)
    harness.wait_idle()
    assert harness.replies() == []
    assert harness.ctx.store.one("SELECT count(*) AS n FROM jobs")["n"] == 0


def test_timestamp_older_than_five_minutes_is_401(harness):
    response = harness.post(harness.command_body("list"), timestamp=int(time.time()) - 301)
    assert response.status == 401
    harness.wait_idle()
    assert harness.replies() == []
    assert harness.ctx.store.one("SELECT count(*) AS n FROM audit")["n"] == 0


def test_slack_retry_of_the_same_request_runs_once(harness, aws):
    body = harness.command_body("list")
    first = harness.post(body)
    retry = harness.post(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert first.status == retry.status == 200
    harness.wait_idle()
    assert len(harness.replies()) == 1
    assert harness.ctx.store.one("SELECT count(*) AS n FROM audit")["n"] == 1


def test_healthz(harness):
    with urllib.request.urlopen(harness.url + "/healthz", timeout=5) as response:
        body = json.loads(response.read())
        assert response.status == 200
    assert body["status"] == "ok" and body["db"] == "ok" and body["schema_version"] >= 2
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(harness.url + "/nope", timeout=5)
    assert missing.value.code == 404


@pytest.mark.parametrize("text, expected", [
    ("show ami-123", "not a valid image"),
    ("show", "needs an image"),
    ("deregister ami-0123456789abcdef0'", "A quote is not closed"),
    ("deregister ami-0123456789abcdef0x", "not a valid ami-id"),
    ("frobnicate now", "Unknown subcommand `frobnicate`"),
    ("x" * 5000, "5,000 characters long"),
    ("show \"unterminated", "A quote is not closed"),
    ("list --region Mars", "Mars is not an AWS region"),
    ("\u0000\u0007list\u202e \u2014region eu-west-1", "AMIs"),
    ("zeige 🐙 ämi", "Unknown subcommand `zeige`"),
    ("<!channel> list", "Unknown subcommand `&lt;!channel&gt;`"),
])
def test_hostile_input_gets_a_short_answer(harness, aws, text, expected):
    response = harness.command(text)
    assert response.status == 200
    reply = harness.last_reply()
    assert expected in reply.text
    assert "<!channel>" not in reply.text and "Traceback" not in reply.text
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in reply.params["blocks"])
    if "Unknown subcommand" not in expected:
        assert len(reply.params["text"]) < 300  # a short answer, not the whole help


def test_unknown_image_name_with_mentions_is_escaped(harness, aws):
    harness.command("show <!here|here> <@U0BOSS>")
    text = harness.last_reply().text
    assert "not found" in text and "<!here" not in text and "<@U0BOSS>" not in text


@pytest.fixture
def restricted(make_harness):
    return make_harness({"aws": {"regions": ["us-east-1"]},
                         "access": {"operators": ["U0OPS", "S0PLATFORM"], "channels": ["C0OPS"]}})


def test_changing_commands_need_an_operator(restricted, aws):
    image_id = seed.image(aws, "guarded")
    restricted.command(f"deregister {image_id}", user="U0INTERN")
    assert "Only amibot operators may run `/ami deregister`" in restricted.last_reply().text
    row = restricted.ctx.store.one("SELECT * FROM audit ORDER BY id DESC LIMIT 1")
    assert row["outcome"].startswith("refused") and row["actor"] == "U0INTERN"


def test_operator_groups_are_resolved(restricted, aws):
    restricted.fake.usergroups["S0PLATFORM"] = ["U0PLAT"]
    image_id = seed.image(aws, "grouped")
    restricted.command(f"deregister {image_id}", user="U0PLAT")
    assert "Asked for approval" in restricted.last_reply().text


def test_changing_commands_only_in_allowed_channels(restricted, aws):
    image_id = seed.image(aws, "elsewhere")
    restricted.command(f"deregister {image_id}", user="U0OPS", channel="C0RANDOM")
    assert "does not run `/ami deregister` in this channel; use <#C0OPS>" in restricted.last_reply().text


def test_read_only_commands_are_open_to_all(restricted, aws):
    seed.image(aws, "visible")
    restricted.command("list", user="U0INTERN", channel="C0RANDOM")
    assert "visible" in restricted.last_reply().text


def test_home_tab_is_published(harness):
    harness.command("help")
    harness.event({"type": "app_home_opened", "user": "U0OPS", "channel": "D0HOME", "tab": "home"})
    view = harness.fake.wait_for_method("views.publish")
    assert view.params["user_id"] == "U0OPS" and view.params["view"]["type"] == "home"
    assert "Waiting for you (0)" in view.text and "`/ami help` lists every command" in view.text


def test_ack_does_not_wait_for_slow_aws(harness, aws, monkeypatch):
    import bot.services.images as images

    real = images.list_images

    def slow(*args, **kwargs):
        time.sleep(2.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "list_images", slow)
    monkeypatch.setattr("handlers.commands.list.list_images", slow)
    response = harness.command("list", wait=False)
    assert response.status == 200 and response.elapsed < 1.0
    harness.wait_idle()
    assert "AMI" in harness.last_reply().text
