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
    factory = {"app.py", "wiring.py"}  # the app factory and its composition root
    offenders = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "bot").rglob("*.py")
                       if path.name not in factory and any(name == "handlers" or name.startswith("handlers.")
                                                        for name in imported_modules(path)))
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the modules of `packages` it imports (lazy imports inside functions count)."""
    modules = {_module_name(path): path for package in packages for path in (ROOT / package).rglob("*.py")}
    return {name: {imported for imported in imported_modules(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest import path from `start` back to itself, or None."""
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for imported in sorted(graph.get(path[-1], ())):
            if imported == start:
                return path + [start]
            if imported not in seen:
                seen.add(imported)
                paths.append(path + [imported])
    return None


def test_no_import_circles_among_the_slack_listeners():
    """A listener module never needs another that needs it back: what two listeners share lives in a module of
    its own (e.g. the launch flow that both `/ami launch` and the launch form start)."""
    graph = {name: imports for name, imports in _import_graph(("handlers",)).items()}
    graph = {name: {i for i in imports if i != "handlers"} for name, imports in graph.items() if name != "handlers"}
    circles = {name: cycle for name in graph if (cycle := _cycle_through(graph, name))}
    assert circles == {}


def test_the_renderers_never_import_back_the_services_that_use_them():
    """The circles the issue names (bot/services/approvals.py ↔ bot/render/approvals.py, bot/services/deregister.py ↔
    bot/render/deregister.py): a renderer may read a service's data types, never the other way round, so no
    module in bot/render/ is on an import circle with bot/services/ or bot/services/approvals.py."""
    graph = _import_graph(("bot",))
    circles = {name: cycle for name in graph if name.startswith("bot.render")
               and (cycle := _cycle_through(graph, name))
               and any(step.startswith("bot.services") or step == "bot.services.approvals" for step in cycle)}
    assert circles == {}
