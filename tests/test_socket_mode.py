"""`amibot socket` as a real process against a local Socket Mode stand-in (bot/devtools/fakesocket.py), a fake
Slack Web API and a moto server: the same end-to-end scenarios as over HTTP — a slash command, an approval
click, a modal submission, app_home_opened — each envelope acked within 3 s, redelivered envelopes (same id and
payload, with and without retry_attempt) running nothing twice, and a `disconnect` followed by a reconnect."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bot.devtools.fakeslack import FakeSlack
from bot.devtools.fakesocket import FakeSocket
from bot.devtools.slackclient import SlackClientSim, form_state
from tests.support import seed

BOT_TOKEN = "xoxb-socket-test-token"
APP_TOKEN = "xapp-1-socket-test-token"
ACK_SECONDS = 3.0
POLICY = """
[aws]
regions = ["us-east-1"]

[approvals]
approvers = ["U0LEAD"]
"""


class MotoSession:
    """What tests/support/seed.py needs of a boto3 session, pointed at the moto server."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def client(self, service: str, region: str = "us-east-1"):
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    socket = FakeSocket(fake).start()
    yield fake, socket
    socket.stop()
    fake.stop()


def start_bot(tmp_path, fake, moto_endpoint):
    (tmp_path / "amibot.toml").write_text(POLICY)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "AMIBOT_", "AWS_")) and k.lower() not in ("http_proxy", "https_proxy")}
    env.update({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": fake.url,
                "AMIBOT_DB": str(tmp_path / "amibot.db"), "AMIBOT_CONFIG": str(tmp_path / "amibot.toml"),
                "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "socket"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_bot(process) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


def wait_until(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def rows(db: str, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, params).fetchall()


def instances(aws, **tags):
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    filters.append({"Name": "instance-state-name", "Values": ["pending", "running"]})
    reservations = aws.client("ec2").describe_instances(Filters=filters)["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def approval_value(fake) -> tuple[str, str]:
    """The approval message's ts and request id (the Approve button's value)."""
    for call in fake.calls_to("chat.postMessage"):
        for block in call.params.get("blocks") or []:
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("action_id") == "approval.approve":
                    return call.ts, element["value"]
    return None


def delivered_three_times(socket, envelope):
    """Slack's redeliveries of ``envelope``: the same envelope again, then once more as retry 1; all acked."""
    again = socket.redeliver(envelope)
    retried = socket.redeliver(envelope, retry_attempt=1, retry_reason="timeout")
    for sent in (envelope, again, retried):
        sent.wait_ack(ACK_SECONDS)
    return [envelope, again, retried]


def test_socket_mode_end_to_end_acks_fast_runs_once_and_reconnects(tmp_path, slack, moto_endpoint):
    fake, socket = slack
    aws = MotoSession(moto_endpoint)
    old = seed.image(aws, "sock-old")  # nothing uses it: deregistration needs only the approval
    web = seed.image(aws, "sock-web", tags={"Family": "web"})
    db = str(tmp_path / "amibot.db")
    sim = SlackClientSim("http://127.0.0.1:9", "unused", fake)  # only builds Slack-shaped payloads here
    process = start_bot(tmp_path, fake, moto_endpoint)
    output = ""
    try:
        first = socket.wait_for_connection(1, timeout=60)
        assert fake.calls_to("apps.connections.open")[0].token == APP_TOKEN  # through SLACK_API_URL, app token

        # 1. A slash command, answered through its response_url; redelivered, it answers once.
        listing = socket.slash_command(_command(sim, "list", "U0OPS"))
        list_deliveries = delivered_three_times(socket, listing)
        reply_key = listing.payload["response_url"].rsplit("/", 1)[-1]
        wait_until(lambda: [c for c in fake.calls_to("response_url") if c.params.get("_key") == reply_key],
                   "the /ami list answer")
        assert "sock-web" in fake.calls_to("response_url")[-1].text

        # 2. Slack asks for a fresh connection: the bot opens one and carries on there.
        socket.disconnect(connection=first)
        second = socket.wait_for_connection(2, timeout=20)
        socket.wait_for_close(first)  # the bot has switched over
        assert len(fake.calls_to("apps.connections.open")) == 2 and second.path != first.path

        # 3. An approval: the request (once, though delivered three times), then the approver's click.
        asked = socket.slash_command(_command(sim, f"deregister {old}", "U0OPS"))
        ask_deliveries = delivered_three_times(socket, asked)
        message_ts, request_id = wait_until(lambda: approval_value(fake), "the approval message")
        click = socket.interactive(sim.block_actions_payload({"action_id": "approval.approve", "value": request_id},
                                                             "U0LEAD", "C0OPS", message_ts=message_ts))
        click_deliveries = delivered_three_times(socket, click)
        wait_until(lambda: not aws.client("ec2").describe_images(ImageIds=[old])["Images"], "the deregistration")

        # 4. The launch form, opened by `/ami launch` and submitted: instances, exactly once.
        opening = socket.slash_command(_command(sim, "launch", "U0OPS"))
        opening.wait_ack(ACK_SECONDS)
        form = wait_until(lambda: fake.calls_to("views.update"), "the launch form")[-1]
        view = {**form.params["view"], "id": form.params["view_id"]}
        option = next(option for group in view["blocks"][0]["element"]["option_groups"]
                      for option in group["options"] if option["value"] == f"{web}@us-east-1")
        values = form_state(view, {"image": option, "count": "2", "name": "sock-form"})
        submission = socket.interactive(sim.view_submission_payload(view, "U0OPS", values))
        submit_deliveries = delivered_three_times(socket, submission)
        wait_until(lambda: len(instances(aws, Name="sock-form")) >= 2, "the launched instances")

        # 5. The Home tab.
        home = socket.event(json.loads(sim.event_body({"type": "app_home_opened", "user": "U0OPS", "tab": "home",
                                                       "channel": "D0HOME"})))
        home.wait_ack(ACK_SECONDS)
        wait_until(lambda: fake.calls_to("views.publish"), "the Home tab")
        # the listener publishes, then asks for the fleet's refresh (no cache yet), which publishes again: wait
        # for that job too, or a refresh still on its way would look like a second delivery's work
        wait_until(lambda: rows(db, "SELECT count(*) FROM jobs WHERE kind = 'home.refresh'") != [(0,)]
                   and not rows(db, "SELECT id FROM jobs WHERE state IN ('queued', 'running')"), "idle jobs")
        published = len(fake.calls_to("views.publish"))  # the tab, and maybe its refresh: one delivery's worth
        home_deliveries = [home] + [socket.redeliver(home), socket.redeliver(home, 1, "timeout")]
        for sent in home_deliveries:
            sent.wait_ack(ACK_SECONDS)

        # 6. A payload Slack never sends is acked (so it is not redelivered) and runs nothing.
        jobs_before = rows(db, "SELECT count(*) FROM jobs")
        odd = socket.interactive({"type": "block_actions", "user": "x", "actions": [], "trigger_id": "9.odd"})
        odd.wait_ack(ACK_SECONDS)
        assert rows(db, "SELECT count(*) FROM jobs") == jobs_before

        # Every envelope on every connection was acked, within 3 s; later ones on the new connection.
        later = ask_deliveries + click_deliveries + [opening] + submit_deliveries + home_deliveries + [odd]
        every = list_deliveries + later
        assert all(sent.acked_at is not None and sent.ack_seconds < ACK_SECONDS for sent in every), \
            [(sent.type, sent.ack_seconds) for sent in every]
        assert {sent.connection for sent in list_deliveries} == {1} and {sent.connection for sent in later} == {2}
        assert all(sent.ack["envelope_id"] == sent.envelope_id for sent in every)

        # Nothing ran twice: let any stray second run show itself, then count.
        time.sleep(1.0)
        assert len([c for c in fake.calls_to("response_url") if c.params.get("_key") == reply_key]) == 1
        assert rows(db, "SELECT count(*) FROM requests WHERE kind = 'deregister'") == [(1,)]
        assert rows(db, "SELECT count(*) FROM jobs WHERE kind = 'approval.click'") == [(1,)]
        assert rows(db, "SELECT state FROM requests WHERE id = ?", (request_id,)) == [("succeeded",)]
        click_key = click.payload["response_url"].rsplit("/", 1)[-1]
        assert len([c for c in fake.calls_to("response_url") if c.params.get("_key") == click_key]) == 1
        assert rows(db, "SELECT count(*) FROM jobs WHERE kind = 'launch.form'") == [(1,)]
        launched = instances(aws, Name="sock-form")
        assert len(launched) == 2 and {i["ImageId"] for i in launched} == {web}
        assert len(fake.calls_to("views.publish")) == published
        assert rows(db, "SELECT count(*) FROM audit WHERE action = 'command.list'") == [(1,)]
    finally:
        output = stop_bot(process)
        print(output[-6000:])  # shown when the test fails
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "a repeated Slack request" in output  # the redeliveries were seen and dropped, not missed
    assert "ignoring a malformed Slack payload" in output
    assert BOT_TOKEN not in output and APP_TOKEN not in output


def _command(sim, text: str, user: str) -> dict:
    """A slash command's fields, as Socket Mode's slash_commands envelope carries them."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl(sim.command_body(text, user, "C0OPS")))
