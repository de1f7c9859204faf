"""Durable background jobs: what Slack asked for is written to SQLite before it is worked on.

A Slack listener acks, then submits a job and returns, so Bolt's listener threads are never held
by slow AWS calls. Each job row moves queued → running → done | failed. At start ``recover()``
runs jobs still queued (they never started) and hands jobs caught running to their kind's
``on_interrupted`` — re-run when that is safe, otherwise tell the user what is known — so nothing
is silently lost or silently done twice across a crash.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bot.audit import now_iso
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass
class JobKind:
    run: Callable[[dict[str, Any]], None]
    on_interrupted: Callable[[dict[str, Any]], None] | None = None


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


class JobRunner:
    # Slack's acks go first: a job waits (briefly) while requests are being acked. Python threads share one
    # interpreter lock, so a job parsing AWS answers slows every ack in flight; deferring its start during a
    # burst keeps acks fast, and the wait is bounded so a steady stream of requests cannot starve the jobs.
    MAX_DEFERRAL_SECONDS = 0.5

    def __init__(self, store: Store, workers: int = 8):
        self.store = store
        self.yield_to: list[Callable[[], bool]] = []  # "is Slack waiting for an ack right now?"
        self.kinds: dict[str, JobKind] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="amibot-job")
        self._active = 0
        self._idle = threading.Condition()

    def register(self, kind: str, run: Callable[[dict[str, Any]], None],
                 on_interrupted: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.kinds[kind] = JobKind(run, on_interrupted)

    def submit(self, kind: str, payload: dict[str, Any], dedupe_key: str | None = None) -> int | None:
        """Record and start a job; with a dedupe_key seen before, do nothing and return None.

        One INSERT is both the durable record and the duplicate check, which keeps Slack's ack path short."""
        if kind not in self.kinds:
            raise ValueError(f"unknown job kind {kind}")
        stamp = now_iso()
        cursor = self.store.execute(
            "INSERT OR IGNORE INTO jobs (kind, payload, state, created_at, updated_at, dedupe_key)"
            " VALUES (?, ?, 'queued', ?, ?, ?)", (kind, json.dumps(payload), stamp, stamp, dedupe_key))
        if cursor.rowcount == 0:
            log.info("dropping a repeated Slack request (%s)", dedupe_key)
            return None
        self._start(cursor.lastrowid)
        return cursor.lastrowid

    def _start(self, job_id: int) -> None:
        with self._idle:
            self._active += 1
        self._pool.submit(self._run, job_id)

    def _claim(self, job_id: int) -> dict | None:
        # One statement decides who runs the job, even with two processes on one database.
        cursor = self.store.execute(
            "UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ? AND state = 'queued'", (now_iso(), job_id))
        if cursor.rowcount != 1:
            return None
        return self.store.one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def _finish(self, job_id: int, state: str, error: str | None = None) -> None:
        self.store.execute("UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                           (state, error, now_iso(), job_id))

    def _defer_to_acks(self) -> None:
        deadline = time.monotonic() + self.MAX_DEFERRAL_SECONDS
        while any(busy() for busy in self.yield_to) and time.monotonic() < deadline:
            time.sleep(0.002)

    def _run(self, job_id: int) -> None:
        try:
            self._defer_to_acks()
            job = self._claim(job_id)
            if job is None:
                return
            kind = self.kinds[job["kind"]]
            try:
                kind.run(json.loads(job["payload"]))
            except Exception as error:  # the job's own code reports to the user; this is the backstop
                log.exception("job %s (%s) failed", job_id, job["kind"])
                self._finish(job_id, "failed", repr(error)[:500])
            else:
                self._finish(job_id, "done")
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def recover(self) -> dict[str, int]:
        """Resume what a previous process left behind. Returns counts, for the log."""
        counts = {"resumed": 0, "interrupted": 0}
        for job in self.store.query("SELECT * FROM jobs WHERE state = 'running' ORDER BY id"):
            self._finish(job["id"], "interrupted", "the bot stopped while this job was running")
            kind = self.kinds.get(job["kind"])
            counts["interrupted"] += 1
            if kind and kind.on_interrupted:
                try:
                    kind.on_interrupted(json.loads(job["payload"]))
                except Exception:
                    log.exception("could not report interrupted job %s", job["id"])
        for job in self.store.query("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id"):
            counts["resumed"] += 1
            self._start(job["id"])
        return counts

    def pending(self) -> int:
        row = self.store.one("SELECT count(*) AS n FROM jobs WHERE state IN ('queued', 'running')")
        return row["n"] if row else 0

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
