"""A crash between two steps of an action resumes the remaining steps and says what was done when.

The real thing first: `amibot serve` as a process, AWS a moto server behind a proxy that holds DeleteSnapshot
(so the window between DeregisterImage and DeleteSnapshot is as wide as the test wants), kill -9 inside it,
a restart on the same database. The same for a digest's snapshot cleanup (killed after 2 of 3 DeleteSnapshot), a
new image's "pending" message (Slack holds its answer: the bot never hears the ts) and a Launch button's form (killed
while it loads, or before it opened). Then each multi-step action's recovery in-process, with the durable rows a
crash leaves behind.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from bot.devtools.fakeslack import FakeSlack, _message_response, free_port
from bot.devtools.slackclient import SlackClientSim
from bot.durable.steps import DONE, PLANNED, Step, Steps
from bot.services import approvals
from tests.support import seed

SECRET = "crash-test-signing-secret-0123"
POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"approvers": ["U0LEAD"]}}


class HoldingProxy:
    """Forwards AWS requests to moto; while `hold` names an EC2 action, requests for it are held, never
    forwarded (the bot is killed meanwhile), so moto never sees them."""

    def __init__(self, target_port: int, hold: str | None, skip: int = 0, answer=None):
        self.hold = hold
        self.answer = answer  # (body, Authorization) -> (status, bytes) | None: what moto lacks, answered here
        self.skip = skip  # let this many requests for `hold` through first
        self.seen: list[str] = []  # actions forwarded, in order
        self.held = threading.Event()  # a held request has arrived
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = dict(part.split("=", 1) for part in body.decode(errors="replace").split("&")
                              if "=" in part).get("Action", "?")
                if action == proxy.hold and proxy.seen.count(action) >= proxy.skip:
                    proxy.held.set()
                    proxy._release.wait(60)
                    self.close_connection = True
                    return  # dropped: the process that sent it is dead by now
                answered = proxy.answer(body, self.headers.get("Authorization", "")) if proxy.answer else None
                if answered is not None:
                    proxy.seen.append(action)
                    self.send_response(answered[0])
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(answered[1])))
                    self.end_headers()
                    self.wfile.write(answered[1])
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                proxy.seen.append(action)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_http(url: str, timeout: float = 60) -> None:
    def up():
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False
    wait_until(up, timeout, url)


@pytest.fixture
def moto_server():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


# `amibot serve` whose rollout watch looks every 0.2 s instead of every minute (the only change: ctx.waits)
QUICK_WATCH = """import dataclasses, sys
from bot.services import rollout_watch
from bot.cli import main
watch = rollout_watch.watch
def quick(ctx, payload):
    ctx.waits = dataclasses.replace(ctx.waits, rollout_poll_seconds=0.2)
    return watch(ctx, payload)
