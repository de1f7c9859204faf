"""The audit trail: hash chain, tamper detection, export, and the CLI that checks it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from bot.durable import audit
from bot.durable.store import Store


def filled(tmp_path, rows=5) -> Store:
    store = Store(tmp_path / "audit.db")
    for number in range(rows):
        audit.record(store, actor=f"U0{number}", action="command.list", channel="C0OPS", target=f"ami-{number:08x}",
                     detail={"text": f"list {number}", "ünïcode": "✓"}, outcome="ok",
                     ts=f"2026-11-{20 + number:02d}T10:00:00.000000Z")
    return store


def test_intact_chain_verifies(tmp_path):
    verdict = audit.verify(filled(tmp_path))
    assert verdict.ok and verdict.rows == 5 and len(verdict.head) == 64


def test_edited_row_is_named(tmp_path):
    store = filled(tmp_path)
    store.execute("UPDATE audit SET outcome = 'nothing to see' WHERE id = 3")
    verdict = audit.verify(store)
    assert not verdict.ok and verdict.bad_id == 3 and "edited" in verdict.reason


def test_deleted_middle_row_is_found(tmp_path):
    store = filled(tmp_path)
    store.execute("DELETE FROM audit WHERE id = 2")
    verdict = audit.verify(store)
    assert not verdict.ok and verdict.bad_id == 2


def test_deleted_last_row_is_found(tmp_path):
    store = filled(tmp_path)
    store.execute("DELETE FROM audit WHERE id = 5")
    verdict = audit.verify(store)
    assert not verdict.ok and "removed from the end" in verdict.reason


def test_inserted_row_is_found(tmp_path):
    store = filled(tmp_path)
    row = store.one("SELECT * FROM audit WHERE id = 3")
    store.execute("UPDATE audit SET id = id + 100 WHERE id >= 3")
    store.execute("UPDATE audit SET id = id - 99 WHERE id >= 103")
    forged = {**row, "outcome": "forged"}
    forged["hash"] = audit.row_hash(forged)
    store.execute("INSERT INTO audit (id, ts, actor, channel, action, target, detail, outcome, prev_hash, hash)"
                  " VALUES (:id, :ts, :actor, :channel, :action, :target, :detail, :outcome, :prev_hash, :hash)",
                  forged)
    verdict = audit.verify(store)
    assert not verdict.ok and verdict.bad_id == 4


def test_concurrent_appends_keep_the_chain(tmp_path):
    import threading

    store = Store(tmp_path / "busy.db")
    threads = [threading.Thread(target=lambda n=n: [audit.record(store, actor=f"U{n}", action="x", outcome="ok")
                                                   for _ in range(20)]) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = audit.verify(store)
    assert verdict.ok and verdict.rows == 160


def test_export_csv_and_json_since(tmp_path):
    store = filled(tmp_path)
    rows = list(csv.DictReader(io.StringIO(audit.export(store, "csv", since="2026-11-23"))))
    assert [row["id"] for row in rows] == ["4", "5"]
    assert json.loads(rows[0]["detail"])["ünïcode"] == "✓"
    exported = json.loads(audit.export(store, "json"))
    assert len(exported) == 5 and exported[0]["hash"] == store.one("SELECT hash FROM audit WHERE id = 1")["hash"]


def cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "bot.cli", "audit", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "AMIBOT_DB": str(tmp_path / "audit.db")}, timeout=60)


def test_cli_verify_and_export(tmp_path):
    store = filled(tmp_path)
    ok = cli(tmp_path, "verify")
    assert ok.returncode == 0 and "intact: 5 rows" in ok.stdout
    exported = cli(tmp_path, "export", "--format", "json", "--since", "2026-11-24")
    assert exported.returncode == 0 and len(json.loads(exported.stdout)) == 1
    store.execute("UPDATE audit SET actor = 'U0EVIL' WHERE id = 4")
    broken = cli(tmp_path, "verify")
    assert broken.returncode == 1 and "broken at row 4" in broken.stderr
    bad_date = cli(tmp_path, "export", "--since", "last tuesday")
    assert bad_date.returncode != 0 and "--since expects a date" in bad_date.stderr


def test_migrations_are_recorded_and_idempotent(tmp_path):
    store = Store(tmp_path / "m.db")
    version = store.schema_version
    assert version >= 2
    assert Store(tmp_path / "m.db").migrate() == []
    assert store.one("PRAGMA journal_mode")["journal_mode"] == "wal"
