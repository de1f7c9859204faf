"""The database cannot be lost quietly (issue 14 §5, issue 12 §4), against the real `amibot serve` process.

Deleted, replaced, truncated or read-only under a running bot: /healthz answers 503 with the reason within
two seconds, new work is refused with a clear answer, the log says why once, and SIGTERM still stops the
process within ten seconds. Read-only commands never create a database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from bot.store import Store, StoreMissing
from tests.test_http_surface import command_body, served  # noqa: F401 (a fixture)

UNAVAILABLE = "amibot's database is unavailable; the operator has been told."


def health(port: int) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, body = error.code, json.loads(error.read())
    return status, body, time.monotonic() - started


def remove_database(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


@contextmanager
def read_only(path):
    """Make the file unwritable, for root too (chattr +i) where we are root."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        os.chmod(path, 0o444)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            os.chmod(path, 0o644)


def test_a_deleted_database_fails_health_and_refuses_new_work(served):  # noqa: F811
    assert health(served.port)[0] == 200
    remove_database(served.db)
    status, body, elapsed = health(served.port)
    assert status == 503 and "is gone" in body["reason"] and elapsed < 2
    time.sleep(1.1)  # past the ack path's one-second stat cache
    for number in range(3):
        request = command_body("list", served.fake, f"t.gone{number}")
        answered, text = served.post(request, served.signed_headers(request))
        assert answered == 200 and json.loads(text)["text"] == UNAVAILABLE
    assert health(served.port)[0] == 503
    assert not served.db.exists()  # nothing recreated it behind our back
    log = served.log.read_text()
    assert log.count("database unavailable") <= 2  # once from the store, once from the health check; not per request
    # No request was answered with a traceback (background workers' own logging is theirs to keep quiet).
    assert "bot/server.py" not in log and "slack_bolt/" not in log and "dbguard" not in log


def test_a_click_on_a_lost_database_is_answered_and_nothing_runs(harness):
    remove_database(harness.ctx.store.path)
    harness.ctx.store.file_problem(max_age=0)
    harness.click("approval.approve", "req-00000000", user="U0LEAD")
    reply = harness.fake.wait_for(lambda call: call.method == "response_url")
    assert reply.text == UNAVAILABLE and reply.params.get("response_type") == "ephemeral"
    answered = harness.command("list")
    assert answered.status == 200 and answered.json()["text"] == UNAVAILABLE
    assert not os.path.exists(harness.ctx.store.path)


def test_a_replaced_database_fails_health(served, tmp_path):  # noqa: F811
    other = tmp_path / "other.db"
    Store(other).close()
    shutil.copy(served.db, other)
    os.replace(other, served.db)
    status, body, _ = health(served.port)
    assert status == 503 and "replaced" in body["reason"]


def test_a_read_only_database_fails_health(served):  # noqa: F811
    with read_only(served.db):
        status, body, elapsed = health(served.port)
    assert status == 503 and "cannot write" in body["reason"] and elapsed < 2
    assert health(served.port)[0] == 200  # writable again: healthy again


def test_a_truncated_database_answers_503_fast_and_sigterm_still_stops(served):  # noqa: F811
    request = command_body("list", served.fake, "t.before")
    assert served.post(request, served.signed_headers(request))[0] == 200
    with open(served.db, "r+b") as file:
        file.truncate(0)
    status, body, elapsed = health(served.port)
    assert status == 503 and "truncated" in body["reason"] and elapsed < 2
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=15)
    assert time.monotonic() - started < 10


def test_store_without_create_never_makes_a_database(tmp_path):
    missing = tmp_path / "nothing.db"
    with pytest.raises(StoreMissing, match="no database at"):
        Store(missing, create=False)
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StoreMissing, match="is empty, not an amibot database"):
        Store(empty, create=False)
    Store(tmp_path / "real.db").close()
    store = Store(tmp_path / "real.db", create=False)
    assert store.schema_version >= 5 and store.one("SELECT count(*) AS n FROM audit")["n"] == 0
    with pytest.raises(Exception, match="readonly"):
        store.execute("INSERT INTO health (one, checked_at) VALUES (2, 'x')")


def audit_cli(path, *args):
    return subprocess.run([sys.executable, "-m", "bot.cli", "audit", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "AMIBOT_DB": str(path)}, cwd=path.parent, timeout=60)


@pytest.mark.parametrize("command", [["verify"], ["export", "--format", "json"]])
def test_read_only_commands_on_a_missing_or_empty_database_say_so(tmp_path, command):
    missing = tmp_path / "amibot.db"
    result = audit_cli(missing, *command)
    assert result.returncode == 1 and result.stderr.strip() == f"amibot: no database at {missing}"
    assert not missing.exists() and not list(tmp_path.glob("amibot.db*"))
    missing.write_bytes(b"")
    result = audit_cli(missing, *command)
    assert result.returncode == 1
    assert result.stderr.strip() == f"amibot: {missing} is empty, not an amibot database"
    missing.write_bytes(b"this is not sqlite at all" * 100)
    result = audit_cli(missing, *command)
    assert result.returncode == 1 and "not a readable amibot database" in result.stderr
    assert "Traceback" not in result.stderr