rollout_watch.watch = quick
sys.exit(main(sys.argv[1:]))
"""


def serve(tmp_path, fake: FakeSlack, aws_url: str, port: int, config=None, quick_watch: bool = False
          ) -> subprocess.Popen:
    if config is None:
        config = tmp_path / "amibot.toml"
        config.write_text('[aws]\nregions = ["us-east-1"]\n[approvals]\napprovers = ["U0LEAD"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_", "AWS_"))}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": aws_url, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                "SLACK_BOT_TOKEN": "xoxb-crash-test", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.url,
                "AMIBOT_DB": str(tmp_path / "amibot.db"), "AMIBOT_CONFIG": str(config)})
    log = open(tmp_path / f"serve-{port}.log", "w")  # noqa: SIM115 (the child owns it)
    program = ["-c", QUICK_WATCH] if quick_watch else ["-m", "bot.cli"]
    process = subprocess.Popen([sys.executable, *program, "serve", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return process


def approval_post(fake: FakeSlack):
    for call in fake.calls_to("chat.postMessage"):
        for block in call.params.get("blocks", []):
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == "approval.approve":
                    return call, element["value"]
    return None


def test_kill_9_between_deregister_and_delete_snapshot_resumes_after_restart(tmp_path, moto_server):
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{moto_server}",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    image_id = ec2.register_image(Name="crash-me", RootDeviceName="/dev/sda1")["ImageId"]
    [snapshot_id] = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image_id])["Images"][0]
                     ["BlockDeviceMappings"] if "Ebs" in m]
    fake = FakeSlack().start()
    proxy = HoldingProxy(moto_server, hold="DeleteSnapshot")
    port = free_port()
    first = serve(tmp_path, fake, proxy.url, port)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        sim.post(sim.command_body(f"deregister {image_id}", "U0OPS", "C0OPS", trigger_id="t.crash.1"))
        message, request_id = wait_until(lambda: approval_post(fake), 30, "the approval message")
        sim.interact(sim.block_actions_payload({"action_id": "approval.approve", "value": request_id}, "U0LEAD",
                                               "C0OPS", message_ts=message.ts))
        assert proxy.held.wait(30), f"DeleteSnapshot never came; AWS saw {proxy.seen}"
        assert "DeregisterImage" in proxy.seen
        first.send_signal(signal.SIGKILL)  # between DeregisterImage and DeleteSnapshot
        first.wait(timeout=10)
        assert not ec2.describe_images(ImageIds=[image_id])["Images"]
        assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]  # the crash left it behind

        proxy.hold = None
        second = serve(tmp_path, fake, proxy.url, port)

        def finished():
            return [c for c in fake.calls_to("chat.postMessage")
                    if c.params.get("thread_ts") == message.ts and "Succeeded" in c.text]
        [report] = wait_until(finished, 30, "the outcome in the thread")
        assert f"Before the restart: deregistered {image_id}" in report.text
        assert f"after: deleted {snapshot_id} (15 GiB)" in report.text
        assert "completed before the bot restarted" not in report.text
        with pytest.raises(ec2.exceptions.ClientError, match="InvalidSnapshot.NotFound"):
            ec2.describe_snapshots(SnapshotIds=[snapshot_id])
        final = wait_until(lambda: [c for c in fake.calls_to("chat.update") if c.params.get("ts") == message.ts
                                    and "done" in c.text], 30, "the message updated to done")[-1]
        assert f"after: deleted {snapshot_id}" in final.text
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
        proxy.close()
        fake.stop()


def stop(*processes) -> None:
    for process in processes:
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def moto_ec2(port: int):
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def thread_outcome(fake: FakeSlack, message_ts: str):
    """The request's outcome line in its thread, whichever it is."""
    return [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == message_ts
            and ("Succeeded:" in c.text or "Failed:" in c.text)]


def test_kill_9_in_a_snapshot_cleanup_finishes_it_and_says_what_was_done_before_and_after(tmp_path, moto_server):
    """Killed after 2 of 3 DeleteSnapshot calls: the restart deletes the third and reports both halves."""
    ec2 = moto_ec2(moto_server)
    snapshots = []
    for size in (8, 9, 10):
        volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=size)["VolumeId"]
        snapshots.append(ec2.create_snapshot(VolumeId=volume, Description="left over")["SnapshotId"])
    fake = FakeSlack().start()
    proxy = HoldingProxy(moto_server, hold="DeleteSnapshot", skip=2)
    port = free_port()
    first = serve(tmp_path, fake, proxy.url, port)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        sim.interact(sim.block_actions_payload({"action_id": "digest.cleanup",
                                                "value": "us-east-1:" + ",".join(snapshots)}, "U0OPS", "C0OPS"))
        message, request_id = wait_until(lambda: approval_post(fake), 30, "the approval message")
        sim.interact(sim.block_actions_payload({"action_id": "approval.approve", "value": request_id}, "U0LEAD",
                                               "C0OPS", message_ts=message.ts))
        assert proxy.held.wait(30), f"the third DeleteSnapshot never came; AWS saw {proxy.seen}"
        first.send_signal(signal.SIGKILL)  # two snapshots deleted, the third one's call never reached AWS
        first.wait(timeout=10)
        left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        assert set(snapshots) & left == {snapshots[2]}

        proxy.hold = None
        second = serve(tmp_path, fake, proxy.url, port)
        [report] = wait_until(lambda: thread_outcome(fake, message.ts), 30, "the outcome in the thread")
        assert "Succeeded" in report.text, report.text
        assert (f"Before the restart: deleted {snapshots[0]} (8 GiB), deleted {snapshots[1]} (9 GiB); "
                f"after: deleted {snapshots[2]} (10 GiB).") in report.text
        assert "may be approved again" not in report.text
        left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        assert not set(snapshots) & left
        audit = sqlite3.connect(tmp_path / "amibot.db").execute(
            "SELECT outcome FROM audit WHERE action = 'request.succeeded' AND target = ?", (request_id,)).fetchall()
        assert len(audit) == 1 and f"after: deleted {snapshots[2]}" in audit[0][0]
    finally:
        stop(first, second)
        proxy.close()
        fake.stop()


