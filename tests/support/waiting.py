"""Waiting, boundedly, for what a background job does."""

from __future__ import annotations

import time


def until(predicate, timeout: float = 15.0, what: str = "the condition") -> None:
    """Return once `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")
