"""Durable background jobs: what Slack asked for is written to SQLite before it is worked on.

A Slack listener acks, then submits a job and returns, so Bolt's listener threads are never held
by slow AWS calls. Each job row moves queued → running → done | failed. At start ``recover()``
runs jobs still queued (they never started) and hands jobs caught running to their kind's
``on_interrupted`` — re-run when that is safe, otherwise tell the user what is known — so nothing
is silently lost or silently done twice across a crash.

Nobody waits behind slow AWS: jobs run in two lanes, each its own pool of threads.

- ``quick``: work that needs no AWS (help, usage errors, `/ami requests`, `/ami audit`, approval clicks,
  access refusals). A small pool that AWS work never occupies, so these answer within moments.
- ``aws``: I/O-bound AWS work, many workers (``[jobs].workers``), shared fairly: every user has a queue,
  the queues are served round-robin, and one user has at most ``[jobs].per_user`` jobs running, so one
  user's burst of 50 commands does not hold back another user's one. Jobs without a user (executing an
  approved request, watching a new image, the digest) queue per kind, with a larger cap.

A kind may have a ``gate``: it runs on the quick lane before the job joins the aws lane and may answer
the job there (a refused non-operator needs no AWS); only jobs it lets through wait for AWS. The lane
and the user are kept in the job's stored payload (``_lane``, ``_user``), so recovery puts a job back
in the lane it was recorded for.

Deadlines: a job still unfinished ``deadline`` seconds after it was recorded (default
``[jobs].deadline_seconds``, per kind at register) has its kind's ``on_overdue`` called once — the user
is told AWS is slow — and its answer is still delivered when it arrives. Threads cannot be killed; what
bounds a job on a hung endpoint is the AWS connect/read timeouts and retry cap (bot/aws/clients.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bot.durable.audit import now_iso
from bot.durable.store import Store

log = logging.getLogger(__name__)

QUICK, AWS = "quick", "aws"
LANES = (QUICK, AWS)
DEFAULT_DEADLINE_SECONDS = 120.0
_RUNNER_DEFAULT: Any = object()  # "use the runner's deadline"


@dataclass
class JobKind:
    run: Callable[[dict[str, Any]], None]
    on_interrupted: Callable[[dict[str, Any]], None] | None = None
    lane: str = AWS
    gate: Callable[[dict[str, Any]], bool] | None = None  # quick lane, before AWS: False = answered here
    deadline: float | None = None  # seconds from recording; None: the kind handles its own waits
    on_overdue: Callable[[dict[str, Any], float], None] | None = None


class TrackedExecutor(ThreadPoolExecutor):
    """A thread pool that knows how many tasks are in flight (Bolt's listeners run on one), so tests and
    shutdown can wait until every listener has finished, not just acked."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._in_flight = 0
        self._changed = threading.Condition()

    def submit(self, function, /, *args, **kwargs):
        with self._changed:
            self._in_flight += 1

        def tracked():
            try:
                return function(*args, **kwargs)
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

        return super().submit(tracked)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)

    @property
    def busy(self) -> bool:
        return self._in_flight > 0