class SlackHold:
    """The fake Slack takes the first `method` call whose text has `marker` and never answers it while the bot
    lives: Slack has the message (or view), the bot never learns its ts (or view id)."""

    def __init__(self, fake: FakeSlack, method: str, marker: str, answer):
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.call = None

        def held(call):
            if self.call is None and marker in call.text:
                self.call = call
                self.arrived.set()
                self.release.wait(60)
            return answer(call)

        fake.methods[method] = held


@pytest.mark.parametrize("command", ["create", "copy"])
def test_kill_9_while_posting_a_new_image_still_finishes_its_message(tmp_path, moto_server, command):
    """Killed after Slack accepted the "pending" message, before the bot heard its ts: the restart resumes the
    watch and the channel sees the image's outcome in a message that is finished."""
    ec2 = moto_ec2(moto_server)
    source = ec2.register_image(Name="crash-source", RootDeviceName="/dev/sda1")["ImageId"]
    instance = ec2.run_instances(ImageId=source, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    text = f"create {instance} crash-new" if command == "create" else f"copy {source} eu-west-1 --name crash-new"
    fake = FakeSlack().start()
    hold = SlackHold(fake, "chat.postMessage", "is being created", _message_response)
    port = free_port()
    first = serve(tmp_path, fake, f"http://127.0.0.1:{moto_server}", port)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        sim.post(sim.command_body(text, "U0OPS", "C0OPS"))
        assert hold.arrived.wait(30), "the pending message never came"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        image_id = hold.call.params["text"].split("(")[1].split(")")[0]
        hold.release.set()

        second = serve(tmp_path, fake, f"http://127.0.0.1:{moto_server}", port)

        def finished():
            return [c for c in fake.calls_to("chat.update") if image_id in c.text and "available" in c.text]
        final = wait_until(finished, 30, "the new image's message finished")[-1]
        posted = [c for c in fake.calls_to("chat.postMessage") if c.ts == final.params["ts"]]
        assert posted and "restarted" in posted[0].text, "the finished message must be one the bot posted"
        assert "restarted" in final.text  # it says why there may be an older "pending" message
        wait_until(lambda: "image.watch" in [row[0] for row in sqlite3.connect(tmp_path / "amibot.db").execute(
            "SELECT action FROM audit")], 10, "the watch's audit row")
    finally:
        stop(first, second)
        fake.stop()


def test_kill_9_while_the_launch_form_loads_fills_it_after_the_restart(tmp_path, moto_server):
    """Killed after a Launch button's loading view opened, while the images were listed: the restart replaces the
    loading view with the form (its trigger expired long ago); Slack's retry of that click does nothing more."""
    ec2 = moto_ec2(moto_server)
    image_id = ec2.register_image(Name="launch-me", RootDeviceName="/dev/sda1")["ImageId"]
    fake = FakeSlack().start()
    proxy = HoldingProxy(moto_server, hold=None)
    port = free_port()
    first = serve(tmp_path, fake, proxy.url, port)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        proxy.hold = "DescribeImages"
        click = urllib.parse.urlencode({"payload": json.dumps(sim.block_actions_payload(
            {"action_id": "image.launch", "value": image_id}, "U0OPS", "C0OPS"))})
        assert sim.post(click).status == 200
        assert proxy.held.wait(30), "the form's images were never listed"
        [loading] = fake.calls_to("views.open")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert not fake.calls_to("views.update")

        proxy.hold = None
        fake.fail_next["views.open"] = {"ok": False, "error": "expired_trigger_id"}  # 3 s are long gone
        second = serve(tmp_path, fake, proxy.url, port)
        assert sim.post(click, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}).status == 200

        def form():
            return [c for c in fake.calls_to("views.update") if c.params["view"].get("submit")]
        [update] = wait_until(form, 30, "the launch form in place of the loading view")
        assert update.params.get("external_id") == loading.params["view"]["external_id"]
        initial = [b["element"].get("initial_option") for b in update.params["view"]["blocks"] if b["type"] == "input"]
        assert any(option and option["value"] == f"{image_id}@us-east-1" for option in initial), initial
        time.sleep(1)  # the retried click, had it been taken, would have opened a second form by now
        assert len(form()) == 1 and len(fake.calls_to("views.open")) <= 2
    finally:
        stop(first, second)
        proxy.close()
        fake.stop()


