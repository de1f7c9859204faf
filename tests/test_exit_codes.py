"""Every exit code the docs (README.md and docs/*.md) document, from the real `amibot` process (issue 19 §7).

One row per documented code: the docs' own words, the command line, what makes it happen, the status and a
fragment of what the operator reads. test_every_exit_the_readme_mentions_is_in_the_table fails when the docs
say something about an exit code that no row holds. The benchmark scripts' own exit codes are documented with
them, in bench/README.md, which is not `amibot`'s and not read here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from bot.devtools.fakeslack import FakeSlack, free_port
from bot.durable import anchors, audit
from bot.durable.store import Store

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # where the README's sections moved (issue 20 §5)
BUCKET = "amibot-exit-codes"
NON_ZERO = "non-zero"


@dataclass
class World:
    """What a row may use: its own directory, a moto server with an Object Lock bucket, a fake Slack Web API."""

    tmp: Path
    moto: str
    fake: FakeSlack

    @property
    def db(self) -> Path:
        return self.tmp / "amibot.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_"))}
        env.update({"SLACK_BOT_TOKEN": "xoxb-exit-codes", "SLACK_SIGNING_SECRET": "exit-codes-secret",
                    "SLACK_APP_TOKEN": "xapp-exit-codes", "SLACK_API_URL": self.fake.url, "AMIBOT_DB": str(self.db),
                    "AWS_ENDPOINT_URL": self.moto, "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def config(self, text: str) -> dict[str, str]:
        path = self.tmp / "amibot.toml"
        path.write_text(text)
        return {"AMIBOT_CONFIG": str(path)}

    def trail(self, rows: int = 3) -> Store:
        store = Store(self.db)
        for number in range(rows):
            audit.record(store, actor=f"U0{number}", action="command.list", outcome="ok")
        return store


# --- what makes each documented code happen -------------------------------------------------------------------

def intact_trail(world: World) -> dict:
    world.trail().close()
    return {}


def edited_row(world: World) -> dict:
    store = world.trail()
    store.execute("UPDATE audit SET outcome = 'edited' WHERE id = 2")
    store.close()
    return {}


def rewound_from_its_anchor(world: World) -> dict:
    store = world.trail()
    anchor = anchors.current(store)
    store.execute("DELETE FROM audit WHERE id = 3")
    store.execute("UPDATE audit_head SET last_id = 2, last_hash = (SELECT hash FROM audit WHERE id = 2)")
    store.close()
    return {"args": ("--anchor", f"{anchor.count}:{anchor.head}")}


def no_database(world: World) -> dict:
    return {}


def empty_file(world: World) -> dict:
    world.db.write_bytes(b"")
    return {}


def lost_database_with_anchors(world: World) -> dict:
    """The bucket shows a trail of 3 rows; the database is gone."""
    old = World(world.tmp / "old", world.moto, world.fake)
    old.tmp.mkdir()
    anchor = anchors.current(old.trail(), at="2026-12-01T00:00:00Z")
    s3 = boto3.client("s3", endpoint_url=world.moto, region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key=anchors.object_key(anchor), Body=json.dumps(anchor.document()).encode(),
                  ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1))
    return {"env": world.config(f'[aws]\nregions = ["us-east-1"]\n\n[audit]\nanchor_bucket = "{BUCKET}"\n')}


def lost_database_logging_json(world: World) -> dict:
    prepared = lost_database_with_anchors(world)
    return {"env": {**prepared["env"], "AMIBOT_LOG_FORMAT": "json"}}


def region_unreachable(world: World) -> dict:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    return {"env": {**world.config('[aws]\nregions = ["us-east-1"]\n'), "AWS_ENDPOINT_URL": closed}}


def account_without_its_role(world: World) -> dict:
    """An [[accounts]] entry without role_arn must be the bot's own account (moto's is 123456789012)."""
    return {"env": world.config('[aws]\nregions = ["us-east-1"]\n\n[[accounts]]\nid = "111111111111"\n'
                                'name = "prod"\n')}


def failing_script_step(world: World) -> dict:
    script = world.tmp / "broken.txt"
    script.write_text(":expect something the demo never shows\n")
    return {"args": (str(script),)}


def slack_refuses_the_token(world: World) -> dict:
    world.fake.fail_next["auth.test"] = {"ok": False, "error": "invalid_auth"}
    return {}


def slack_unreachable(world: World) -> dict:
    return {"env": {"SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/"}}


def port_taken(world: World) -> dict:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return {"args": (str(taken.getsockname()[1]),), "hold": taken}


def backup_nowhere(world: World) -> dict:
    world.trail().close()
    return {"args": (str(world.tmp / "nowhere" / "copy.db"),)}


def before_an_upgrade(world: World) -> dict:
    """A file as a build from before the last migrations left it: the numbered ones up to 10."""
    import sqlite3
    from contextlib import closing

    from bot.durable.store import MIGRATIONS, _statements

    with closing(sqlite3.connect(world.db, isolation_level=None)) as connection:
        for migration in MIGRATIONS:
            if migration.version and migration.version <= 10:
                for statement in _statements(migration.change):
                    connection.execute(statement)
        connection.execute("PRAGMA user_version = 10")
    return {}


@dataclass(frozen=True)
class Case:
    readme: str  # the docs' words about the code (whitespace as in one line)
    command: tuple[str, ...]  # `amibot` arguments; the setup may add more
    setup: Callable[[World], dict]
    status: int | str  # NON_ZERO where the docs say only that
    says: str  # what the operator reads (stderr, or stdout on success)


CASES = {
    "verify: intact": Case("amibot audit verify # exit 0 and the head hash", ("audit", "verify"),
                           intact_trail, 0, "audit trail intact: 3 rows, head "),
    "verify: an edited row": Case("exit 1 naming the first bad row", ("audit", "verify"), edited_row, 1,
                                  "audit trail broken at row 2"),
    "verify: rewound from its anchor": Case("it fails, exit 1 with one line for each anchor it does not match",
                                            ("audit", "verify"), rewound_from_its_anchor, 1,
                                            "audit trail does not match the anchor (3 rows"),
    "verify: no database": Case("`audit verify` on a missing path or an empty file exits 1 saying \"no database at "
                                "PATH\"", ("audit", "verify"), no_database, 1, "amibot: no database at "),
    "verify: an empty file": Case("empty file exits 1 saying \"no database at PATH\" / \"PATH is empty, not an "
                                  "amibot database\"", ("audit", "verify"), empty_file, 1,
                                  "is empty, not an amibot database"),
    "serve: a lost database": Case("At start, `serve` and `socket` refuse (one line, exit 2)",
                                   ("serve", "--host", "127.0.0.1", "--port", "0"), lost_database_with_anchors, 2,
                                   "show a trail of 3 rows"),
    "serve: a lost database, JSON logs": Case("At start, `serve` and `socket` refuse (one line, exit 2)",
                                              ("serve", "--port", "0"), lost_database_logging_json, 2,
                                              '"level": "ERROR"'),
    "socket: a lost database": Case("At start, `serve` and `socket` refuse (one line, exit 2)", ("socket",),
                                    lost_database_with_anchors, 2, "--new-database"),
    "digest: a region not checked": Case("it exits 1 if a region could not be checked", ("digest", "--dry-run"),
                                         region_unreachable, 1, "amibot: us-east-1 was not checked"),
    "check-config --aws: an account fails": Case("and exits 1 if any account (or the organisation's listing) fails",
                                                 ("check-config", "--aws"), account_without_its_role, 1,
                                                 "prod (111111111111): no role_arn"),
    "backup: a destination it cannot write to": Case("A destination it cannot write to is one line and exit 1",
                                                     ("backup",), backup_nowhere, 1, "does not exist"),
    "migrate --check: up to date": Case("`amibot migrate --check` exits 0 when the database has every migration",
                                        ("migrate", "--check"), intact_trail, 0, "is up to date"),
    "migrate --check: an upgrade pending": Case("and 1 listing the ones it lacks", ("migrate", "--check"),
                                                before_an_upgrade, 1, "0015_write_generation: "),
    "demo --script: a step fails": Case("exits 1 at the first step that fails", ("demo", "--script"),
                                        failing_script_step, 1, "expected the last output to contain"),
    "serve: Slack refuses the token": Case("a token Slack refuses, Slack unreachable, the port taken — is one line "
                                           "on stderr and a non-zero exit", ("serve", "--port", "0"),
                                           slack_refuses_the_token, NON_ZERO, "Slack refused SLACK_BOT_TOKEN"),
    "serve: Slack unreachable": Case("a token Slack refuses, Slack unreachable, the port taken — is one line on "
                                     "stderr and a non-zero exit", ("serve", "--port", "0"), slack_unreachable,
                                     NON_ZERO, "cannot reach Slack at"),
    "serve: the port taken": Case("a token Slack refuses, Slack unreachable, the port taken — is one line on stderr "
                                  "and a non-zero exit", ("serve", "--host", "127.0.0.1", "--port"), port_taken,
                                  NON_ZERO, "cannot listen on 127.0.0.1:"),
    "socket: the metrics port taken": Case("A port already in use is one line and a non-zero exit",
                                           ("socket", "--metrics-port"), port_taken, NON_ZERO,
                                           "cannot serve metrics on 127.0.0.1:"),
}


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
            s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def world(tmp_path, moto):
    fake = FakeSlack().start()
    yield World(tmp_path, moto, fake)
    fake.stop()


@pytest.mark.parametrize("name", CASES)
def test_each_documented_exit_code(world, name):
    case = CASES[name]
    prepared = case.setup(world)
    try:
        result = subprocess.run([sys.executable, "-m", "bot.cli", *case.command, *prepared.get("args", ())],
                                env=world.env(**prepared.get("env", {})), cwd=world.tmp, capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        if prepared.get("hold"):
            prepared["hold"].close()
    if case.status == NON_ZERO:
        assert result.returncode != 0, result.stderr[-2000:]
    else:
        assert result.returncode == case.status, result.stderr[-2000:]
    assert case.says in result.stdout + result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_exit_the_readme_mentions_is_in_the_table():
    readme = flat("\n\n".join(path.read_text() for path in DOCS))
    quotes = [flat(case.readme) for case in CASES.values()]
    covered = []
    for quote in quotes:
        where = [match.start() for match in re.finditer(re.escape(quote), readme)]
        assert where, f"README.md and docs/ no longer say: {quote!r}"
        covered += [range(start, start + len(quote)) for start in where]
    for mention in re.finditer(r"\bexit", readme, re.IGNORECASE):
        assert any(mention.start() in span for span in covered), \
            f"an exit code the table does not check: …{readme[mention.start() - 120:mention.end() + 60]}…"
