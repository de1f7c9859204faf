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
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing, contextmanager

import pytest

from bot.durable.store import Store, StoreMissing
from tests.support.processes import command_body

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


def test_a_deleted_database_fails_health_and_refuses_new_work(served):
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
    assert "bot/slack/server.py" not in log and "slack_bolt/" not in log and "dbguard" not in log


def test_a_click_on_a_lost_database_is_answered_and_nothing_runs(harness):
    remove_database(harness.ctx.store.path)
    harness.ctx.store.file_problem(max_age=0)
    harness.click("approval.approve", "req-00000000", user="U0LEAD")
    reply = harness.fake.wait_for(lambda call: call.method == "response_url")
    assert reply.text == UNAVAILABLE and reply.params.get("response_type") == "ephemeral"
    answered = harness.command("list")
    assert answered.status == 200 and answered.json()["text"] == UNAVAILABLE
    assert not os.path.exists(harness.ctx.store.path)


def test_a_replaced_database_fails_health(served, tmp_path):
    other = tmp_path / "other.db"
    Store(other).close()
    shutil.copy(served.db, other)
    os.replace(other, served.db)
    status, body, _ = health(served.port)
    assert status == 503 and "replaced" in body["reason"]


def test_a_read_only_database_fails_health(served):
    with read_only(served.db):
        status, body, elapsed = health(served.port)
    assert status == 503 and "cannot write" in body["reason"] and elapsed < 2
    assert health(served.port)[0] == 200  # writable again: healthy again


def test_a_truncated_database_answers_503_fast_and_sigterm_still_stops(served):
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


# --- damaged in place: corrupt, an older copy, not writable (issue 19 §5) ---------------------------------

def audit_rows(path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT count(*) FROM audit").fetchone()[0]


def harness_port(harness) -> int:
    return int(harness.url.rsplit(":", 1)[1])


def checkpoint(path) -> None:
    """Move everything in the WAL into the file and empty the WAL, as SQLite does by itself from time to time."""
    with closing(sqlite3.connect(path)) as connection:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0


def copy_of(path, to) -> None:
    """A consistent copy of the live database (SQLite's online backup, what a nightly backup job makes)."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(to)) as target:
        source.backup(target)


@contextmanager
def damaged(how: str, path, older):
    checkpoint(path)
    if how == "truncated":
        size = os.path.getsize(path)
        with open(path, "r+b") as file:
            file.truncate(size // 2)
        yield
    elif how == "older copy":
        inode = os.stat(path).st_ino
        shutil.copyfile(older, path)  # written in place, like `cp backup amibot.db`
        assert os.stat(path).st_ino == inode
        yield
    else:
        with read_only(path):
            yield


@pytest.mark.parametrize("how", ["truncated", "older copy", "read-only"])
def test_a_damaged_database_refuses_commands_and_clicks_and_fails_health(harness, tmp_path, how):
    path = harness.ctx.store.path
    for number in range(4):
        harness.command("help", user=f"U0{number}")
    copy_of(path, tmp_path / "older.db")
    for number in range(4):
        harness.command("help", user=f"U1{number}")
    assert audit_rows(path) == 8
    with damaged(how, path, tmp_path / "older.db"):
        status, body, _ = health(harness_port(harness))
        assert status == 503, body
        assert {"truncated": "damaged", "older copy": "older", "read-only": "read-only"}[how] in body["reason"]
        answered = harness.command("list", wait=False)  # the answer is the ack: nothing is left to wait for
        assert answered.status == 200 and answered.json()["text"] == UNAVAILABLE
        harness.click("approval.approve", "req-00000000", user="U0LEAD", wait=False)
        reply = harness.fake.wait_for(lambda call: call.method == "response_url" and call.text == UNAVAILABLE)
        assert reply.text == UNAVAILABLE and reply.params.get("response_type") == "ephemeral"
        if how == "read-only":
            assert audit_rows(path) == 8  # nothing was recorded, so nothing ran


def test_a_database_truncated_to_half_is_noticed_by_serve_and_nothing_logs_a_traceback(served):
    for number in range(5):
        request = command_body("help", served.fake, f"t.half{number}")
        assert served.post(request, served.signed_headers(request))[0] == 200
    time.sleep(0.5)  # the commands' jobs are done and their messages delivered
    checkpoint(served.db)
    with open(served.db, "r+b") as file:
        file.truncate(os.path.getsize(served.db) // 2)
    status, body, elapsed = health(served.port)
    assert status == 503 and "damaged" in body["reason"] and elapsed < 2
    time.sleep(1.1)  # the outbox's worker and the ack path look again
    request = command_body("list", served.fake, "t.half-after")
    answered, text = served.post(request, served.signed_headers(request))
    assert answered == 200 and json.loads(text)["text"] == UNAVAILABLE
    log = served.log.read_text()
    assert "Traceback" not in log, log
    assert log.count("database unavailable: the database file") == 1  # the store's one line, said once


def test_an_older_copy_is_noticed_while_newer_pages_are_still_in_the_write_ahead_log(harness, tmp_path):
    """SQLite reads recently written pages from the -wal file, whatever the main file holds: only the main file's
    own header shows that it went back (a day-old backup is older than the last checkpoint)."""
    path = harness.ctx.store.path
    harness.command("help")
    copy_of(path, tmp_path / "older.db")
    for number in range(10):  # the trail grows by pages, which SQLite then writes back into the file
        harness.command(f"help {'x' * 1500}", user=f"U0{number}")
    checkpoint(path)
    harness.command("help")  # the newest pages are in the log again
    port = harness_port(harness)
    assert health(port)[0] == 200  # a load balancer's probe (or a request a second later) has seen the file since
    shutil.copyfile(tmp_path / "older.db", path)
    status, body, _ = health(port)
    assert status == 503 and "older" in body["reason"] and "header" in body["reason"], body
    answered = harness.command("list", wait=False)
    assert answered.json()["text"] == UNAVAILABLE


def test_a_write_onto_an_older_copy_is_rolled_back(tmp_path):
    """Between two looks at the file (a second apart) a write may still come: it finds the generation lower than
    the one it already wrote, and nothing is written on top of the older copy."""
    from bot.durable import audit
    from bot.durable.store import DatabaseWentBack

    store = Store(tmp_path / "amibot.db")
    audit.record(store, actor="U0", action="command.help", outcome="ok")
    copy_of(store.path, tmp_path / "older.db")
    for _ in range(3):
        audit.record(store, actor="U0", action="command.help", outcome="ok")
    checkpoint(store.path)
    shutil.copyfile(tmp_path / "older.db", store.path)
    with pytest.raises(DatabaseWentBack, match="older than what amibot already wrote"):
        audit.record(store, actor="U0", action="command.list", outcome="ok")
    assert audit_rows(store.path) == 1
    assert "older" in store.file_problem()
    store.close()