def test_kill_9_before_the_launch_form_opened_tells_the_user_to_click_again(tmp_path, moto_server):
    ec2 = moto_ec2(moto_server)
    image_id = ec2.register_image(Name="launch-me-too", RootDeviceName="/dev/sda1")["ImageId"]
    fake = FakeSlack().start()
    hold = SlackHold(fake, "views.open", "Finding your images", lambda call: {"ok": False, "error": "fatal_error"})
    port = free_port()
    first = serve(tmp_path, fake, f"http://127.0.0.1:{moto_server}", port)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        sim.interact(sim.block_actions_payload({"action_id": "image.launch", "value": image_id}, "U0OPS", "C0OPS"))
        assert hold.arrived.wait(30), "the loading view was never asked for"
        first.send_signal(signal.SIGKILL)  # acked; the view never opened
        first.wait(timeout=10)
        hold.release.set()

        fake.methods.pop("views.open")
        fake.fail_next["views.open"] = {"ok": False, "error": "expired_trigger_id"}
        fake.fail_next["views.update"] = {"ok": False, "error": "not_found"}
        second = serve(tmp_path, fake, f"http://127.0.0.1:{moto_server}", port)
        told = wait_until(lambda: [c for c in fake.calls_to("response_url") if "Launch" in c.text], 30,
                          "the clicker told what happened")
        assert "click" in told[-1].text.lower() and told[-1].params.get("response_type") == "ephemeral"
    finally:
        stop(first, second)
        fake.stop()


# --- in-process: the rows a crash leaves, then a fresh app over the same database ------------------------------

@pytest.fixture
def policy_data():
    return POLICY


def request_of(harness, kind):
    row = harness.ctx.store.one("SELECT id FROM requests WHERE kind = ? ORDER BY created_at DESC", (kind,))
    return approvals.get(harness.ctx, row["id"])


def thread_texts(harness, request):
    return [c.text for c in harness.fake.calls_to("chat.postMessage")
            if c.params.get("thread_ts") == request.message_ts]


def crash_while_executing(harness, request, steps: list[Step]):
    """What a process killed mid-execution leaves: the request executing, its steps as far as they got."""
    harness.ctx.store.execute("UPDATE requests SET state = 'executing' WHERE id = ?", (request.id,))
    planned = Steps(harness.ctx.store, f"request:{request.id}")
    states = [step.state for step in steps]
    planned.plan(steps)
    for step, state in zip(planned.all(), states, strict=True):
        planned.mark(step, state, "done" if state == DONE else None)


def test_deregister_resumed_in_process_reports_before_and_after(make_harness, aws):
    first = make_harness(POLICY)
    image_id = seed.image(aws, "half-gone")
    ec2 = aws.client("ec2")
    [snapshot_id] = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image_id])["Images"][0]
                     ["BlockDeviceMappings"] if "Ebs" in m]
    first.command(f"deregister {image_id}", user="U0OPS")
    request = request_of(first, "deregister")
    crash_while_executing(first, request, [Step("deregister_image", image_id, {"region": "us-east-1"}, DONE),
                                           Step("delete_snapshot", snapshot_id, {"size_gb": 15, "monthly_cost": 0.75}),
                                           Step("delete_snapshot", "snap-0000000000gone0", {"size_gb": 8})])
    ec2.deregister_image(ImageId=image_id)
    first.stop()
    second = make_harness(POLICY)
    second.wait_idle()
    done = approvals.get(second.ctx, request.id)
    assert done.state == "succeeded"
    assert done.outcome == (f"Before the restart: deregistered {image_id}; after: deleted {snapshot_id} (15 GiB), "
                            "snap-0000000000gone0 was already gone.")
    assert not ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"]
    assert any(done.outcome in text for text in thread_texts(second, done))
    assert all(step.state == DONE for step in Steps(second.ctx.store, f"request:{request.id}").all())


