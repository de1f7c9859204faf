"""Durable steps: a multi-step action writes down each step before it runs and what AWS said after.

A step moves planned → done | failed | skipped. The plan is written before the first AWS call, so a
process killed between two steps leaves rows that say exactly what was done and what was not; after a
restart the action's own reconcile looks each planned step up in AWS, finishes it when that is safe
(deleting a snapshot again is; one already gone counts as done) and reports what happened before and
after the restart. Rows are keyed by their owner ("request:<id>", "launch:<ref>") and position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.durable.audit import now_iso

PLANNED, DONE, FAILED, SKIPPED = "planned", "done", "failed", "skipped"


@dataclass
class Step:
    action: str  # deregister_image, delete_snapshot, launch_permission, snapshot_permission, run_instances, …
    target: str
    data: dict[str, Any] = field(default_factory=dict)
    state: str = PLANNED
    result: str | None = None
    seq: int = 0

    @property
    def open(self) -> bool:
        return self.state == PLANNED


class Steps:
    """The steps of one owner (a request, a launch) in the store."""

    def __init__(self, store, owner: str):
        self.store = store
        self.owner = owner

    def plan(self, steps: list[Step]) -> list[Step]:
        """Replace any earlier plan of this owner with these steps (one transaction); returns them numbered."""
        with self.store.transaction():
            table = self.store.db["steps"]
            table.delete_where("owner = ?", [self.owner])
            stamp = now_iso()
            for seq, step in enumerate(steps, start=1):
                step.seq = seq
            table.insert_all({"owner": self.owner, "seq": step.seq, "action": step.action, "target": step.target,
                              "data": json.dumps(step.data), "state": step.state, "result": step.result,
                              "updated_at": stamp} for step in steps)
        return steps

    def mark(self, step: Step, state: str, result: str | None = None, **data: Any) -> Step:
        """Record a step's outcome (and any data learnt, e.g. instance ids) the moment AWS answers."""
        step.state, step.result = state, result
        stored = self._stored(step)
        step.data = {**(json.loads(stored["data"]) if stored else {}), **step.data, **data}  # keep annotations
        if stored:
            self.store.db["steps"].update((self.owner, step.seq), {
                "state": state, "result": result, "data": json.dumps(step.data), "updated_at": now_iso()})
        return step

    def claim(self, step: Step, state: str, result: str | None = None) -> bool:
        """Planned → `state` in one statement: True for the one caller that moved it (two watchers after a
        restart finish a thing once)."""
        moved = self.store.execute("UPDATE steps SET state = ?, result = ?, updated_at = ? WHERE owner = ? AND "
                                   "seq = ? AND state = 'planned'", (state, result, now_iso(), self.owner, step.seq))
        if moved.rowcount == 1:
            step.state, step.result = state, result
        return moved.rowcount == 1

    def claim_data(self, step: Step, key: str, value: Any) -> bool:
        """Set ``data[key]`` on a planned step that has none yet, in one statement: True for the one caller that set
        it (e.g. the right to start a rollout group's refresh, with two starters — processes — on one database)."""
        path = f"$.{key}"
        moved = self.store.execute("UPDATE steps SET data = json_set(data, ?, json(?)), updated_at = ? WHERE owner = ?"
                                   " AND seq = ? AND state = 'planned' AND json_extract(data, ?) IS NULL",
                                   (path, json.dumps(value), now_iso(), self.owner, step.seq, path))
        if moved.rowcount == 1:
            step.data[key] = value
        return moved.rowcount == 1

    def annotate(self, action: str, **data: Any) -> None:
        """Add what was learnt (a message ts, say) to this owner's step(s) of an action."""
        for step in self.all():
            if step.action == action:
                step.data.update(data)
                self.store.db["steps"].update((self.owner, step.seq), {"data": json.dumps(step.data)})

    def all(self) -> list[Step]:
        rows = self.store.db["steps"].rows_where("owner = ?", [self.owner], order_by="seq")
        return [Step(row["action"], row["target"], json.loads(row["data"]), row["state"], row["result"], row["seq"])
                for row in rows]

    def forget(self) -> None:
        self.store.db["steps"].delete_where("owner = ?", [self.owner])

    def _stored(self, step: Step) -> dict | None:
        return next(self.store.db["steps"].rows_where("owner = ? AND seq = ?", [self.owner, step.seq],
                                                      select="data"), None)


def owners_with_open(store, action: str, prefix: str) -> list[str]:
    """Owners (starting with prefix) that still have a planned step of this action: work a crash left."""
    rows = store.db["steps"].rows_where("state = 'planned' AND action = ? AND owner LIKE ?",
                                        [action, prefix.replace("%", "") + "%"], order_by="owner", select="owner")
    return list(dict.fromkeys(row["owner"] for row in rows))


def owners_with(store, action: str, prefix: str) -> list[str]:
    """Owners (starting with prefix) that have a step of this action, in any state (e.g. every bake ever started)."""
    rows = store.db["steps"].rows_where("action = ? AND owner LIKE ?", [action, prefix.replace("%", "") + "%"],
                                        order_by="owner", select="owner")
    return list(dict.fromkeys(row["owner"] for row in rows))


def any_with_data(store, action: str, prefix: str, key: str, value: str) -> bool:
    """Whether an owner (starting with prefix) has a step of this action whose data has `key` = `value` (e.g. a
    bake that started this Image Builder build)."""
    rows = store.db["steps"].rows_where(f"action = ? AND owner LIKE ? AND json_extract(data, '$.{key}') = ?",
                                        [action, prefix.replace("%", "") + "%", value], select="1", limit=1)
    return any(True for _ in rows)


def done_targets(store, owners: list[str], action: str) -> list[str]:
    """The targets of these owners' steps of ``action`` that are done (e.g. the snapshots a deregister deleted)."""
    if not owners or not store.db["steps"].exists():  # a read-only file from before steps existed
        return []
    marks = ", ".join("?" * len(owners))
    rows = store.db["steps"].rows_where(f"owner IN ({marks}) AND action = ? AND state = 'done'", [*owners, action],
                                        order_by="owner, seq", select="target")
    return [row["target"] for row in rows]


def prune(store, before: str) -> int:
    """Forget the steps of owners with nothing left to do, last touched before ``before`` (ISO, UTC). One DELETE
    with the owners chosen inside it (no owner gets a new step between choosing and deleting); its count is
    reported."""
    return store.execute(
        "DELETE FROM steps WHERE owner IN (SELECT owner FROM steps GROUP BY owner"
        " HAVING sum(state = 'planned') = 0 AND max(updated_at) < ?)", (before,)).rowcount


@dataclass
class Resumed:
    """What was done before a restart and what recovery did after it, as short phrases."""

    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        parts = [f"Before the restart: {', '.join(self.before) if self.before else 'nothing'}"]
        parts.append(f"after: {', '.join(self.after) if self.after else 'nothing left to do'}")
        text = "; ".join(parts)
        if self.failed:
            text += f"; but could NOT {'; '.join(self.failed)}"
        return text + "."
