"""One owner per table (issue 20 §4): SQL lives only in the modules bot/durable/store.py's docstring names, and an
owner's SQL and sqlite-utils calls touch only its own tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bot.durable import store

ROOT = Path(__file__).resolve().parents[1]
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA|"
                 r"BEGIN\b(?!\s+generated)|COMMIT\b|ROLLBACK\b)", re.S)  # not the docs' "BEGIN generated" markers
TABLE_AFTER = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+(\w+)")
NOT_TABLES = {"SET", "IF", "sqlite_master", "json_each"}  # json_each: SQLite's table-valued function, no table
SQLITE_UTILS_CALLS = {"execute", "executemany", "executescript"}
# The one read across owners, named in the owner list: the store's file check reads the audit trail's last row id
# (a number that only grows) on its own connection, and cannot call bot/durable/audit.py, which sits above it.
ALSO_READS = {"bot/durable/store.py": {"audit_head"}}


def owners() -> dict[str, set[str]]:
    """{module path: its tables}, read from the schema module's docstring."""
    found: dict[str, set[str]] = {}
    for line in store.__doc__.splitlines():
        match = re.match(r"^\s{4}([\w, ]+?)\s{2,}((?:bot|handlers)/\S+\.py)", line)
        if match:
            found.setdefault(match.group(2), set()).update(name.strip() for name in match.group(1).split(","))
    return found


def modules() -> list[Path]:
    return sorted(path for folder in ("bot", "handlers") for path in (ROOT / folder).rglob("*.py"))


def strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string in the code (f-strings joined, docstrings left out), with its line."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            found.append((node.lineno, "".join(part.value if isinstance(part, ast.Constant) else "{}"
                                               for part in node.values)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
    return found


def sql_in(tree: ast.AST) -> list[tuple[int, str]]:
    """SQL statements in the code; the migrations' scripts are the schema's history, not table work."""
    scripts = {migration.change for migration in store.MIGRATIONS}
    return sorted((line, text) for line, text in strings(tree) if SQL.search(text) and text not in scripts)


def tables_named(tree: ast.AST) -> set[str]:
    """Tables in the module's SQL and in its sqlite-utils subscripts (``db["jobs"]``)."""
    named = {name for _line, text in sql_in(tree) for name in TABLE_AFTER.findall(text)} - NOT_TABLES
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "db"
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            named.add(node.slice.value)
    return named


def test_the_owner_list_names_every_table_once():
    listed = [table for tables in owners().values() for table in tables]
    assert len(listed) == len(set(listed))
    made = set(store.Store(":memory:").db.table_names())  # what every migration made, SQL scripts and functions
    assert made == set(listed)
    assert all((ROOT / path).exists() for path in owners())


def test_no_sql_outside_the_owners():
    owning = set(owners())
    outside = []
    for path in modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative in owning:
            continue
        tree = ast.parse(path.read_text())
        outside += [f"{relative}:{line}: {text.strip()[:70]}" for line, text in sql_in(tree)]
        outside += [f"{relative}:{node.lineno}: .{node.func.attr}(…)" for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQLITE_UTILS_CALLS and node.args
                    and isinstance(node.args[0], ast.Constant | ast.JoinedStr)]
        outside += [f"{relative}: sqlite-utils table {name}" for name in tables_named(tree)]
    assert outside == []


def test_each_owner_touches_only_its_own_tables():
    strays = {}
    for path, tables in owners().items():
        named = tables_named(ast.parse((ROOT / path).read_text()))
        stray = named - tables - ALSO_READS.get(path, set())
        if stray:
            strays[path] = sorted(stray)
    assert strays == {}


def test_the_scan_sees_sql():
    """The scan itself: it finds a statement in code, and leaves prose about statements alone."""
    tree = ast.parse('"""One INSERT is the claim."""\n'
                     'store.execute("DELETE FROM jobs WHERE id = ?", (1,))\n'
                     'x = f"SELECT count(*) FROM {name} WHERE kind = ?"\n'
                     'y = store.db["outbox"]\n')
    assert [line for line, _text in sql_in(tree)] == [2, 3]
    assert tables_named(tree) == {"jobs", "outbox"}