def test_share_crash_between_launch_and_snapshot_permission_completes_the_snapshots(make_harness, aws):
    first = make_harness(POLICY)
    image_id = seed.image(aws, "shared-half")
    ec2 = aws.client("ec2")
    [snapshot_id] = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image_id])["Images"][0]
                     ["BlockDeviceMappings"] if "Ebs" in m]
    first.command(f"share {image_id} 210987654321", user="U0OPS")
    request = request_of(first, "share")
    # The launch permission went through; the process died before the snapshot's createVolumePermission.
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": "210987654321"}]})
    crash_while_executing(first, request, [Step("launch_permission", image_id, {}, DONE),
                                           Step("snapshot_permission", snapshot_id)])
    first.stop()
    second = make_harness(POLICY)
    second.wait_idle()
    done = approvals.get(second.ctx, request.id)
    assert done.state == "succeeded", done.outcome
    assert done.outcome.startswith(f"Before the restart: shared {image_id} with account 210987654321; "
                                   f"after: granted createVolumePermission on {snapshot_id}")
    permissions = ec2.describe_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission")
    assert {"UserId": "210987654321"} in permissions["CreateVolumePermissions"]


def test_share_crash_before_anything_reopens_the_request(make_harness, aws):
    first = make_harness(POLICY)
    image_id = seed.image(aws, "shared-none")
    first.command(f"share {image_id} 210987654321", user="U0OPS")
    request = request_of(first, "share")
    crash_while_executing(first, request, [Step("launch_permission", image_id), Step("snapshot_permission", "snap-x")])
    first.stop()
    second = make_harness(POLICY)
    second.wait_idle()
    assert approvals.get(second.ctx, request.id).state == "pending"  # nothing was done: approve again


def test_launch_wait_interrupted_is_resumed_and_the_message_finished(make_harness, aws):
    first = make_harness(POLICY)
    image_id = seed.image(aws, "waited")
    first.command(f"launch {image_id} t3.micro")  # within policy: launched and finished at once
    [started] = [c for c in first.fake.calls_to("chat.postMessage") if "Waiting for them to run" in c.text]
    tags = {}
    instance_id = None
    for reservation in aws.client("ec2").describe_instances(
            Filters=[{"Name": "tag-key", "Values": ["amibot:request"]}])["Reservations"]:
        for instance in reservation["Instances"]:
            instance_id = instance["InstanceId"]
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    owner = f"launch:{tags['amibot:request']}"
    # Make it look as if the process died while waiting: the wait step still planned, the message "Waiting…".
    wait_steps = Steps(first.ctx.store, owner)
    [step] = [s for s in wait_steps.all() if s.action == "wait_running"]
    wait_steps.mark(step, PLANNED, None)
    first.stop()
    before = len(first.fake.calls_to("chat.update"))
    second = make_harness(POLICY)
    second.wait_idle()
    updates = [c for c in second.fake.calls_to("chat.update")[before:] if c.params.get("ts") == started.ts]
    assert updates, "the Waiting… message was left as it was"
    assert "1 instance(s) running" in updates[-1].text and instance_id in updates[-1].text
    assert "after a restart" in updates[-1].text
    assert Steps(second.ctx.store, owner).all()[-1].state == DONE


