"""A clock the tests move by hand (the emulations take one: a run advances only when the test says so)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self):
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    def __call__(self):
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
