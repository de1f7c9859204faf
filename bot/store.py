"""The SQLite store: the one module that owns the schema and its migrations.

WAL mode, one connection per thread (sqlite3 connections must not be shared across threads while
in use), a busy timeout so two processes on one file wait instead of failing, and
``transaction()`` that takes the write lock up front (BEGIN IMMEDIATE) so read-then-write sequences
such as appending to the audit hash chain are serialised across threads *and* processes.

Migrations are numbered and applied in order at start; ``PRAGMA user_version`` records the last one.
Add a migration by appending to MIGRATIONS — never edit one that has shipped.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "audit trail, Slack request de-duplication, durable jobs", """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            actor TEXT NOT NULL,
            channel TEXT,
            action TEXT NOT NULL,
            target TEXT,
            detail TEXT NOT NULL DEFAULT '{}',
            outcome TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_target ON audit(target);
        CREATE INDEX audit_ts ON audit(ts);
        -- The head pins the chain's last row, so deleting rows from the end is detected too.
        CREATE TABLE audit_head (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            last_id INTEGER NOT NULL,
            last_hash TEXT NOT NULL
        );
        CREATE TABLE slack_requests (
            key TEXT PRIMARY KEY,
            received_at TEXT NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,          -- queued | running | done | failed | interrupted
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            error TEXT,
            dedupe_key TEXT UNIQUE        -- e.g. the Slack trigger_id: a retried or replayed request adds nothing
        );
        CREATE INDEX jobs_state ON jobs(state);
    """),
    (2, "approval requests and the approvals given", """
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,            -- req-<hex>
            kind TEXT NOT NULL,             -- deregister, share, launch, snapshot-cleanup, …
            params TEXT NOT NULL,           -- JSON, what execute() needs
            title TEXT NOT NULL,
            details TEXT NOT NULL,          -- JSON Block Kit blocks: what will happen, the blast radius
            reason TEXT,                    -- why approval is needed
            danger INTEGER NOT NULL DEFAULT 0,
            requester TEXT NOT NULL,
            channel TEXT NOT NULL,
            message_ts TEXT,
            state TEXT NOT NULL,            -- pending approved rejected expired cancelled executing succeeded failed
            required INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT,
            note TEXT,                      -- rejection reason, failure note
            reminded_at TEXT,
            outcome TEXT
        );
        CREATE INDEX requests_state ON requests(state);
        CREATE TABLE approvals (
            request_id TEXT NOT NULL REFERENCES requests(id),
            approver TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (request_id, approver)
        );
    """),
    (3, "daily digest runs (claimed once per day and channel) and snoozed images", """
        -- The primary key is the claim: INSERT OR IGNORE before posting, so a restart or a second
        -- process sharing this file never posts the same day's digest twice.
        CREATE TABLE digest_runs (
            date TEXT NOT NULL,             -- the day in [digest].timezone, YYYY-MM-DD
            channel TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            message_ts TEXT,
            outcome TEXT,
            PRIMARY KEY (date, channel)
        );
        CREATE TABLE snoozes (
            image_id TEXT PRIMARY KEY,
            until TEXT NOT NULL,            -- UTC, ISO; the image stays out of digests until then
            by TEXT NOT NULL,
            at TEXT NOT NULL
        );
    """),
    (4, "promotion history per image family and region (for rollback)", """
        CREATE TABLE promotions (
            id INTEGER PRIMARY KEY,
            family TEXT NOT NULL,
            region TEXT NOT NULL,
            image_id TEXT NOT NULL,
            promoted_by TEXT NOT NULL,
            promoted_at TEXT NOT NULL,
            previous_image_id TEXT,         -- what was current before; rollback returns to it
            rolled_back_at TEXT,            -- set when a rollback undid this promotion
            rolled_back_by TEXT
        );
        CREATE INDEX promotions_family ON promotions(family, region, id);
    """),
    (5, "a health row the health check writes, and audit anchors (the chain's head kept outside the file)", """
        -- /healthz proves it can write by updating this one row in a short transaction.
        CREATE TABLE health (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            checked_at TEXT NOT NULL
        );
        INSERT INTO health (one, checked_at) VALUES (1, '');
        -- Every anchor written (row count and head hash at a time) and where it went.
        CREATE TABLE anchors (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            count INTEGER NOT NULL,
            last_id INTEGER NOT NULL,
            head TEXT NOT NULL,
            reason TEXT NOT NULL,
            places TEXT NOT NULL DEFAULT '{}'   -- JSON {place: "ok" | error}
        );
        -- The daily anchor is claimed once per UTC day, like the digest.
        CREATE TABLE anchor_days (
            date TEXT PRIMARY KEY,
            claimed_at TEXT NOT NULL
        );
    """),
    (6, "durable steps of multi-step actions, and the outbox of messages owed to Slack", """
        -- One row per step of a multi-step action (deregister + delete each snapshot, share + snapshot
        -- permissions, launch + wait): written before the step runs, updated with what AWS said, so a
        -- restart knows what was done and finishes what was not.
        CREATE TABLE steps (
            owner TEXT NOT NULL,            -- what the steps belong to: request:<id>, launch:<ref>
            seq INTEGER NOT NULL,
            action TEXT NOT NULL,           -- deregister_image, delete_snapshot, launch_permission, …
            target TEXT NOT NULL,           -- the resource: ami-…, snap-…, i-…
            data TEXT NOT NULL DEFAULT '{}',  -- JSON: what resuming or reporting the step needs
            state TEXT NOT NULL,            -- planned | done | failed | skipped
            result TEXT,                    -- what AWS said
            updated_at TEXT NOT NULL,
            PRIMARY KEY (owner, seq)
        );
        CREATE INDEX steps_state ON steps(state, action);
        -- Messages the bot owes Slack, written in the transaction of the state change that causes them.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            intent TEXT NOT NULL,           -- JSON: {"kind": "request_message", "request_id": …} and the like
            subject TEXT,                   -- e.g. the request id: one subject's messages go out in order
            state TEXT NOT NULL,            -- pending | sending | delivered | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,          -- epoch seconds: not before (backoff)
            ts TEXT,                        -- the ts Slack gave a post (a retry after a crash never posts again)
            last_error TEXT,
            created_at TEXT NOT NULL,
            delivered_at TEXT
        );
        CREATE INDEX outbox_state ON outbox(state, next_at);
    """),
    (8, "daily digest runs that fail after their claim are retried the same day", """
        -- state: running (claimed, being made) | posted | retry (failed; next attempt at next_attempt_at)
        --        | failed (out of attempts, or the day is over). The claim stays the row's primary key.
        ALTER TABLE digest_runs ADD COLUMN state TEXT NOT NULL DEFAULT 'posted';
        ALTER TABLE digest_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE digest_runs ADD COLUMN next_attempt_at TEXT;
        ALTER TABLE digest_runs ADD COLUMN error TEXT;
        UPDATE digest_runs SET state = 'running' WHERE outcome IS NULL;
    """),
    (10, "the digest's totals per day (the Home tab's trend) and the Home tab's fleet cache", """
        CREATE TABLE digest_history (
            date TEXT PRIMARY KEY,          -- the day in [digest].timezone, YYYY-MM-DD; the day's last digest wins
            stale_images INTEGER NOT NULL,
            orphaned_snapshots INTEGER NOT NULL,
            monthly_waste REAL NOT NULL,    -- USD per month of what the digest would retire
            drifted_instances INTEGER,      -- NULL: not known that day
            channel TEXT,
            message_ts TEXT,
            permalink TEXT,
            recorded_at TEXT NOT NULL
        );
        -- One row per cached view part (e.g. 'fleet'): what the Home tab shows without calling AWS.
        CREATE TABLE dashboard_cache (
            key TEXT PRIMARY KEY,
            data TEXT NOT NULL,             -- JSON
            computed_at TEXT NOT NULL,
            wanted_at TEXT                  -- last time someone opened the Home tab (refresh only while wanted)
        );
    """),
    (14, "promotions per account: the managed account whose image and SSM parameter a promotion set", """
        -- '': the bot's own account (single-account mode, and every row written before accounts existed)
        ALTER TABLE promotions ADD COLUMN account TEXT NOT NULL DEFAULT '';
        CREATE INDEX promotions_account ON promotions(account, family, region, id);
    """),
]


class StoreMissing(Exception):
    """The database file is not there (or is empty): read-only commands never create one."""


class Store:
    """``create=False`` opens an existing database read-only and never creates, migrates or writes it
    (``amibot audit verify``/``export``); a missing or empty file raises StoreMissing."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = str(path)
        self.read_only = not create
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, so close() can close them all
        self._connections_lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._file_checked_at = float("-inf")
        self._file_problem: str | None = None
        if self.read_only:
            _require_database(self.path)
        elif self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not self.read_only:
            self.migrate()
        self._identity = self._stat_identity()

    def conn(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None and self.read_only:
            # mode=ro: SQLite opens the file as it is and never creates or changes it.
            connection = sqlite3.connect(_uri(self.path, "ro"), uri=True, timeout=5, isolation_level=None,
                                         check_same_thread=False)
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        if connection is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, everything else autocommits.
            # Once the file exists, no connection may create it again: a database deleted under a running bot
            # must stay missing (and be reported), never silently come back empty.
            target, uri = (_uri(self.path, "rw"), True) if self._identity is not None else (self.path, False)
            connection = sqlite3.connect(target, uri=uri, timeout=30, isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @property
    def db(self) -> sqlite_utils.Database:
        """A sqlite-utils view over this thread's connection, for queries and simple inserts (imported here:
        `amibot digest` and the other short commands need the store but not sqlite-utils' few megabytes)."""
        import sqlite_utils

        database = getattr(self._local, "database", None)
        if database is None or database.conn is not self.conn():
            database = sqlite_utils.Database(self.conn())
            self._local.database = database
        return database

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self.conn()
        if connection.in_transaction:  # nested: join the outer transaction
            yield connection
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn().execute(sql, params)

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return [dict(row) for row in self.conn().execute(sql, params).fetchall()]

    def one(self, sql: str, params: tuple | dict = ()) -> dict | None:
        row = self.conn().execute(sql, params).fetchone()
        return dict(row) if row else None

    @property
    def schema_version(self) -> int:
        return self.conn().execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> list[int]:
        """Apply the migrations this file has not seen yet; return their numbers."""
        applied = []
        with self.transaction() as connection:
            current = self.schema_version
            for number, _title, sql in sorted(MIGRATIONS):
                if number <= current:
                    continue
                for statement in _statements(sql):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {int(number)}")
                applied.append(number)
        return applied

    def close(self) -> None:
        """Close every thread's connection (at shutdown: worker threads never close their own)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.close()
            except sqlite3.ProgrammingError:  # already closed
                pass
        self._local = threading.local()

    # --- is the file still ours, and can we write it? (health checks and the ack path) ----------------
    FILE_CHECK_MAX_AGE = 1.0  # seconds: the ack path costs at most one os.stat a second
    HEALTH_TIMEOUT = 1.0  # seconds: a health check answers quickly even when the file is locked or broken

    def _stat_identity(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def file_problem(self, max_age: float | None = None) -> str | None:
        """Why the database file can no longer be trusted (gone, replaced by another file, truncated), or
        None. At most one os.stat per ``max_age`` seconds (cached); a problem is logged once when it appears
        and once when it clears, never per request."""
        if self._identity is None:
            return None
        max_age = self.FILE_CHECK_MAX_AGE if max_age is None else max_age
        now = time.monotonic()
        if now - self._file_checked_at < max_age:
            return self._file_problem
        self._file_checked_at = now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            problem = f"the database file {self.path} is gone (deleted or moved while amibot runs)"
        except OSError as error:
            problem = f"the database file {self.path} cannot be read: {error.strerror}"
        else:
            if (stat.st_dev, stat.st_ino) != self._identity:
                problem = f"the database file {self.path} was replaced by another file while amibot runs"
            elif stat.st_size == 0:
                problem = f"the database file {self.path} was truncated to 0 bytes"
            else:
                problem = None
        if problem != self._file_problem:
            if problem:
                log.error("database unavailable: %s; refusing new work until it is restored", problem)
            else:
                log.warning("database file %s is back; accepting work again", self.path)
            self._file_problem = problem
        return problem

    def health(self) -> dict:
        """Prove the database works: the file is the one we opened, and a short write transaction on a fresh
        connection (short busy timeout; the URI's mode=rw never creates a file) succeeds. Returns
        {"ok", "problem", "schema_version", "jobs_pending"} within about HEALTH_TIMEOUT."""
        problem = self.file_problem(max_age=0)
        if problem:
            return {"ok": False, "problem": problem, "schema_version": None, "jobs_pending": None}
        if self.path == ":memory:":
            return {"ok": True, "problem": None, "schema_version": self.schema_version, "jobs_pending": None}
        try:
            connection = sqlite3.connect(_uri(self.path, "rw"), uri=True, timeout=self.HEALTH_TIMEOUT,
                                         isolation_level=None)
        except sqlite3.Error as error:
            return {"ok": False, "problem": f"cannot open the database: {error}", "schema_version": None,
                    "jobs_pending": None}
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self.HEALTH_TIMEOUT * 1000)}")
            connection.execute("BEGIN IMMEDIATE")
            updated = connection.execute("UPDATE health SET checked_at = ? WHERE one = 1",
                                         (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),)).rowcount
            connection.execute("COMMIT")
            if updated != 1:
                raise sqlite3.DatabaseError("the health row is missing")
            schema = connection.execute("PRAGMA user_version").fetchone()[0]
            pending = connection.execute(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
        except sqlite3.Error as error:
            return {"ok": False, "problem": f"cannot write the database: {error}", "schema_version": None,
                    "jobs_pending": None}
        finally:
            connection.close()
        return {"ok": True, "problem": None, "schema_version": schema, "jobs_pending": pending}


def _uri(path: str, mode: str) -> str:
    """A SQLite URI for an existing file: mode=ro or mode=rw never create one."""
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"


def _require_database(path: str) -> None:
    """For read-only use: the file must exist and hold something (an empty file is not a database)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise StoreMissing(f"no database at {path}") from None
    except OSError as error:
        raise StoreMissing(f"cannot read {path}: {error.strerror}") from None
    if size == 0:
        raise StoreMissing(f"{path} is empty, not an amibot database")


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(part.strip().startswith("--") for part in buffer.strip().splitlines()):
        statements.append(buffer.strip())
    return statements