def test_launch_request_caught_waiting_reports_the_instances(make_harness, aws):
    first = make_harness({**POLICY, "launch": {"allowed_instance_types": ["t3.micro"]}})
    image_id = seed.image(aws, "approved-launch")
    first.command(f"launch {image_id} m5.large", user="U0OPS")
    request = request_of(first, "launch")
    reservation = aws.client("ec2").run_instances(
        ImageId=image_id, InstanceType="m5.large", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "amibot:request", "Value": request.id}]}])
    instance_id = reservation["Instances"][0]["InstanceId"]
    crash_while_executing(first, request, [Step("run_instances", image_id, {"ids": [instance_id]}, DONE),
                                           Step("wait_running", image_id, {"ids": [instance_id]})])
    first.stop()
    second = make_harness(POLICY)
    second.wait_idle()
    done = approvals.get(second.ctx, request.id)
    assert done.state == "succeeded", done.outcome
    assert done.outcome == f"Before the restart: launched {instance_id}; after: 1 running ({instance_id})."


def test_create_watch_always_finishes_its_message(make_harness, aws, monkeypatch):
    """The image watch resumes after a restart; when AWS cannot be read, the message still says so."""
    from bot.core.errors import AwsError
    from handlers.actions import image_buttons

    first = make_harness(POLICY)
    image_id = seed.image(aws, "being-made")
    ts = first.ctx.slack.chat_postMessage(channel="C0OPS", text="pending")["ts"]
    payload = {"image": {"image_id": image_id, "name": "being-made", "region": "us-east-1", "family": "web",
                         "version": None, "source": "i-0123", "user": "U0OPS", "note": None},
               "channel": "C0OPS", "ts": ts, "response_url": None, "deadline": time.time() + 5}
    first.ctx.store.execute("INSERT INTO jobs (kind, payload, state, created_at, updated_at)"
                            " VALUES ('image.watch', ?, 'running', 'x', 'x')", (json.dumps(payload),))
    first.stop()

    def unreadable(*args, **kwargs):
        raise AwsError("the endpoint timed out", "RequestTimeout", "ec2:DescribeImages")

    monkeypatch.setattr(image_buttons, "wait_for_image", unreadable)
    second = make_harness(POLICY)
    second.wait_idle()
    [update] = [c for c in second.fake.calls_to("chat.update") if c.params.get("ts") == ts]
    assert "could not check" in update.text and "the endpoint timed out" in update.text
    assert second.ctx.store.one("SELECT state FROM jobs WHERE kind = 'image.watch' ORDER BY id DESC")["state"] == "done"


def test_kill_9_while_a_bake_copies_its_image_finishes_it_after_the_restart_and_proposes_once(tmp_path, moto_server):
    """A bake from a builder instance, killed while its new image is being copied to copy_to: the restart neither
    bakes again nor copies twice, and asks for the promotion once."""
    ec2 = moto_ec2(moto_server)
    base = ec2.register_image(Name="builder-base", RootDeviceName="/dev/sda1")["ImageId"]
    builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    config = tmp_path / "amibot.toml"
    config.write_text('[aws]\nregions = ["us-east-1", "eu-west-1"]\n[approvals]\napprovers = ["U0LEAD"]\n'
                      f'[[bakes]]\nfamily = "web"\nregion = "us-east-1"\ninstance = "{builder}"\n'
                      'copy_to = ["eu-west-1"]\n')
    fake = FakeSlack().start()
    proxy = HoldingProxy(moto_server, hold="CopyImage")
    port = free_port()
    first = serve(tmp_path, fake, proxy.url, port, config=config)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        sim.post(sim.command_body("bake web", "U0OPS", "C0OPS", trigger_id="t.crash.bake"))
        assert proxy.held.wait(60), f"CopyImage never came; AWS saw {proxy.seen}"
        assert proxy.seen.count("CreateImage") == 1
        first.send_signal(signal.SIGKILL)  # the image is made and tagged; its copy was never sent
        first.wait(timeout=10)

        proxy.hold = None
        second = serve(tmp_path, fake, proxy.url, port, config=config)
        message, _ = wait_until(lambda: approval_post(fake), 60, "the promotion request")
        assert "Promote web" in message.text
        time.sleep(1)  # anything the restart would (wrongly) repeat has had its chance
        assert proxy.seen.count("CreateImage") == 1 and proxy.seen.count("CopyImage") == 1, proxy.seen
        requests = [c for c in fake.calls_to("chat.postMessage") if "Promote web" in c.text]
        assert len(requests) == 1
        copies = moto_ec2_in(moto_server, "eu-west-1").describe_images(Owners=["self"])["Images"]
        assert len(copies) == 1 and {"Key": "Family", "Value": "web"} in copies[0].get("Tags", [])
    finally:
        stop(first, second)
        proxy.close()
        fake.stop()


