"""The SQLite store: the one module that owns the schema and its migrations.

WAL mode, one connection per thread (sqlite3 connections must not be shared across threads while
in use), a busy timeout so two processes on one file wait instead of failing, and
``transaction()`` that takes the write lock up front (BEGIN IMMEDIATE) so read-then-write sequences
such as appending to the audit hash chain are serialised across threads *and* processes.

While running, ``file_problem`` looks at the file at most once a second (health checks every time): still the one
opened, writable, whole, and not older than what this process already saw in it — a write generation in the file
(one more per write transaction) is one of the things that only grow.

Every table has one owning module; no other module holds SQL for it (tests/test_store_owners.py reads this list):

    audit, audit_head                    bot/durable/audit.py
    anchors, anchor_days                 bot/durable/anchors.py
    jobs                                 bot/durable/jobs.py
    steps                                bot/durable/steps.py
    outbox                               bot/durable/outbox.py  (bot/slack/outbox.py delivers it)
    slack_requests                       bot/slack/delivery_keys.py
    requests, approvals                  bot/services/approvals.py
    digest_runs, snoozes                 bot/services/digest.py
    digest_history, dashboard_cache      bot/services/dashboard.py
    promotions                           bot/services/versions.py
    revocations                          bot/services/revoke.py
    backup_days                          bot/durable/backup.py
    health, generation, _sqlite_migrations   bot/durable/store.py
      (and store.py reads audit_head's last row id: its file check's watermark, below bot/durable/audit.py)

Owners use sqlite-utils (``Store.db``) for plain table work (inserts, upserts, ``rows_where``) and keep raw SQL
for the single conditional statements that make something happen exactly once, each commented.

Migrations are applied in list order at start and recorded BY NAME in ``_sqlite_migrations`` (sqlite-utils'
``Migrations``), so one added later before another is still applied to a file that has the other. Add one by
appending to MIGRATIONS — never edit or rename one that has shipped. The first ten were numbered: a file made
before names (``PRAGMA user_version`` = N, no names recorded) counts every numbered migration up to N as applied,
once, and records their names; ``user_version`` keeps the highest number so that older builds leave the file alone.
A new migration is a function given sqlite-utils' Database (``db[...].create(...)``, ``create_index``,
``add_column``); the numbered ones stay the SQL they shipped as, so every file ends up with the same schema.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

MIGRATION_SET = "amibot"  # the set our migrations are recorded under in sqlite-utils' _sqlite_migrations


class Migration(NamedTuple):
    name: str  # recorded in _sqlite_migrations once applied: never renamed
    version: int | None  # its PRAGMA user_version number from before names (None for every later one)
    title: str
    change: str | Callable[[sqlite_utils.Database], None]  # a SQL script (the numbered ones) or a function


MIGRATIONS: list[Migration] = [
    Migration("0001_audit_slack_requests_jobs", 1,
              "audit trail, Slack request de-duplication, durable jobs", """
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
    Migration("0002_approval_requests", 2,
              "approval requests and the approvals given", """
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
    Migration("0003_digest_runs_snoozes", 3,
              "daily digest runs (claimed once per day and channel) and snoozed images", """
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
    Migration("0004_promotions", 4,
              "promotion history per image family and region (for rollback)", """
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
    Migration("0005_health_anchors", 5,
              "a health row the health check writes, and audit anchors (the chain's head kept outside the file)", """
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
    Migration("0006_steps_outbox", 6,
              "durable steps of multi-step actions, and the outbox of messages owed to Slack", """
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
    Migration("0008_digest_run_retries", 8,
              "daily digest runs that fail after their claim are retried the same day", """
        -- state: running (claimed, being made) | posted | retry (failed; next attempt at next_attempt_at)
        --        | failed (out of attempts, or the day is over). The claim stays the row's primary key.
        ALTER TABLE digest_runs ADD COLUMN state TEXT NOT NULL DEFAULT 'posted';
        ALTER TABLE digest_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE digest_runs ADD COLUMN next_attempt_at TEXT;
        ALTER TABLE digest_runs ADD COLUMN error TEXT;
        UPDATE digest_runs SET state = 'running' WHERE outcome IS NULL;
    """),
    Migration("0010_digest_history_dashboard_cache", 10,
              "the digest's totals per day (the Home tab's trend) and the Home tab's fleet cache", """
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
    Migration("0014_promotions_per_account", 14,
              "promotions per account: the managed account whose image and SSM parameter a promotion set", """
        -- '': the bot's own account (single-account mode, and every row written before accounts existed)
        ALTER TABLE promotions ADD COLUMN account TEXT NOT NULL DEFAULT '';
        CREATE INDEX promotions_account ON promotions(account, family, region, id);
    """),
    Migration("0015_write_generation", 15,
              "a write generation: an older copy of the file put in place of the live one is noticed", """
        -- Every write transaction (and every health check) adds one; a running process remembers the highest it
        -- has seen, so a number lower than that means the file went back in time (bot/durable/store.py file_problem).
        CREATE TABLE generation (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            n INTEGER NOT NULL
        );
        INSERT INTO generation (one, n) VALUES (1, 1);
    """),
    Migration("0016_backup_days", None,
              "the daily backup, claimed once per UTC day (two processes on one file back up once)",
              lambda database: database["backup_days"].create(
                  {"date": str, "claimed_at": str, "destination": str, "finished_at": str, "outcome": str},
                  pk="date", not_null={"claimed_at"})),
    Migration("0017_revocations", None,
              "revoked images with their reason (`/ami revoke`), for the Home tab",
              lambda database: database["revocations"].create(
                  {"image_id": str, "region": str, "account": str, "name": str, "family": str, "reason": str,
                   "request_id": str, "revoked_by": str, "revoked_at": str}, pk="image_id")),
    Migration("0018_approvals_accounts", None,
              "which of its accounts each approval covered (a request changing several needs each one's approval)",
              # JSON list of account ids; NULL (every row from before): the request's own account
              lambda database: database["approvals"].add_column("accounts", str)),
]


class StoreMissing(Exception):
    """The database file is not there (or is empty): read-only commands never create one."""


class DatabaseWentBack(sqlite3.DatabaseError):
    """A write found the file older than what this process had already seen in it (an older copy was put in its
    place): the transaction is rolled back, nothing is written on top of the older copy."""


# SQLite's primary result codes (the low byte of an extended code) that say the file itself is in trouble.
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB = 8, 10, 11, 26
FILE_TROUBLE = {SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB}


class _NoticingConnection(sqlite3.Connection):
    """A connection that tells its store when SQLite says the file is damaged, unwritable or failing, so the next
    look at the file (``Store.file_problem``) happens at once instead of up to a second later."""

    noticed = None  # set by Store: called with the error

    def execute(self, *args, **kwargs):
        try:
            return super().execute(*args, **kwargs)
        except sqlite3.DatabaseError as error:
            self._tell(error)
            raise

    def executemany(self, *args, **kwargs):
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.DatabaseError as error:
            self._tell(error)
            raise

    def _tell(self, error: sqlite3.DatabaseError) -> None:
        if self.noticed is not None:
            self.noticed(error)


class Seen(NamedTuple):
    """The newest state a process has seen its database file in. Each part only grows while the file lives on."""

    file_version: int  # the change counter in the file's own header
    generation: int  # the write generation (table generation): every write transaction adds one
    audit_rows: int  # the audit trail's last row id

    WHAT = ("its header's version", "its write generation", "its audit trail ends at row")


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
        # The newest state this process has seen the file in; it only moves forward: lower is an older copy.
        self._seen = Seen(0, 0, 0)
        self._seen_lock = threading.Lock()
        self._look_lock = threading.Lock()
        self._counting = False  # transactions add to the generation once the migrations have made its table
        self._suspect = False  # SQLite said "corrupt" somewhere: the next look runs an integrity check
        self._damage: str | None = None  # what the integrity check found; kept until restart
        if self.read_only:
            _require_database(self.path)
        elif self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not self.read_only:
            upgrading = self.path != ":memory:" and os.path.exists(self.path) and os.path.getsize(self.path) > 0
            applied = self.migrate()
            if applied and upgrading:  # an upgrade says what it did to the database, once (a new file: nothing)
                log.info("database %s: applied %d migration(s): %s", self.path, len(applied), ", ".join(applied))
            self._counting = True
            file_version = _file_version(_file_header(self.path)) if self.path != ":memory:" else 0
            self._remember(Seen(file_version, *self._newest_state(self.conn())))
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
            connection = sqlite3.connect(target, uri=uri, timeout=30, isolation_level=None, check_same_thread=False,
                                         factory=_NoticingConnection)
            connection.noticed = self._noticed
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
        """A sqlite-utils view over this thread's connection, for the owners' table work: inserts, upserts and
        ``rows_where``. Its writes join an open ``transaction()`` (as a savepoint) and otherwise commit on their
        own, like ``execute``. (Imported here: the read-only commands need the store but not sqlite-utils.)"""
        import sqlite_utils

        database = getattr(self._local, "database", None)
        if database is None or database.conn is not self.conn():
            # recursive_triggers=False: SQLite's default, as every other connection of ours has it (no triggers).
            # execute_plugins=False: no installed sqlite-utils plugin gets to change our connections.
            database = sqlite_utils.Database(self.conn(), recursive_triggers=False, execute_plugins=False)
            self._local.database = database
        return database

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self.conn()
        if connection.in_transaction:  # nested: join the outer transaction
            yield connection
            return
        floor = self._seen.generation
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            generation = self._next_generation(connection, floor) if self._counting else None
        except BaseException:
            if connection.in_transaction:  # (SQLite may already have rolled it back, e.g. on a damaged file)
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        if generation is not None:
            self._remember(Seen(0, generation, 0))

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

    def migrate(self) -> list[str]:
        """Apply, in one write transaction, the migrations this file has not recorded; return their names."""
        from sqlite_utils import Migrations

        migrations = Migrations(MIGRATION_SET)
        for migration in MIGRATIONS:
            migrations(name=migration.name)(_runner(migration))
        with self.transaction():
            database = self.db
            self._adopt_numbered(database, migrations)
            pending = [migration.name for migration in migrations.pending(database)]
            migrations.apply(database)
            numbered = max(migration.version or 0 for migration in MIGRATIONS)
            if numbered > self.schema_version:  # never lowered: older builds read it as "all of mine applied"
                self.conn().execute(f"PRAGMA user_version = {int(numbered)}")
        return pending

    def backup(self, destination: str | Path) -> None:
        """An online, consistent copy of the whole database into the file ``destination`` (replaced if there):
        SQLite's backup API copies every page under one read transaction, so writers in this and other processes
        carry on and the copy is the database as of one commit. It is written next to ``destination`` and renamed
        into place, so a crash never leaves half a copy under that name, and it is one self-contained file
        (journal mode DELETE: no write-ahead log beside it)."""
        destination = Path(destination)
        partial = destination.with_name(f".{destination.name}.partial")
        try:
            with closing(sqlite3.connect(partial, isolation_level=None)) as copy:
                self.conn().backup(copy)  # pages=-1: all at once, one consistent snapshot
                copy.execute("PRAGMA journal_mode=DELETE")
                found = copy.execute("PRAGMA integrity_check(1)").fetchone()[0]
                if found != "ok":
                    raise sqlite3.DatabaseError(f"the copy fails SQLite's integrity check: {found}")
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)

    def _adopt_numbered(self, database: sqlite_utils.Database, migrations) -> None:
        """A file made before migrations had names: record every numbered migration up to its user_version as
        applied (once: afterwards the file has names and its user_version is no longer read)."""
        version = self.schema_version
        if not version or migrations.applied(database):
            return
        migrations.ensure_migrations_table(database)
        adopted = [migration.name for migration in MIGRATIONS if migration.version and migration.version <= version]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime())
        database[migrations.migrations_table].insert_all(
            {"migration_set": MIGRATION_SET, "name": name, "applied_at": stamp} for name in adopted)
        log.info("database %s at schema version %d: recorded %d migrations by name", self.path, version, len(adopted))

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

    # --- is the file still ours, whole, current and writable? (health checks and the ack path) -------------
    FILE_CHECK_MAX_AGE = 1.0  # seconds: the ack path looks at the file at most once a second
    HEALTH_TIMEOUT = 1.0  # seconds: a health check answers quickly even when the file is locked or broken
    INTEGRITY_TIMEOUT = 2.0  # seconds: the most SQLite's quick_check may take when the file looks damaged

    def _stat_identity(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def file_problem(self, max_age: float | None = None) -> str | None:
        """Why the database file can no longer be trusted, or None: gone, replaced by another file, emptied,
        damaged, not writable, or older than what this process already saw in it (see _look_at_file). At most
        one look per ``max_age`` seconds (cached), sooner when SQLite has just reported trouble with the file; a
        problem is logged once when it appears and once when it clears, never per request."""
        if self._identity is None:
            return None
        max_age = self.FILE_CHECK_MAX_AGE if max_age is None else max_age
        if time.monotonic() - self._file_checked_at < max_age:
            return self._file_problem
        with self._look_lock:  # one look at a time: each compares what it reads with what the last one saw
            now = time.monotonic()
            if now - self._file_checked_at < max_age:  # another thread just looked
                return self._file_problem
            self._file_checked_at = now
            problem = self._look_at_file()
            if problem != self._file_problem:
                if problem:
                    log.error("database unavailable: %s; refusing new work until it is restored", problem)
                else:
                    log.warning("database file %s is back; accepting work again", self.path)
                self._file_problem = problem
        return problem

    def _look_at_file(self) -> str | None:
        """An os.stat, the file's 100-byte header, os.access and one small query on a fresh connection (a
        thread's own connection may answer from its page cache, not from what is in the file now)."""
        where = f"the database file {self.path}"
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return f"{where} is gone (deleted or moved while amibot runs)"
        except OSError as error:
            return f"{where} cannot be read: {error.strerror}"
        if (stat.st_dev, stat.st_ino) != self._identity:
            return f"{where} was replaced by another file while amibot runs"
        if stat.st_size == 0:
            return f"{where} was truncated to 0 bytes"
        if self.read_only:  # `audit verify`/`export` read the file as it is
            return None
        unwritable = _unwritable(self.path)
        if unwritable:
            return f"{where} is read-only ({unwritable}): amibot cannot write it"
        try:
            header = _file_header(self.path)
        except OSError as error:
            return f"{where} cannot be read: {error.strerror}"
        if self._damage_in(header, stat.st_size):
            return f"{where} is damaged: {self._damage}"
        went_back = self._went_back(_file_version(header))
        if self._damage:  # the fresh connection's query met the damage
            return f"{where} is damaged: {self._damage}"
        if went_back:
            return f"{where} is older than what amibot already saw in it (an older copy put in its place?): {went_back}"
        return None

    def _damage_in(self, header: bytes, size: int) -> str | None:
        """SQLite's quick_check when the file is shorter than its own header says or SQLite reported it corrupt;
        what it finds is kept until restart (a damaged file does not heal: it is restored, then amibot restarted)."""
        if self._damage is None:
            shorter = _shorter_than_its_header(header, size)
            if shorter or self._suspect:
                self._suspect = False
                self._damage = self._integrity_problem(fallback=shorter)
        return self._damage

    def _integrity_problem(self, fallback: str | None) -> str | None:
        """PRAGMA quick_check(1) on a fresh connection, cut off after INTEGRITY_TIMEOUT (then ``fallback``)."""
        deadline = time.monotonic() + self.INTEGRITY_TIMEOUT
        try:
            with closing(self._fresh("ro")) as connection:
                connection.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
                found = [row[0] for row in connection.execute("PRAGMA quick_check(1)")]
        except sqlite3.DatabaseError as error:
            return str(error) if _code(error) in (SQLITE_CORRUPT, SQLITE_NOTADB) else fallback
        return None if found == ["ok"] else found[0]

    def _went_back(self, file_version: int) -> str | None:
        """The file against the newest state this process has seen it in, or None when it did not go back: the
        version in its header (SQLite raises it whenever it writes the header back from the write-ahead log;
        read from the file itself, it sees an older copy even while newer pages still sit in the log), the
        write generation and the audit trail's last row. Each only grows, whichever process writes."""
        floor = self._seen  # taken before the reads: whatever is committed by now is at least this
        try:
            with closing(self._fresh("ro")) as connection:
                found = Seen(file_version, *self._newest_state(connection))
        except sqlite3.DatabaseError as error:
            if _code(error) in (SQLITE_CORRUPT, SQLITE_NOTADB):
                self._damage = str(error)
            return None  # locked or cannot be opened: the health check's write says so
        behind = [f"{what} {now} where amibot had seen {before}" for what, now, before
                  in zip(Seen.WHAT, found, floor, strict=True) if now < before]
        if behind:
            return "; ".join(behind)
        self._remember(found)
        return None

    @staticmethod
    def _newest_state(connection: sqlite3.Connection) -> tuple[int, int]:
        """(write generation, last audit row) as the file has them; a file from before the generation table: 0."""
        try:
            generation = connection.execute("SELECT n FROM generation WHERE one = 1").fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            generation = None
        head = connection.execute("SELECT last_id FROM audit_head WHERE one = 1").fetchone()
        return (generation[0] if generation else 0, head[0] if head else 0)

    def _remember(self, state: Seen) -> None:
        with self._seen_lock:
            self._seen = Seen(*(max(mine, found) for mine, found in zip(self._seen, state, strict=True)))

    def _next_generation(self, connection: sqlite3.Connection, floor: int) -> int:
        """Add one to the write generation inside the caller's write transaction. Every committed value is at
        least ``floor`` (read before the transaction began), so a result not above it means the file went back:
        raise DatabaseWentBack so that the transaction is rolled back and nothing is written onto the older copy."""
        found = connection.execute("UPDATE generation SET n = n + 1 WHERE one = 1 RETURNING n").fetchall()
        generation = found[0][0] if found else 0
        if generation <= floor:
            self._file_checked_at = float("-inf")  # look at the file at once: the ack path refuses new work
            raise DatabaseWentBack(f"the database file {self.path} is older than what amibot already wrote to it "
                                   f"(write generation {generation}, amibot had seen {floor})")
        return generation

    def _noticed(self, error: sqlite3.DatabaseError) -> None:
        """SQLite reported trouble with the file on some thread: look at the file on the next request, with an
        integrity check when it said corrupt."""
        code = _code(error)
        if code in FILE_TROUBLE:
            self._suspect = self._suspect or code in (SQLITE_CORRUPT, SQLITE_NOTADB)
            self._file_checked_at = float("-inf")

    def _fresh(self, mode: str) -> sqlite3.Connection:
        """A new connection (mode=ro or rw: never creates the file) with a short busy timeout."""
        return sqlite3.connect(_uri(self.path, mode), uri=True, timeout=self.HEALTH_TIMEOUT, isolation_level=None)

    def health(self, jobs_pending: Callable[[sqlite3.Connection], int] | None = None) -> dict:
        """Prove the database works: the file is the one we opened, whole, current and writable (file_problem),
        and a short write transaction on a fresh connection (short busy timeout; the URI's mode=rw never creates
        a file) succeeds; it also advances the write generation. Returns {"ok", "problem", "schema_version",
        "jobs_pending"} (counted by ``jobs_pending``, the jobs table's owner, on the same short-timeout connection;
        None without it) within about HEALTH_TIMEOUT (INTEGRITY_TIMEOUT more when the file looks damaged)."""
        problem = self.file_problem(max_age=0)
        if problem:
            return {"ok": False, "problem": problem, "schema_version": None, "jobs_pending": None}
        if self.path == ":memory:":
            return {"ok": True, "problem": None, "schema_version": self.schema_version, "jobs_pending": None}
        try:
            connection = self._fresh("rw")
        except sqlite3.Error as error:
            return {"ok": False, "problem": f"cannot open the database: {error}", "schema_version": None,
                    "jobs_pending": None}
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self.HEALTH_TIMEOUT * 1000)}")
            floor = self._seen.generation
            connection.execute("BEGIN IMMEDIATE")
            updated = connection.execute("UPDATE health SET checked_at = ? WHERE one = 1",
                                         (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),)).rowcount
            generation = self._next_generation(connection, floor)
            connection.execute("COMMIT")
            self._remember(Seen(0, generation, 0))
            if updated != 1:
                raise sqlite3.DatabaseError("the health row is missing")
            schema = connection.execute("PRAGMA user_version").fetchone()[0]
            pending = jobs_pending(connection) if jobs_pending is not None else None
        except sqlite3.Error as error:
            self._noticed(error)
            return {"ok": False, "problem": f"cannot write the database: {error}", "schema_version": None,
                    "jobs_pending": None}
        finally:
            connection.close()
        return {"ok": True, "problem": None, "schema_version": schema, "jobs_pending": pending}