class InFlight:
    """Counts requests being handled (the HTTP server's Slack requests), so jobs can let them go first."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self._count += 1

    def __exit__(self, *_):
        with self._lock:
            self._count -= 1

    @property
    def busy(self) -> bool:
        return self._count > 0


@dataclass
class Ticket:
    """One job on its way through a lane (in memory; the row in SQLite is the durable record)."""

    job_id: int
    kind: str
    payload: dict[str, Any]
    bucket: str  # "user:U…" or "kind:…": whose queue it waits in
    recorded: float  # time.monotonic() when submitted (or recovered)
    gated: bool = False  # the kind's gate still has to let it through
    overdue_told: bool = False


class Lane:
    """Worker threads serving per-bucket queues round-robin, at most ``cap(bucket)`` running per bucket.

    Threads start as work arrives, up to ``workers``, and stay for the life of the runner."""

    def __init__(self, name: str, workers: int, per_user: int, execute: Callable[[Ticket], None]):
        self.name = name
        self.workers = workers
        self.per_user = per_user
        self.per_kind = max(per_user, workers // 4)
        self._execute = execute
        self._queues: dict[str, deque[Ticket]] = {}
        self._turns: deque[str] = deque()  # buckets with queued work, in serving order
        self._running: Counter[str] = Counter()
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._waiting = 0
        self._closed = False

    def cap(self, bucket: str) -> int:
        return self.per_user if bucket.startswith("user:") else self.per_kind

    def put(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket.bucket not in self._queues:
                self._queues[ticket.bucket] = deque()
                self._turns.append(ticket.bucket)
            self._queues[ticket.bucket].append(ticket)
            if self._waiting == 0 and len(self._threads) < self.workers and not self._closed:
                thread = threading.Thread(target=self._work, name=f"amibot-{self.name}-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            self._changed.notify()

    def _take(self) -> Ticket | None:
        """The next bucket in turn that is under its cap gives up its oldest job (caller holds the lock)."""
        for _ in range(len(self._turns)):
            bucket = self._turns[0]
            self._turns.rotate(-1)
            if self._running[bucket] >= self.cap(bucket):
                continue
            queue = self._queues[bucket]
            ticket = queue.popleft()
            if not queue:
                del self._queues[bucket]
                self._turns.remove(bucket)
            self._running[bucket] += 1
            return ticket
        return None

    def _work(self) -> None:
        while True:
            with self._changed:
                ticket = self._take()
                while ticket is None:
                    if self._closed:
                        return
                    self._waiting += 1
                    self._changed.wait()
                    self._waiting -= 1
                    ticket = self._take()
            try:
                self._execute(ticket)
            except Exception:  # the runner reports its own failures; a lane thread must not die
                log.exception("job %s crashed its worker", ticket.job_id)
            finally:
                with self._changed:
                    self._running[ticket.bucket] -= 1
                    if self._running[ticket.bucket] <= 0:
                        del self._running[ticket.bucket]
                    self._changed.notify()  # a bucket under its cap again may have queued work

    def queued(self) -> int:
        with self._changed:
            return sum(len(queue) for queue in self._queues.values())

    def close(self, drop_queued: bool) -> list[threading.Thread]:
        with self._changed:
            self._closed = True
            if drop_queued:  # still 'queued' in SQLite: the next start runs them
                self._queues.clear()
                self._turns.clear()
            self._changed.notify_all()
            return list(self._threads)


# With dozens of job threads parsing AWS answers, an ack thread that returns from I/O waits for the interpreter
# lock up to the switch interval per busy thread (Python's default: 5 ms); 1 ms lets acks through sooner at a
# small cost in job throughput. The same reason as MAX_DEFERRAL_SECONDS below; process-wide, set once.
SWITCH_INTERVAL_SECONDS = 0.001


def _favour_short_turns() -> None:
    if sys.getswitchinterval() > SWITCH_INTERVAL_SECONDS:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


class JobRunner:
    # Slack's acks go first: a job waits (briefly) while requests are being acked. Python threads share one
    # interpreter lock, so a job parsing AWS answers slows every ack in flight; deferring its start during a
    # burst keeps acks fast, and the wait is bounded so a steady stream of requests cannot starve the jobs.
    # Quick-lane jobs are light (SQLite and one Slack post), so they defer only a little: they are what
    # users wait for.
    MAX_DEFERRAL_SECONDS = 0.5
    QUICK_DEFERRAL_SECONDS = 0.05

    def __init__(self, store: Store, workers: int = 32, per_user: int = 4, quick_workers: int = 8,
                 deadline: float | None = DEFAULT_DEADLINE_SECONDS):
        self.store = store
        _favour_short_turns()
        self.yield_to: list[Callable[[], bool]] = []  # "is Slack waiting for an ack right now?"
        self.kinds: dict[str, JobKind] = {}
        # observer(kind, seconds the job ran, final state) after every job, e.g. the app's metrics.
        self.observers: list[Callable[[str, float, str], None]] = []
        self.deadline = deadline
        self.lanes = {QUICK: Lane(QUICK, quick_workers, max(1, quick_workers // 2), self._execute),
                      AWS: Lane(AWS, workers, per_user, self._execute)}
        self._tickets: dict[int, Ticket] = {}  # recorded and not yet finished, for wait_idle and deadlines
        self._idle = threading.Condition()
        self._watchdog: threading.Thread | None = None
        self._closed = False

    def register(self, kind: str, run: Callable[[dict[str, Any]], None],
                 on_interrupted: Callable[[dict[str, Any]], None] | None = None, *, lane: str = AWS,
                 gate: Callable[[dict[str, Any]], bool] | None = None, deadline: Any = _RUNNER_DEFAULT,
                 on_overdue: Callable[[dict[str, Any], float], None] | None = None) -> None:
        """``lane``: where jobs of this kind run unless submit says otherwise. ``gate(payload)``: runs on
        the quick lane first and returns False when it answered the job itself. ``deadline``: seconds
        (None: none) after which ``on_overdue(payload, deadline)`` is called once."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane}")
        self.kinds[kind] = JobKind(run, on_interrupted, lane, gate,
                                   self.deadline if deadline is _RUNNER_DEFAULT else deadline, on_overdue)

    def submit(self, kind: str, payload: dict[str, Any], dedupe_key: str | None = None, *,
               lane: str | None = None, user: str | None = None) -> int | None:
        """Record and start a job; with a dedupe_key seen before, do nothing and return None.

        ``lane`` overrides the kind's lane and ``user`` names whose queue it waits in (default: the
        payload's user_id or user); both are stored with the payload so recovery keeps them.
        One INSERT is both the durable record and the duplicate check, which keeps Slack's ack path short."""
        if kind not in self.kinds:
            raise ValueError(f"unknown job kind {kind}")
        if lane is not None and lane not in LANES:
            raise ValueError(f"unknown lane {lane}")
        stored = dict(payload)
        if lane is not None:
            stored["_lane"] = lane
        if user is not None:
            stored["_user"] = user
        stamp = now_iso()
        cursor = self.store.execute(
            "INSERT OR IGNORE INTO jobs (kind, payload, state, created_at, updated_at, dedupe_key)"
            " VALUES (?, ?, 'queued', ?, ?, ?)", (kind, json.dumps(stored), stamp, stamp, dedupe_key))
        if cursor.rowcount == 0:
            log.info("dropping a repeated Slack request (%s)", dedupe_key)
            return None
        self._start(cursor.lastrowid, kind, stored)
        return cursor.lastrowid

    # --- lanes ---------------------------------------------------------------------------------------

    def lane_of(self, kind: str, payload: dict[str, Any]) -> str:
        lane = payload.get("_lane")
        return lane if lane in LANES else self.kinds[kind].lane

    @staticmethod
    def bucket_of(kind: str, payload: dict[str, Any]) -> str:
        user = payload.get("_user") or payload.get("user_id") or payload.get("user")
        return f"user:{user}" if isinstance(user, str) and user else f"kind:{kind}"

    def _start(self, job_id: int, kind: str, payload: dict[str, Any]) -> None:
        lane = self.lane_of(kind, payload)
        ticket = Ticket(job_id, kind, payload, self.bucket_of(kind, payload), time.monotonic(),
                        gated=lane == AWS and self.kinds[kind].gate is not None)
        with self._idle:
            self._tickets[job_id] = ticket
        if self.kinds[kind].deadline is not None:
            self._ensure_watchdog()
        self.lanes[QUICK if ticket.gated else lane].put(ticket)

    def _execute(self, ticket: Ticket) -> None:
        moved = False
        try:
            if ticket.gated:
                self._defer_to_acks(self.QUICK_DEFERRAL_SECONDS)
                moved = self._pass_gate(ticket)
                return
            lane = self.lane_of(ticket.kind, ticket.payload)
            self._defer_to_acks(self.QUICK_DEFERRAL_SECONDS if lane == QUICK else self.MAX_DEFERRAL_SECONDS)
            self._run(ticket)
        finally:
            if not moved:
                with self._idle:
                    self._tickets.pop(ticket.job_id, None)
                    self._idle.notify_all()

    def _pass_gate(self, ticket: Ticket) -> bool:
        """Run the kind's gate; True when the job went on to the aws lane."""
        started = time.monotonic()
        try:
            through = self.kinds[ticket.kind].gate(ticket.payload)
        except Exception:  # the job itself checks again; a broken gate must not lose the job
            log.exception("gate of job %s (%s) failed; running the job", ticket.job_id, ticket.kind)
            through = True
        if not through:
            # Conditional: a job another process claimed meanwhile keeps the state that process gives it.
            self.store.execute("UPDATE jobs SET state = 'done', updated_at = ? WHERE id = ? AND state = 'queued'",
                               (now_iso(), ticket.job_id))
            self._observe(ticket.kind, time.monotonic() - started, "done")  # the gate did the whole job
            return False
        ticket.gated = False
        self.lanes[AWS].put(ticket)
        return True

    def _claim(self, job_id: int) -> dict | None:
        # One statement decides who runs the job, even with two processes on one database.
        cursor = self.store.execute(
            "UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ? AND state = 'queued'", (now_iso(), job_id))
        if cursor.rowcount != 1:
            return None
        return self.store.db["jobs"].get(job_id)

    def _finish(self, job_id: int, state: str, error: str | None = None) -> None:
        self.store.db["jobs"].update(job_id, {"state": state, "error": error, "updated_at": now_iso()})

    def _defer_to_acks(self, longest: float) -> None:
        deadline = time.monotonic() + longest
        while any(busy() for busy in self.yield_to) and time.monotonic() < deadline:
            time.sleep(0.002)

    def _run(self, ticket: Ticket) -> None:
        job = self._claim(ticket.job_id)
        if job is None:
            return
        kind = self.kinds[job["kind"]]
        started = time.monotonic()
        state = "done"
        try:
            kind.run(json.loads(job["payload"]))
        except Exception as error:  # the job's own code reports to the user; this is the backstop
            log.exception("job %s (%s) failed", ticket.job_id, job["kind"])
            state = "failed"
            self._finish(ticket.job_id, "failed", repr(error)[:500])
        else:
            self._finish(ticket.job_id, "done")
        self._observe(job["kind"], time.monotonic() - started, state)

    def _observe(self, kind: str, seconds: float, state: str) -> None:
        for observer in self.observers:
            try:
                observer(kind, seconds, state)
            except Exception:  # metrics must never break a job
                log.exception("job observer failed")

    # --- deadlines -----------------------------------------------------------------------------------

    def _ensure_watchdog(self) -> None:
        with self._idle:
            if self._watchdog is None and not self._closed:
                self._watchdog = threading.Thread(target=self._watch, name="amibot-job-deadlines", daemon=True)
                self._watchdog.start()

    def _watch(self) -> None:
        while True:
            with self._idle:
                if self._closed:
                    return
                due = self._overdue(time.monotonic())
                if not due:
                    self._idle.wait(timeout=self._next_check(time.monotonic()))
                    continue
            for ticket, deadline in due:
                threading.Thread(target=self._tell_overdue, args=(ticket, deadline), daemon=True,
                                 name=f"amibot-overdue-{ticket.job_id}").start()

    def _overdue(self, now: float) -> list[tuple[Ticket, float]]:
        due = []
        for ticket in self._tickets.values():
            deadline = self.kinds[ticket.kind].deadline
            if deadline is not None and not ticket.overdue_told and now - ticket.recorded >= deadline:
                ticket.overdue_told = True  # once, even if telling fails
                due.append((ticket, deadline))
        return due

    def _next_check(self, now: float) -> float:
        waits = [ticket.recorded + self.kinds[ticket.kind].deadline - now for ticket in self._tickets.values()
                 if self.kinds[ticket.kind].deadline is not None and not ticket.overdue_told]
        return min(max(0.05, min(waits)), 5.0) if waits else 5.0

    def _tell_overdue(self, ticket: Ticket, deadline: float) -> None:
        kind = self.kinds[ticket.kind]
        log.warning("job %s (%s) is past its %g s deadline", ticket.job_id, ticket.kind, deadline)
        if kind.on_overdue is None:
            return
        try:
            kind.on_overdue(ticket.payload, deadline)
        except Exception:
            log.exception("could not tell the user that job %s is late", ticket.job_id)

    # --- recovery and state --------------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Resume what a previous process left behind. Returns counts, for the log."""
        counts = {"resumed": 0, "interrupted": 0}
        for job in list(self.store.db["jobs"].rows_where("state = 'running'", order_by="id")):
            self._finish(job["id"], "interrupted", "the bot stopped while this job was running")
            kind = self.kinds.get(job["kind"])
            counts["interrupted"] += 1
            if kind and kind.on_interrupted:
                try:
                    kind.on_interrupted(json.loads(job["payload"]))
                except Exception:
                    log.exception("could not report interrupted job %s", job["id"])
        queued = self.store.db["jobs"].rows_where("state = 'queued'", order_by="id", select="id, kind, payload")
        for job in list(queued):
            if job["id"] in self._tickets:
                continue  # submitted by this process already (e.g. by a hook above)
            if job["kind"] not in self.kinds:
                log.warning("job %s has unknown kind %s; left queued", job["id"], job["kind"])
                continue
            try:
                payload = json.loads(job["payload"])
            except ValueError:
                payload = {}
            counts["resumed"] += 1
            self._start(job["id"], job["kind"], payload if isinstance(payload, dict) else {})
        return counts

    def pending(self) -> int:
        return self.store.db["jobs"].count_where(ACTIVE)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._tickets, timeout)

    def shutdown(self, wait: bool = True) -> None:
        with self._idle:
            self._closed = True
            self._idle.notify_all()
        threads = [thread for lane in self.lanes.values() for thread in lane.close(drop_queued=not wait)]
        if wait:
            for thread in threads:
                thread.join()