def moto_ec2_in(port: int, region: str):
    return boto3.client("ec2", region_name=region, endpoint_url=f"http://127.0.0.1:{port}",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class MotoShim:
    """What tests/support/seed needs of a session (``client(service, region)``), on a moto server."""

    def __init__(self, url: str):
        self.url = url

    def client(self, service: str, region: str = "us-east-1"):
        return boto3.client(service, region_name=region, endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing")


@pytest.fixture
def moto_here():
    """moto's server in THIS process (its backends are this process's), so the refresh emulation — on those
    backends — answers what moto lacks behind the proxy, and outlives the `amibot serve` a test kills."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield port
    finally:
        urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
        server.stop()


def test_kill_9_after_a_rollout_started_its_first_group_the_restart_starts_the_others_once_and_watches_all(
        tmp_path, moto_here):
    """Three groups pinned to web-1.4.0; web-1.5.0 current. Approved: web-a's refresh starts, then the process is
    killed while web-b's StartInstanceRefresh is on its way (held: AWS never sees it). The restart starts web-b's and
    web-c's once each, watches all three to the end and says so in the request's thread, once."""
    from bot.devtools.refresh_emulation import RefreshEmulation

    moto = MotoShim(f"http://127.0.0.1:{moto_here}")
    old, new = seed.family(moto, ["1.4.0", "1.5.0"])
    ec2 = moto.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    groups = ("web-a", "web-b", "web-c")
    for name in groups:
        template = ec2.create_launch_template(LaunchTemplateName=f"{name}-lt", LaunchTemplateData={
            "ImageId": old, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        moto.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})
    emulation = RefreshEmulation(step_seconds=0.3)
    fake = FakeSlack().start()
    proxy = HoldingProxy(moto_here, hold="StartInstanceRefresh", skip=1, answer=emulation.answer_http)
    port = free_port()
    first = serve(tmp_path, fake, proxy.url, port)
    second = None
    try:
        sim = SlackClientSim(f"http://127.0.0.1:{port}", SECRET, fake)
        sim.post(sim.command_body("rollout web", "U0OPS", "C0OPS", trigger_id="t.crash.rollout"))
        message, request_id = wait_until(lambda: approval_post(fake), 60, "the rollout request")
        assert "3 groups, 3 instances, 1 account" in message.text
        sim.interact(sim.block_actions_payload({"action_id": "approval.approve", "value": request_id}, "U0LEAD",
                                               "C0OPS", message_ts=message.ts))
        assert proxy.held.wait(60), f"the second StartInstanceRefresh never came; AWS saw {proxy.seen}"
        first.send_signal(signal.SIGKILL)  # web-a's refresh runs; web-b's start never reached AWS
        first.wait(timeout=10)
        assert [len(emulation.refreshes_of("us-east-1", name)) for name in groups] == [1, 0, 0]

        proxy.hold = None
        second = serve(tmp_path, fake, proxy.url, port, quick_watch=True)

        def succeeded():
            return [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == message.ts
                    and "Rollout succeeded" in c.text]
        [report] = wait_until(succeeded, 60, "the rollout's end in its thread")
        assert all(name in report.text for name in groups) and "0 of 3 instances behind web-1.5.0" in report.text
        time.sleep(1)  # anything the restart would (wrongly) repeat has had its chance
        assert [len(emulation.refreshes_of("us-east-1", name)) for name in groups] == [1, 1, 1]  # each started once
        assert proxy.seen.count("StartInstanceRefresh") == 3 and len(succeeded()) == 1
        for name in groups:
            [refresh] = emulation.refreshes_of("us-east-1", name)
            assert refresh.status == "Successful" and refresh.image_id == new
        final = wait_until(lambda: [c for c in fake.calls_to("chat.update") if c.params.get("ts") == message.ts
                                    and "Rollout succeeded" in c.text], 30, "the request's message finished")
        assert "Successful 100 %" in final[-1].text
    finally:
        stop(first, second)
        proxy.close()
        fake.stop()