def pending_migrations(path: str | Path) -> list[Migration]:
    """The migrations a start would apply to the database at ``path``, in order, without applying any: the file
    is opened read-only (``amibot migrate --check``). A missing or empty file raises StoreMissing."""
    _require_database(str(path))
    with closing(sqlite3.connect(_uri(str(path), "ro"), uri=True, timeout=5, isolation_level=None)) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        try:
            applied = {row[0] for row in connection.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,))}
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            applied = set()
    if not applied and version:  # a file from before names: its user_version counts the numbered ones (_adopt_numbered)
        applied = {migration.name for migration in MIGRATIONS if migration.version and migration.version <= version}
    return [migration for migration in MIGRATIONS if migration.name not in applied]


def _code(error: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (the low byte of its extended code), when it has one."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _unwritable(path: str) -> str | None:
    """Why SQLite cannot write the file or its write-ahead log, or None. The kernel answers (os.access), so an
    immutable file or a read-only mount counts for root too; mode 0444 does not stop root, and does not here."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "a read-only file system"
    except OSError:
        pass
    for name in (path, f"{path}-wal"):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            return f"{os.path.basename(name)} may not be written"
    return None


SQLITE_HEADER = b"SQLite format 3\x00"


def _file_header(path: str) -> bytes:
    """The database file's first 100 bytes (SQLite's header), read from the file itself."""
    with open(path, "rb") as file:
        return file.read(100)


def _file_version(header: bytes) -> int:
    """The header's file change counter (0 when there is no header to read)."""
    return int.from_bytes(header[24:28], "big") if len(header) >= 28 else 0


def _shorter_than_its_header(header: bytes, size: int) -> str | None:
    """The file's header against its size: SQLite writes the page count into the header when it writes pages back
    from the write-ahead log, so the file holds at least that many pages — fewer means it was cut short. (While a
    checkpoint grows the file this is briefly true too: the caller confirms it with SQLite's quick_check.)"""
    if not header.startswith(SQLITE_HEADER):
        return "it no longer starts with SQLite's header"
    if len(header) < 100:
        return f"it is {len(header)} bytes long, shorter than SQLite's header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if not pages or header[24:28] != header[92:96]:  # the count is only current when these two agree
        return None
    if size < pages * page_size:
        return f"it is {size:,} bytes long but its header counts {pages:,} pages of {page_size:,} bytes (cut short)"
    return None


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


def _runner(migration: Migration) -> Callable[[sqlite_utils.Database], None]:
    """What sqlite-utils' Migrations calls: the function itself, or one that runs a numbered migration's SQL."""
    if callable(migration.change):
        return migration.change
    script = migration.change

    def run(database: sqlite_utils.Database) -> None:
        for statement in _statements(script):
            database.conn.execute(statement)

    return run


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
