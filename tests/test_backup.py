"""Operating amibot (issue 21 §6): `amibot backup` copies a live database consistently to a file or S3, a restored
copy verifies against the audit anchors, the daily backup runs once for two processes on one file, `amibot
migrate --check` says what an upgrade would apply and changes nothing, and a pip user's `amibot demo` is told
what to install. Through real `amibot` processes, as an operator runs them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.devtools.fakeslack import FakeSlack, free_port
from bot.durable import anchors, audit
from bot.durable.store import MIGRATIONS, Store, _statements
from tests.support.processes import SECRET, base_env, wait_for

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "amibot-backups"
ANCHORS = "amibot-backup-anchors"


def amibot(*args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def printed_anchor(output: str) -> str:
    return re.search(r"audit verify --anchor (\d+:[0-9a-f]{64})", output).group(1)


def start_serve(tmp_path: Path, fake: FakeSlack, name: str, **extra: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    env = {**base_env(tmp_path, fake), **extra}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    return process, port, log


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def send_command(port: int, fake: FakeSlack, text: str, trigger: str) -> int:
    body = urllib.parse.urlencode({"command": "/ami", "text": text, "user_id": "U1", "channel_id": "C1",
                                   "trigger_id": trigger, "response_url": fake.response_url(trigger)})
    stamp = str(int(time.time()))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers={
        "X-Slack-Request-Timestamp": stamp, "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


@pytest.fixture
def fake():
    running = FakeSlack().start()
    yield running
    running.stop()


# --- amibot backup to a file, while the bot writes -------------------------------------------------------------

def test_a_backup_taken_while_the_bot_writes_is_whole_and_verifies_against_the_anchors(tmp_path, fake):
    process, port, log = start_serve(tmp_path, fake, "serve")
    db = tmp_path / "cli.db"
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz")[0] == 200
        live = Store(db)  # a second writer on the same file: the audit trail grows throughout the backup
        for number in range(20):
            audit.record(live, actor="U1", action="command.list", outcome="ok", detail={"n": number})
        before = anchors.current(live)  # an anchor published before the backup: a restore must contain it
        writing = threading.Event()

        def write() -> None:
            number = 0
            while not writing.is_set():
                audit.record(live, actor="U2", action="command.show", outcome="ok", detail={"n": number})
                number += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            for number in range(5):  # the bot itself writes too: jobs, request keys
                assert send_command(port, fake, "requests", f"t.backup.{number}") == 200
            copy = tmp_path / "copy.db"
            result = amibot("backup", str(copy), env=base_env(tmp_path, fake), cwd=tmp_path)
        finally:
            writing.set()
            writer.join(30)
        assert result.returncode == 0, result.stderr
        assert f"backed up to {copy}" in result.stdout
        assert integrity(copy) == "ok"
        assert not Path(f"{copy}-wal").exists()  # one self-contained file
        restored = {**base_env(tmp_path, fake), "AMIBOT_DB": str(copy)}
        for anchor in (f"{before.count}:{before.head}", printed_anchor(result.stdout)):
            verified = amibot("audit", "verify", "--anchor", anchor, env=restored, cwd=tmp_path)
            assert verified.returncode == 0, verified.stderr
            assert "audit trail intact" in verified.stdout and "contains the anchor" in verified.stdout
        assert audit.count(live) > audit.count(Store(copy, create=False))  # the bot went on writing meanwhile
        live.close()
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()


def test_a_backup_to_a_folder_that_does_not_exist_is_one_line(tmp_path, fake):
    Store(tmp_path / "cli.db").close()
    result = amibot("backup", str(tmp_path / "nowhere" / "copy.db"), env=base_env(tmp_path, fake), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"amibot: backup: {tmp_path / 'nowhere'} does not exist"


def test_a_backup_onto_the_database_itself_is_refused(tmp_path, fake):
    db = tmp_path / "cli.db"
    Store(db).close()
    before = sha256(db)
    result = amibot("backup", "./cli.db", env=base_env(tmp_path, fake), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "amibot: backup: ./cli.db is the database itself: give another file"
    assert sha256(db) == before


# --- to S3, and a restore guarded by the anchors ---------------------------------------------------------------

@pytest.fixture(scope="module")
def moto():
    port = free_port()
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    deadline = time.monotonic() + 30
    while True:
        try:
            s3.create_bucket(Bucket=BUCKET)
            s3.create_bucket(Bucket=ANCHORS, ObjectLockEnabledForBucket=True)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_a_backup_to_s3_restores_and_verifies_against_the_bucket_of_anchors(tmp_path, fake, moto):
    config = tmp_path / "amibot.toml"
    config.write_text(f'[aws]\nregions = ["us-east-1"]\n\n[audit]\nanchor_bucket = "{ANCHORS}"\n')
    env = {**base_env(tmp_path, fake), "AWS_ENDPOINT_URL": moto, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AMIBOT_CONFIG": str(config)}
    db = tmp_path / "cli.db"
    live = Store(db)
    for number in range(7):
        audit.record(live, actor="U1", action="command.list", outcome="ok", detail={"n": number})
    anchor = anchors.current(live)
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    s3.put_object(Bucket=ANCHORS, Key=anchors.object_key(anchor), Body=json.dumps(anchor.document()).encode(),
                  ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1))
    live.close()

    result = amibot("backup", f"s3://{BUCKET}/nightly/amibot.db", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"backed up to s3://{BUCKET}/nightly/amibot.db" in result.stdout

    for name in ("cli.db", "cli.db-wal", "cli.db-shm"):  # the disk is lost
        (tmp_path / name).unlink(missing_ok=True)
    refused = amibot("serve", "--host", "127.0.0.1", "--port", "0", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "show a trail of 7 rows" in refused.stderr  # not silently a new database

    db.write_bytes(s3.get_object(Bucket=BUCKET, Key="nightly/amibot.db")["Body"].read())  # the restore
    assert integrity(db) == "ok"
    verified = amibot("audit", "verify", env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert f"contains the {anchor.describe()} from s3://{ANCHORS}" in verified.stdout


# --- the daily backup: two processes on one database back up once ---------------------------------------------

def test_two_processes_on_one_database_both_answer_commands_and_make_one_daily_backup(tmp_path, fake):
    folder = tmp_path / "backups"
    folder.mkdir()
    config = tmp_path / "amibot.toml"
    config.write_text(f'[backup]\ndestination = "{folder}/amibot-{{date}}.db"\nat = "00:00"\n')
    both = [start_serve(tmp_path, fake, name, AMIBOT_CONFIG=str(config)) for name in ("first", "second")]
    try:
        for _, port, _ in both:
            assert wait_for(f"http://127.0.0.1:{port}/healthz")[0] == 200
        for index, (_, port, _) in enumerate(both):
            for number in range(3):
                assert send_command(port, fake, "requests", f"t.{index}.{number}") == 200
        answered = {call.path.rsplit("/", 1)[-1] for call in
                    [fake.wait_for(lambda call, key=f"t.{index}.{number}": call.path.endswith(f"/{key}"))
                     for index in range(2) for number in range(3)]}
        assert len(answered) == 6
        assert len(fake.calls_to("response_url")) == 6  # each command answered once, by the process it reached
    finally:
        for process, _, _ in both:
            stop(process)
    [made] = list(folder.iterdir())  # one copy, whichever process claimed the day
    day = made.name.removeprefix("amibot-").removesuffix(".db")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) and integrity(made) == "ok"
    logs = "".join(log.read_text() for _, _, log in both)
    assert logs.count("daily backed up to") == 1, logs
    assert "Traceback" not in logs
    with closing(sqlite3.connect(tmp_path / "cli.db")) as connection:
        assert connection.execute("SELECT date, outcome FROM backup_days").fetchall() == [(day, "ok")]


# --- amibot migrate --check ------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migrate_check_lists_what_an_upgrade_would_apply_and_changes_nothing(tmp_path, fake):
    old = tmp_path / "cli.db"
    with closing(sqlite3.connect(old, isolation_level=None)) as connection:  # as a build from before names left it
        for migration in MIGRATIONS:
            if migration.version and migration.version <= 10:
                for statement in _statements(migration.change):
                    connection.execute(statement)
        connection.execute("PRAGMA user_version = 10")
    before = sha256(old)
    result = amibot("migrate", "--check", env=base_env(tmp_path, fake), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lacking = [migration for migration in MIGRATIONS if (migration.version or 99) > 10]
    assert f"lacks {len(lacking)} migration(s)" in result.stdout
    for migration in lacking:
        assert f"  {migration.name}: {migration.title}" in result.stdout
    assert "0001_audit_slack_requests_jobs" not in result.stdout
    assert sha256(old) == before

    applied = amibot("migrate", env=base_env(tmp_path, fake), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert [f"applied {migration.name}" for migration in lacking] == applied.stdout.splitlines()[:-1]
    again = amibot("migrate", "--check", env=base_env(tmp_path, fake), cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.strip() == f"{old} is up to date: all {len(MIGRATIONS)} migrations applied, nothing to do"


def test_a_start_on_an_older_database_logs_the_migrations_it_applies(tmp_path, caplog):
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old, isolation_level=None)) as connection:
        for migration in MIGRATIONS:
            if migration.version and migration.version <= 14:
                for statement in _statements(migration.change):
                    connection.execute(statement)
        connection.execute("PRAGMA user_version = 14")
    caplog.set_level("INFO", logger="bot.durable.store")
    Store(old).close()
    lacking = [migration.name for migration in MIGRATIONS if (migration.version or 99) > 14]
    assert f"database {old}: applied {len(lacking)} migration(s): {', '.join(lacking)}" in caplog.text
    caplog.clear()
    Store(old).close()
    assert "applied" not in caplog.text  # nothing to do: nothing said


# --- a pip user's demo -----------------------------------------------------------------------------------------

def test_the_demo_without_moto_tells_a_pip_user_what_to_install(tmp_path):
    """As after `pip install amibot` without extras: moto cannot be imported."""
    code = "import sys; sys.modules['moto'] = None; from bot.cli import main; sys.exit(main(['demo', '--script', " \
           "'lifecycle']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = re.search(r"pip install 'amibot\[(\w+)\]'", result.stderr)
    assert named, result.stderr
    assert any(requirement.startswith("moto") for requirement in extras[named.group(1)])
    assert "make demo" not in result.stderr.split("(")[0]  # a pip user has no Makefile: that is for a clone


# --- the daily backup's schedule and a failed one ----------------------------------------------------------------

def test_the_daily_backup_runs_at_its_time_and_a_failed_one_gives_its_claim_back(make_harness, tmp_path, caplog):
    from bot import wiring
    from bot.durable import backup

    folder = tmp_path / "later"
    early = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # before [backup].at: the start does not back up
    running = make_harness({"aws": {"regions": ["us-east-1"]},
                            "backup": {"destination": f"{folder}/amibot-{{date}}.db", "at": "04:30"}},
                           clock=lambda: early)
    job = wiring.build_scheduler(running.ctx).get_job("backup.daily")
    assert job.trigger.get_next_fire_time(None, early) == early.replace(hour=4, minute=30)
    assert running.ctx.store.query("SELECT * FROM backup_days") == []

    outcome = backup.daily(running.ctx)  # the folder does not exist yet
    assert outcome == f"failed: {folder} does not exist"
    assert f"the daily backup to {folder}/amibot-2026-12-07.db failed" in caplog.text
    assert running.ctx.store.query("SELECT * FROM backup_days") == []  # tried again later, not lost for the day

    folder.mkdir()
    assert backup.daily(running.ctx).startswith(f"backed up to {folder}/amibot-2026-12-07.db")
    assert backup.daily(running.ctx) is None  # once a day
    assert integrity(folder / "amibot-2026-12-07.db") == "ok"


def test_no_destination_means_no_daily_backup(harness):
    from bot import wiring

    assert wiring.build_scheduler(harness.ctx).get_job("backup.daily") is None