# --- the jobs table, for the rest of the bot (this module owns it: bot/durable/store.py) -------------------
ACTIVE = "state IN ('queued', 'running')"


def is_active(store: Store, kind: str, payload: dict[str, Any]) -> bool:
    """Whether a job of ``kind`` with exactly this payload is queued or running (so a start hook adds none)."""
    return store.db["jobs"].count_where(f"kind = ? AND {ACTIVE} AND payload = ?", [kind, json.dumps(payload)]) > 0


def count_active(connection: sqlite3.Connection) -> int:
    """Queued and running jobs, counted on ``connection`` (the health check's own, with its short busy timeout)."""
    return connection.execute(f"SELECT count(*) FROM jobs WHERE {ACTIVE}").fetchone()[0]


def active_counts(store: Store) -> dict[tuple[str, str], int]:
    """{(kind, state): count} of the queued and running jobs (the metrics' queue depth)."""
    rows = store.db.query(f"SELECT kind, state, count(*) AS n FROM jobs WHERE {ACTIVE} GROUP BY kind, state")
    return {(row["kind"], row["state"]): row["n"] for row in rows}


def forget_finished(store: Store, before: str) -> int:
    """Forget done and failed jobs last updated before ``before`` (queued, running and interrupted ones stay).
    One DELETE: its row count is what the hourly prune reports (sqlite-utils' delete_where does not give it)."""
    return store.execute("DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < ?", (before,)).rowcount
