"""`amibot serve` and `amibot socket` as a deployer runs them: real processes, real ports, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from slack_sdk.signature import SignatureVerifier

from bot.devtools.fakeslack import FakeSlack, free_port
from tests.support.processes import SECRET, base_env, wait_for


def test_serve_answers_health_and_commands_and_stops_on_sigterm(tmp_path):
    fake = FakeSlack().start()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                               env=base_env(tmp_path, fake), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        status, health = wait_for(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and health["status"] == "ok"
        body = urllib.parse.urlencode({"command": "/ami", "text": "help", "user_id": "U1", "channel_id": "C1",
                                       "trigger_id": "t.1", "response_url": fake.response_url("cli")})
        stamp = str(int(time.time()))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers={
            "X-Slack-Request-Timestamp": stamp, "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "/ami list" in response.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        fake.stop()
    assert process.returncode == 0
    assert "xoxb-cli-test-token" not in output and SECRET not in output  # secrets never logged
    assert "serving on http://127.0.0.1" in output


def test_serve_refuses_to_start_without_its_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_"))}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", "0"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is not set" in result.stderr and "SLACK_SIGNING_SECRET is not set" in result.stderr


def test_socket_mode_needs_an_app_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_"))}
    env["SLACK_BOT_TOKEN"] = "xoxb-1"
    result = subprocess.run([sys.executable, "-m", "bot.cli", "socket"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "SLACK_APP_TOKEN is not set" in result.stderr


def test_a_stopped_server_ends_its_worker_threads(make_harness):
    """The served app's waitress workers end with it: a process that stops and starts the bot (a test run, a
    reload) must not keep every old app alive through idle workers (they held ~18 GB by the end of `make test`)."""
    before = set(threading.enumerate())
    served = make_harness()
    served.command("help")
    started = set(threading.enumerate()) - before
    assert any(thread.name.startswith("waitress") for thread in started)
    served.stop()
    assert [thread.name for thread in started if thread.is_alive()] == []
