"""The audit trail: append-only and hash-chained.

Each row stores the SHA-256 of its own content together with the previous row's hash, and a
one-row ``audit_head`` pins the last id and hash. Editing, inserting or deleting any row — the
last one included — breaks the chain, and ``verify`` names the first row where it breaks.
(Someone able to rewrite the whole file can forge a consistent chain; pin the head hash that
``amibot audit verify`` prints somewhere else if that is in your threat model.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.core import csvfile
from bot.durable.store import Store

GENESIS = "0" * 64
FIELDS = ("id", "ts", "actor", "channel", "action", "target", "detail", "outcome", "prev_hash")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(row: dict[str, Any]) -> str:
    content = {name: row.get(name) for name in FIELDS}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# The trail is append-only, so nothing big may enter it: any text in a row's detail is cut at this many
# characters (a command's text is at most about 4,000 from Slack, and amibot refuses more than 2,000).
MAX_DETAIL_TEXT = 2000


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
        return f"{value[:MAX_DETAIL_TEXT]}… [cut: {len(value):,} characters]"
    if isinstance(value, dict):
        return {key: _cut(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_cut(item) for item in value]
    return value


def record(store: Store, *, actor: str, action: str, outcome: str, channel: str | None = None,
           target: str | None = None, detail: dict[str, Any] | None = None, ts: str | None = None) -> int:
    """Append one row; return its id. Safe across threads and processes (BEGIN IMMEDIATE). Text longer than
    MAX_DETAIL_TEXT is cut (and says so), in the detail and in the outcome."""
    detail_json = json.dumps(_cut(detail or {}), sort_keys=True, default=str, ensure_ascii=False)
    outcome = _cut(outcome)
    # Raw SQL on purpose: read the head, append, move the head, all under the write lock BEGIN IMMEDIATE takes, so
    # two writers (threads or processes) can never link two rows to one predecessor.
    with store.transaction() as connection:
        head = connection.execute("SELECT last_id, last_hash FROM audit_head WHERE one = 1").fetchone()
        last_id, prev_hash = (head[0], head[1]) if head else (0, GENESIS)
        row = {"id": last_id + 1, "ts": ts or now_iso(), "actor": actor, "channel": channel,
               "action": action, "target": target, "detail": detail_json, "outcome": outcome,
               "prev_hash": prev_hash}
        row["hash"] = row_hash(row)
        connection.execute(
            "INSERT INTO audit (id, ts, actor, channel, action, target, detail, outcome, prev_hash, hash)"
            " VALUES (:id, :ts, :actor, :channel, :action, :target, :detail, :outcome, :prev_hash, :hash)", row)
        connection.execute("INSERT INTO audit_head (one, last_id, last_hash) VALUES (1, ?, ?)"
                           " ON CONFLICT(one) DO UPDATE SET last_id = excluded.last_id,"
                           " last_hash = excluded.last_hash", (row["id"], row["hash"]))
    return row["id"]


@dataclass
class Verdict:
    ok: bool
    rows: int
    head: str
    bad_id: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.rows} rows, head {self.head}"
        return f"audit trail broken at row {self.bad_id}: {self.reason}"


def verify(store: Store) -> Verdict:
    """Recompute the chain from the first row; stop at the first row that does not fit."""
    expected_prev, expected_id, count = GENESIS, 1, 0
    for row in store.db["audit"].rows_where(order_by="id", select=", ".join([*FIELDS, "hash"])):
        count += 1
        if row["id"] != expected_id:
            return Verdict(False, count, expected_prev, expected_id,
                           f"row {expected_id} is missing (next row is {row['id']})")
        if row["prev_hash"] != expected_prev:
            return Verdict(False, count, expected_prev, row["id"],
                           "its link to the previous row does not match (a row was removed or inserted)")
        if row_hash(row) != row["hash"]:
            return Verdict(False, count, expected_prev, row["id"], "its content does not match its hash (edited)")
        expected_prev, expected_id = row["hash"], expected_id + 1
    head = _head(store)
    last_id = expected_id - 1
    if head is None and last_id:
        return Verdict(False, count, expected_prev, last_id, "the chain head is missing")
    if head is not None and (head["last_id"] != last_id or head["last_hash"] != expected_prev):
        return Verdict(False, count, expected_prev, head["last_id"],
                       f"the chain head says row {head['last_id']} is last but the table ends at row {last_id}"
                       " (rows were removed from the end)")
    return Verdict(True, count, expected_prev)


def _head(store: Store) -> dict | None:
    return next(store.db["audit_head"].rows_where("one = 1", select="last_id, last_hash"), None)


def state(store: Store) -> tuple[int, int, str]:
    """(rows, last row id, last hash) of the chain, read in one read transaction so they agree."""
    connection = store.conn()
    connection.execute("BEGIN")
    try:
        head = _head(store)
        count = store.db["audit"].count
    finally:
        connection.execute("COMMIT")
    return (count, head["last_id"], head["last_hash"]) if head else (count, 0, GENESIS)


def count(store: Store) -> int:
    return store.db["audit"].count


def hash_of(store: Store, row_id: int) -> str | None:
    """The hash of row ``row_id``, or None when there is no such row."""
    row = next(store.db["audit"].rows_where("id = ?", [row_id], select="hash"), None)
    return row["hash"] if row else None


def has_hash(store: Store, digest: str) -> bool:
    """Whether some row has this hash."""
    return store.db["audit"].count_where("hash = ?", [digest]) > 0


def rows(store: Store, since: str | None = None, target: str | None = None, limit: int | None = None,
         newest_first: bool = False) -> list[dict[str, Any]]:
    clauses, params = [], []
    if since:
        clauses.append("ts >= ?")
        params.append(since)
    if target:
        clauses.append("(target = ? OR detail LIKE ?)")
        params += [target, f"%{target}%"]
    found = list(store.db["audit"].rows_where(" AND ".join(clauses) or None, params,
                                              order_by="id DESC" if newest_first else "id", limit=limit or None))
    for row in found:
        row["detail"] = json.loads(row["detail"])
    return found


def export(store: Store, fmt: str = "csv", since: str | None = None) -> str:
    found = rows(store, since=since)
    if fmt == "json":
        return json.dumps(found, indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}: use csv or json")
    # Cells anyone could fill (a command's first word is its target) are defused as spreadsheet formulas;
    # the JSON export is the exact record.
    return csvfile.text([*FIELDS, "hash"], ({**row, "detail": json.dumps(row["detail"], sort_keys=True,
                                                                          ensure_ascii=False)} for row in found))
