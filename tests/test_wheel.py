"""`pip install .` as an operator does it: build the wheel, install it (not editable) into a fresh virtual
environment outside the checkout, and run `amibot` from a directory that is not the checkout either.

The editable install of the dev venv hides a package left out of the wheel (the checkout is importable); this
module does not. One wheel and one venv serve the whole module; the dependencies come from
requirements-dev.lock (the demo needs moto). Building and installing take about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers")
# What the wheel needs besides the modules, as globs relative to the checkout.
PACKAGE_DATA = ("bot/*.toml", "bot/*.json", "bot/devtools/scripts/*.txt")
# Copied to a scratch directory before building, so the build leaves no build/ or *.egg-info in the checkout.
NOT_SOURCE = (".git", ".venv", "tests", "bench", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache",
              ".ruff_cache", "*.db", "*.db-*")
PIP_TIMEOUT = 600
RUN_TIMEOUT = 300


def pip(*args: str) -> None:
    """The dev venv's pip (`--python` points it at another environment when asked)."""
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=PIP_TIMEOUT)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("wheel-build")
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(scratch / "dist"), str(source))
    (built,) = (scratch / "dist").glob("amibot-*.whl")
    return built


class Installed:
    """The fresh environment with the wheel installed, and a working directory outside the checkout."""

    def __init__(self, venv: Path, workdir: Path):
        self.venv, self.workdir = venv, workdir

    def run(self, *args: str, executable: str = "amibot") -> subprocess.CompletedProcess:
        env = {name: value for name, value in os.environ.items()
               if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run([str(self.venv / "bin" / executable), *args], cwd=self.workdir, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("wheel-install")
    assert not base.resolve().is_relative_to(ROOT), "the test environment must live outside the checkout"
    venv = base / "venv"
    # No pip inside (bootstrapping it costs seconds): the dev venv's pip installs into it with --python.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    target = ("--python", str(venv / "bin" / "python"))
    # The lock pins every dependency, so pip need not resolve them; no .pyc compiling up front either.
    pip(*target, "install", "--quiet", "--no-compile", "--no-deps", "-r", str(ROOT / "requirements-dev.lock"))
    # The wheel itself with dependency resolution: its declared ranges must accept the locked versions.
    pip(*target, "install", "--quiet", "--no-compile", str(wheel))
    workdir = base / "elsewhere"
    workdir.mkdir()
    return Installed(venv, workdir)


def source_files() -> set[str]:
    found = {path.relative_to(ROOT).as_posix() for package in PACKAGES for path in (ROOT / package).rglob("*.py")
             if "__pycache__" not in path.parts}
    found |= {path.relative_to(ROOT).as_posix() for pattern in PACKAGE_DATA for path in ROOT.glob(pattern)}
    return found


def test_every_module_and_data_file_of_the_source_tree_is_in_the_wheel(wheel):
    expected = source_files()
    assert "bot/devtools/scripts/lifecycle.txt" in expected and "bot/base_images.toml" in expected
    assert {"bot/services/digest.py", "bot/render/home.py", "handlers/actions/approvals.py",
            "handlers/views/launch.py"} <= expected  # the subpackages the hand-written list used to miss
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel: {missing}"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_every_directory_with_modules_is_a_package():
    """Discovery finds packages by their __init__.py: a directory of modules without one would be left out."""
    directories = {path.parent for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                   if "__pycache__" not in path.parts}
    without = sorted(str(d.relative_to(ROOT)) for d in directories if not (d / "__init__.py").exists())
    assert not without, f"directories of modules without an __init__.py: {without}"


def test_the_license_is_the_apache_license_that_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    program = ("import importlib, pkgutil, bot, handlers\n"
               "print(bot.__file__)\n"
               "for package in (bot, handlers):\n"
               "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
               "        importlib.import_module(module.name)\n"
               "print('imported all')\n")
    result = installed.run("-c", program, executable="python")
    assert result.returncode == 0, result.stderr[-3000:]
    location, done = result.stdout.splitlines()[:2]
    assert Path(location).resolve().is_relative_to(installed.venv.resolve()) and "site-packages" in location
    assert done == "imported all"


def test_amibot_help_runs_from_the_installed_wheel(installed):
    result = installed.run("--help")
    assert result.returncode == 0, result.stderr[-3000:]
    for command in ("serve", "socket", "check-config", "audit", "iam-policy", "digest", "demo"):
        assert command in result.stdout


def test_iam_policy_from_the_installed_wheel_is_the_committed_one(installed):
    result = installed.run("iam-policy")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    committed = json.loads((ROOT / "iam-policy.json").read_text())

    def actions(policy):
        return sorted(action for statement in policy["Statement"] for action in statement["Action"])

    assert actions(printed) == actions(committed) and len(actions(printed)) > 10


def test_the_shipped_lifecycle_script_runs_from_the_installed_wheel(installed):
    result = installed.run("demo", "--script", "lifecycle")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "✓ the script ran" in result.stdout and "✗" not in result.stdout
    assert "Deregistered" in result.stdout  # the script went all the way through the life of an image
