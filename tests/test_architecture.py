"""The fixed shape, checked from the source (issue 20 §2): every import of bot/ and handlers/ — at the top, inside
a function, under TYPE_CHECKING, relative or absolute — goes to the module's own package or a lower layer; no
module is on an import circle; the services (and the approval engine among them) never import Slack's SDKs,
the renderers or bot/slack. A failure names each offending import as `file:line → target`."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own layer and the layers before it, never one after.
LAYERS = [
    ("core", ("bot", "bot.core")),  # bot/__init__.py holds only the version
    ("aws", ("bot.aws",)),
    ("durable", ("bot.durable",)),
    ("services", ("bot.services",)),
    ("render", ("bot.render",)),
    ("slack", ("bot.slack",)),
    ("handlers", ("handlers",)),
    ("runtime", ("bot.devtools", "bot.app", "bot.wiring", "bot.cli", "bot.scheduler", "bot.iam_policy")),
]
NO_SLACK_IN_SERVICES = ("slack_sdk", "slack_bolt", "bot.render", "bot.slack")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    line: int
    target: str  # the imported module (of bot/ or handlers/), or the external name as written

    def __str__(self) -> str:
        return f"{path_of(self.source)}:{self.line} → {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(path): path for package in ("bot", "handlers")
            for path in sorted((ROOT / package).rglob("*.py"))}


MODULES = our_modules()


def path_of(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def _known(name: str) -> str | None:
    """The module of ours that importing `name` runs last: `name` itself, or the nearest package holding it
    (`from bot.render.blocks import escape` imports bot.render.blocks)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a (maybe relative) `from … import` names, seen from `module`."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str) -> list[Import]:
    """Every import in the module's source, wherever it stands (ast.walk: function bodies and TYPE_CHECKING
    blocks too). Ours resolve to the module imported; others are kept as written."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, _known(alias.name) or alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            for alias in node.names:  # `from bot.services import approvals` imports the module approvals
                target = _known(f"{base}.{alias.name}") if alias.name != "*" else None
                found.append(Import(module, node.lineno, target or _known(base) or base))
    return found


ALL_IMPORTS = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming the module (bot.core.x → core; bot → core)."""
    best, index = "", None
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, position
    if index is None:
        raise AssertionError(f"{path_of(module)} is in no layer: add it to a package or to LAYERS")
    return index


def internal_edges() -> list[Import]:
    """Each import of one of our modules by another, once per line (`from x import a, b` is one)."""
    return list(dict.fromkeys(item for module, items in ALL_IMPORTS.items() for item in items
                              if item.target in MODULES and item.target != module))


def test_every_module_has_a_layer():
    assert [path_of(module) for module in MODULES if _layer_or_none(module) is None] == []


def _layer_or_none(module: str) -> int | None:
    try:
        return layer_of(module)
    except AssertionError:
        return None


def test_no_module_imports_a_higher_layer():
    upward = [f"{item} ({LAYERS[layer_of(item.source)][0]} imports {LAYERS[layer_of(item.target)][0]})"
              for item in internal_edges() if layer_of(item.target) > layer_of(item.source)]
    assert upward == [], "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the groups of modules that reach each other, each of more than one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def _circle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest import path from `start` back to itself inside one strongly connected group."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for imported in sorted(graph[path[-1]] & within):
            if imported == start:
                return path + [start]
            if imported not in seen:
                seen.add(imported)
                paths.append(path + [imported])
    raise AssertionError(f"no circle through {start}")


def test_no_import_circle():
    edges = internal_edges()
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    where: dict[tuple[str, str], Import] = {}
    for item in edges:
        graph[item.source].add(item.target)
        where.setdefault((item.source, item.target), item)
    circles = []
    for group in strongly_connected(graph):
        circle = _circle(graph, group[0], set(group))
        steps = [str(where[(a, b)]) for a, b in zip(circle, circle[1:], strict=False)]
        circles.append(f"{len(group)} modules reach each other ({', '.join(group)}); one circle:\n  "
                       + "\n  ".join(steps))
    assert circles == [], "import circles:\n" + "\n".join(circles)


def test_services_never_import_slack_or_the_renderers():
    """Services (the approval engine among them) return data; rendering and Slack are above them."""
    offenders = list(dict.fromkeys(
        str(item) for module, items in ALL_IMPORTS.items() if layer_of(module) == 3 for item in items
        if any(item.target == name or item.target.startswith(name + ".") for name in NO_SLACK_IN_SERVICES)))
    assert offenders == [], "services importing Slack or bot/render:\n" + "\n".join(offenders)


SLACK_METHODS = ("chat_", "views_", "files_", "conversations_", "reactions_", "users_")


def test_services_never_call_slack():
    """Not through an import, nor through the context's client: no `….slack` and no Web API method in a service
    (the edge, handlers/ and bot/slack/, asks Slack and hands the service what it said)."""
    offenders = []
    for module in MODULES:
        if layer_of(module) != 3:
            continue
        for node in ast.walk(ast.parse(MODULES[module].read_text())):
            if isinstance(node, ast.Attribute) and (node.attr == "slack" or node.attr.startswith(SLACK_METHODS)):
                offenders.append(f"{path_of(module)}:{node.lineno} → .{node.attr}")
    assert offenders == [], "services calling Slack:\n" + "\n".join(offenders)


def test_bot_imports_handlers_only_in_the_runtime():
    offenders = [str(item) for item in internal_edges()
                 if item.target.split(".")[0] == "handlers" and item.source.split(".")[0] == "bot"
                 and layer_of(item.source) != len(LAYERS) - 1]
    assert offenders == []


# --- the checker itself: what it must catch ------------------------------------------------------------------

def _imports_in(source: str, module: str = "bot.services.approvals") -> list[str]:
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            found += [(_known(f"{base}.{alias.name}") or _known(base) or base) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [_known(alias.name) or alias.name for alias in node.names]
    return found


def test_the_checker_sees_lazy_type_checking_and_relative_imports():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from bot.slack.context import Context\n"
              "def later():\n    from ..render import blocks\n    from . import launch\n    import bot.slack.outbox\n")
    expected = {"bot.slack.context", "bot.render.blocks", "bot.services.launch", "bot.slack.outbox"}
    assert expected <= set(_imports_in(source))
    assert [layer_of(name) for name in ("bot", "bot.core.errors", "bot.slack.outbox", "handlers.events", "bot.app",
                                        "bot.devtools.demo")] == [0, 0, 5, 6, 7, 7]


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert _circle(graph, "a", {"a", "b", "c"}) == ["a", "b", "c", "a"]
