"""The tests stay easy to change (issue 20 §6): what several test modules share lives in tests/support/, and no
module imports a test module — so a test file can be edited, split or deleted without breaking another one.
Imports are read from the syntax tree, function-local ones included."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SUPPORT = TESTS / "support"
PYTEST_FILES = {"conftest.py", "__init__.py"}


def is_test_module(path: Path) -> bool:
    return path.name.startswith("test_") and path.suffix == ".py"


def imported_modules(path: Path, root: Path = TESTS.parent) -> list[tuple[int, str]]:
    """(line, dotted name) of every module the file (under `root`) imports; `from tests import x` counts as
    tests.x."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = resolve(path.relative_to(root), node)
            found.append((node.lineno, package))
            found += [(node.lineno, f"{package}.{alias.name}") for alias in node.names]
    return found


def resolve(relative: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against the file's package)."""
    if not node.level:
        return node.module or ""
    package = list(relative.with_suffix("").parts[:-1])
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def reached_test_module(module: str) -> str | None:
    """The test module (or conftest) a dotted import name reaches into, if any: tests.test_x.f → tests.test_x."""
    parts = module.split(".")
    for end, part in enumerate(parts[1:], start=2):
        if parts[0] == "tests" and (part.startswith("test_") or part == "conftest"):
            return ".".join(parts[:end])
    return None


def names_a_test_module(module: str) -> bool:
    return reached_test_module(module) is not None


def test_no_module_under_tests_imports_a_test_module_or_conftest():
    offending = sorted({f"{path.relative_to(TESTS.parent)}:{line} imports {reached_test_module(module)}"
                        for path in TESTS.rglob("*.py")
                        for line, module in imported_modules(path) if names_a_test_module(module)})
    assert not offending, ("move what is shared into tests/support/ and import it from there:\n"
                           + "\n".join(offending))


def test_every_shared_helper_module_lives_in_tests_support():
    stray = [str(path.relative_to(TESTS.parent)) for path in sorted(TESTS.rglob("*.py"))
             if not is_test_module(path) and path.name not in PYTEST_FILES and SUPPORT not in path.parents]
    assert not stray, f"helper modules outside tests/support/: {stray}"


def test_the_layout_check_sees_each_form_of_the_import_it_forbids(tmp_path):
    sample = tmp_path / "tests" / "support" / "sample.py"
    sample.parent.mkdir(parents=True)
    forms = ["from tests.test_digest import registered", "from tests import test_home", "import tests.test_home",
             "from ..test_home import view_text", "from .. import test_home", "from tests.conftest import REGIONS",
             "def late():\n    from tests.test_drift import family"]
    for form in forms:
        sample.write_text(form + "\n")
        modules = [module for _, module in imported_modules(sample, root=tmp_path)]
        assert any(names_a_test_module(module) for module in modules), (form, modules)
    sample.write_text("from tests.support import seed\nfrom tests.support.harness import Harness\nimport bot.app\n")
    assert not any(names_a_test_module(module) for _, module in imported_modules(sample, root=tmp_path))
