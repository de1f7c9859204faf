"""What an operator deploys from (issue 21 §6): the systemd unit systemd itself accepts, sandboxed, keeping the
database in its state directory; a going-live page with one complete numbered path per mode; the README's notes
for a first clone; a changelog from now on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "amibot.service"


def directives(text: str) -> dict[str, list[str]]:
    """{Section.Key: [values]} of a systemd unit (a key may repeat, e.g. Environment=)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def test_the_systemd_unit_keeps_the_database_in_its_state_directory_restarts_and_is_sandboxed():
    unit = directives(UNIT.read_text())
    service = {key.removeprefix("Service."): values for key, values in unit.items() if key.startswith("Service.")}
    assert service["StateDirectory"] == ["amibot"]
    assert "AMIBOT_DB=/var/lib/amibot/amibot.db" in service["Environment"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a lost database waits for a person (exit_codes: 2)
    assert service["EnvironmentFile"] == ["/etc/amibot/env"]  # the secrets, never in the unit
    assert not [value for value in service["Environment"] if value.startswith(("SLACK_", "AWS_SECRET"))]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "DynamicUser": "yes"}.items():
        assert service[key] == [value], key
    [command] = service["ExecStart"]
    assert re.fullmatch(r"/opt/amibot/bin/amibot (socket|serve)\b.*", command)
    assert unit["Install.WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path):
    """systemd's own parser: an unknown or malformed directive is a warning on stderr, so stderr must be empty.
    The installed path of amibot is this venv's, which systemd-analyze needs to exist."""
    unit = tmp_path / "amibot.service"
    unit.write_text(UNIT.read_text().replace("/opt/amibot/bin/amibot", str(Path(sys.executable).parent / "amibot")))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def numbered_steps(section: str) -> list[str]:
    return re.findall(r"^(\d+)\. \*\*", section, re.M)


def test_going_live_has_one_complete_numbered_path_per_mode():
    page = (ROOT / "docs" / "going-live.md").read_text()
    socket_mode = page.split("## Socket Mode, step by step")[1].split("\n## ")[0]
    http = page.split("## HTTP behind a load balancer, step by step")[1].split("\n## ")[0]
    for path, secret, command in ((socket_mode, "SLACK_APP_TOKEN", "amibot socket"),
                                  (http, "SLACK_SIGNING_SECRET", "amibot serve")):
        steps = numbered_steps(path)
        assert steps == [str(number) for number in range(1, len(steps) + 1)] and len(steps) >= 10
        for needed in ("manifest.yml", "iam.md", "AMIBOT_DB", "deploy/amibot.service", "Procfile", secret,
                       "/etc/amibot/env", "/healthz", "/metrics", command, "check-config", "/ami help"):
            assert needed in path, needed
    assert "ephemeral disk" in socket_mode and "--new-database" in socket_mode
    assert "network file system" in http


def test_the_readme_tells_a_first_clone_what_its_machine_needs():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart")[1].split("\n## ")[0]
    assert "`python3` must be Python 3.11 or newer" in quickstart and "make PYTHON=" in quickstart
    assert "python3-venv" in quickstart and "GB of memory" in quickstart
    assert "(docs/going-live.md)" in readme.split("## Going live")[1].split("\n## ")[0]


def test_the_changelog_has_an_unreleased_section_naming_this_issues_operations():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    unreleased = changelog.split("## Unreleased")[1].split("\n## ")[0]
    for change in ("amibot backup DEST", "[backup]", "amibot migrate --check", "going-live.md"):
        assert change in unreleased, change
