"""The fixed shape, checked: services and the approval engine never import the renderers; bot/ never imports
handlers/ except in the app factory. (Read from the source, so a lazy import inside a function counts too.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_services_and_the_approval_engine_never_import_render():
    offenders = {}
    for path in [*sorted((ROOT / "bot" / "services").glob("*.py")), ROOT / "bot" / "approvals.py"]:
        bad = sorted(name for name in imported_modules(path) if name == "bot.render" or name.startswith("bot.render."))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_bot_imports_handlers_only_in_the_app_factory():
    offenders = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "bot").rglob("*.py")
                       if path.name != "app.py" and any(name == "handlers" or name.startswith("handlers.")
                                                        for name in imported_modules(path)))
    assert offenders == []
