"""amibot as a deployer runs it: `python -m bot.cli …` processes with their environment, a served port and
its health, and raw HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.devtools.fakeslack import FakeSlack, free_port

SECRET = "cli-test-signing-secret"


def base_env(tmp_path, fake):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_"))}
    env.update({"SLACK_BOT_TOKEN": "xoxb-cli-test-token", "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake.url, "AMIBOT_DB": str(tmp_path / "cli.db")})
    return env


def wait_for(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@dataclass
class Served:
    process: subprocess.Popen
    port: int
    log: Path
    db: Path
    fake: FakeSlack

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def post(self, body: bytes, headers: dict | None = None, chunked: bool = False) -> tuple[int, bytes]:
        """POST to /slack/events; (status, body). A server that answers and closes before taking the whole
        body (waitress does for an announced body over its own limit) may reset the connection: 0."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest("POST", "/slack/events")
            connection.putheader("Content-Type", "application/x-www-form-urlencoded")
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if chunked:
                connection.putheader("Transfer-Encoding", "chunked")
            else:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            try:
                if chunked:
                    step = 1024 * 1024
                    for start in range(0, len(body), step):
                        piece = body[start:start + step]
                        connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    connection.send(b"0\r\n\r\n")
                else:
                    connection.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early; read what it said
            response = connection.getresponse()
            return response.status, response.read()
        except (BrokenPipeError, ConnectionResetError):
            return 0, b""
        finally:
            connection.close()

    def signed_headers(self, body: bytes, timestamp: str | None = None) -> dict:
        stamp = timestamp or str(int(time.time()))
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body.decode())
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}

    def rows(self, sql: str) -> list[tuple]:
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()


@pytest.fixture
def served(tmp_path):
    fake = FakeSlack().start()
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = base_env(tmp_path, fake)
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1",
                                    "--port", str(port)], env=env, cwd=tmp_path, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    running = Served(process, port, log_path, Path(env["AMIBOT_DB"]), fake)
    try:
        status, _ = wait_for(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        fake.stop()


def command_body(text: str, fake: FakeSlack, trigger: str = "t.1") -> bytes:
    return urllib.parse.urlencode({"command": "/ami", "text": text, "user_id": "U1", "channel_id": "C1",
                                   "trigger_id": trigger, "response_url": fake.response_url(trigger)}).encode()


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)
