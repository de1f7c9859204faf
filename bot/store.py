"""The SQLite store: the one module that owns the schema and its migrations.

WAL mode, one connection per thread (sqlite3 connections must not be shared across threads while
in use), a busy timeout so two processes on one file wait instead of failing, and
``transaction()`` that takes the write lock up front (BEGIN IMMEDIATE) so read-then-write sequences
such as appending to the audit hash chain are serialised across threads *and* processes.

Migrations are numbered and applied in order at start; ``PRAGMA user_version`` records the last one.
Add a migration by appending to MIGRATIONS — never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

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
]


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, so close() can close them all
        self._connections_lock = threading.Lock()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.migrate()

    def conn(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, everything else autocommits.
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
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
        """A sqlite-utils view over this thread's connection, for queries and simple inserts."""
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
