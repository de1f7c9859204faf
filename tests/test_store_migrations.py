"""Migrations are recorded by name (issue 20 §4): a file made before names keeps working and its rows, and a
migration added later before another one is still applied to a file that already has the other."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from bot.durable import store as store_module
from bot.durable.store import MIGRATION_SET, MIGRATIONS, Migration, Store, _statements


def applied_names(store: Store) -> list[str]:
    return [row["name"] for row in store.query(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id", (MIGRATION_SET,))]


def old_database(path, up_to: int) -> None:
    """A file as the code before names left it: the numbered migrations up to ``up_to`` applied, user_version set,
    and rows in it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        for migration in MIGRATIONS:
            if migration.version and migration.version <= up_to:
                for statement in _statements(migration.change):
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {up_to}")
        connection.execute("INSERT INTO jobs (kind, payload, state, created_at, updated_at, dedupe_key)"
                           " VALUES ('digest', '{}', 'done', '2026-01-01', '2026-01-01', 'old-key')")
        connection.execute("INSERT INTO promotions (family, region, image_id, promoted_by, promoted_at)"
                           " VALUES ('web', 'eu-west-1', 'ami-0123', 'U1', '2026-01-01')")


def test_a_new_file_records_every_migration_by_name_once(tmp_path):
    store = Store(tmp_path / "new.db")
    assert applied_names(store) == [migration.name for migration in MIGRATIONS]
    assert store.schema_version == max(migration.version or 0 for migration in MIGRATIONS)
    assert Store(tmp_path / "new.db").migrate() == []
    assert applied_names(store) == [migration.name for migration in MIGRATIONS]


def test_a_file_from_before_names_keeps_its_rows_and_gets_only_what_it_lacks(tmp_path):
    path = tmp_path / "old.db"
    old_database(path, up_to=10)
    store = Store(path)
    assert applied_names(store) == [migration.name for migration in MIGRATIONS]  # each once, in order
    assert store.one("SELECT dedupe_key FROM jobs")["dedupe_key"] == "old-key"
    assert store.one("SELECT image_id, account FROM promotions") == {"image_id": "ami-0123", "account": ""}
    assert store.one("SELECT n FROM generation")["n"] >= 1  # 14 and 15 ran on it
    assert Store(path).migrate() == []
    assert len(applied_names(store)) == len(MIGRATIONS)


def test_a_file_before_names_counts_only_the_numbered_migrations_it_had(tmp_path, monkeypatch):
    """A migration added after names existed never counts as applied because of a number in the file."""
    added = Migration("0011_added_after_names", None, "a table added after names",
                      lambda db: db["later"].create({"id": int}, pk="id"))
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, added])
    path = tmp_path / "old.db"
    old_database(path, up_to=15)
    store = Store(path)
    assert applied_names(store)[-1] == "0011_added_after_names" and "later" in store.db.table_names()


def test_a_migration_added_before_one_the_file_has_is_still_applied(tmp_path, monkeypatch):
    path = tmp_path / "dev.db"
    Store(path).close()  # has every migration, the last ones included
    lower = Migration("0007_added_later", None, "a table and index made with sqlite-utils",
                      lambda db: db["added_later"].create({"key": str, "at": str}, pk="key").create_index(["at"]))
    at = next(index for index, migration in enumerate(MIGRATIONS) if migration.version == 8)
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS[:at], lower, *MIGRATIONS[at:]])
    store = Store(path)
    assert "added_later" in store.db.table_names()
    assert applied_names(store)[-1] == "0007_added_later"
    assert Store(path).migrate() == []


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "fail.db"
    Store(path).close()

    def broken(db):
        db["half_made"].create({"id": int}, pk="id")
        raise RuntimeError("boom")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, Migration("0099_broken", None, "fails", broken)])
    try:
        Store(path)
    except RuntimeError:
        pass
    monkeypatch.undo()
    store = Store(path)
    assert "half_made" not in store.db.table_names()
    assert "0099_broken" not in applied_names(store)
