"""The docs a newcomer reads cannot drift from the code (issue 20 §5).

docs/commands.md, docs/configuration.md and the README's two summary tables are generated (bot/devtools/docs.py,
`make docs`): a committed page that differs from what the code generates fails here, naming the command that
regenerates it. The README stays short, and every relative link in README.md and docs/ leads somewhere.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bot import cli
from bot.core.stages import by_stage
from bot.devtools import docs
from bot.render.blocks import escape
from bot.slack.dispatch import help_message
from bot.slack.subcommands import flag_doc
from bot.wiring import subcommand_registry

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def test_the_committed_generated_docs_are_what_the_code_generates():
    stale = [str(path.relative_to(ROOT)) for path, text in docs.expected(ROOT, subcommand_registry(),
                                                                          cli.build_parser()).items()
             if not path.exists() or path.read_text() != text]
    assert stale == [], f"out of date: {', '.join(stale)}; regenerate them with `{docs.REGENERATE}`"


def test_amibot_docs_writes_every_generated_page_into_a_checkout(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    shutil.copy(README, tmp_path / "README.md")
    (tmp_path / "docs" / "commands.md").write_text("stale\n")

    assert cli.main(["docs", "--root", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("commands.md", "configuration.md"):
        assert (tmp_path / "docs" / name).read_text() == (ROOT / "docs" / name).read_text()
    assert (tmp_path / "README.md").read_text() == README.read_text()

    assert cli.main(["docs", "--root", str(tmp_path)]) == 0  # nothing left to write
    assert "up to date" in capsys.readouterr().out


def test_amibot_docs_refuses_a_readme_without_its_generated_blocks(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# amibot\n")
    assert cli.main(["docs", "--root", str(tmp_path)]) == 1
    assert "no generated block 'slash commands'" in capsys.readouterr().err


def test_every_flag_a_subcommand_declares_is_in_its_usage_line():
    """The usage line is written by hand next to the flags; the help, the parser's errors and docs/commands.md all
    show it, so a flag it forgets (`/ami base` once left out `--version`) is a flag nobody finds."""
    missing = {spec.name: [flag for flag in spec.flags if flag not in spec.usage]
               for spec in subcommand_registry().specs}
    assert {name: flags for name, flags in missing.items() if flags} == {}


def test_the_help_the_bot_shows_and_the_commands_page_come_from_the_same_declarations():
    registry = subcommand_registry()
    page = (ROOT / "docs" / "commands.md").read_text()
    overview = _texts(help_message(registry, "help"))
    for spec in registry.specs:
        assert f"`{spec.name}`" in overview and f"```\n{spec.usage}\n```" in page, spec.name
        answer = _texts(help_message(registry, f"help {spec.name}"))
        assert escape(spec.usage) in answer and escape(spec.example) in answer
        assert f"Example: `{spec.example}`" in page
        for flag in spec.flags:
            meaning, _ = docs.meaning_and_default(flag_doc(spec, flag), takes_value=True)
            assert escape(meaning) in answer and docs.table_cell(meaning) in page, (spec.name, flag)
    for stage, members in by_stage(registry.specs):  # grouped by stage in both, each stage with its example
        assert f"*{escape(stage.capitalize())}*" in overview and escape(members[0].example) in overview
        assert f"| {docs.table_cell(stage)} | [`/ami {members[0].name}`]" in page, stage


def _texts(message) -> str:
    """Every string in a Slack message (its blocks' text included), one per line."""
    if isinstance(message, dict):
        return "\n".join(_texts(value) for value in message.values())
    if isinstance(message, list):
        return "\n".join(_texts(value) for value in message)
    return message if isinstance(message, str) else ""


def test_the_readme_is_a_newcomers_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    assert re.search(r"^make demo ", text, re.M) and re.search(r"^make test ", text, re.M)


def test_the_makefile_names_the_readmes_quickstart_commands_and_they_exist():
    makefile = (ROOT / "Makefile").read_text()
    assert "`make demo`" in makefile.splitlines()[0] and "`make test`" in makefile.splitlines()[0]
    for target in ("demo", "test", "docs", "run", "socket", "check-config"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def _links(path: Path) -> list[str]:
    """Relative link targets in a Markdown file (code blocks and inline code ignored)."""
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`(?!\]|\()", "", text)  # inline code, but not a link whose text is code: [`x`](y)
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (a repeated heading gets -1, -2, …)."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", FENCE.sub("", path.read_text()), re.M):
        slug = docs.slug(re.sub(r"[`*_]", "", heading))
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(page):
    broken = []
    for target in _links(page):
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no such heading in {resolved.relative_to(ROOT)})")
    assert broken == [], f"{page.relative_to(ROOT)} links to: {broken}"


def test_the_link_check_sees_links_and_headings():
    """The check above is only as good as its reading of Markdown."""
    assert "docs/commands.md#ami-list" in _links(README)
    assert "LICENSE" in _links(README)
    assert {"ami-list", "ami-recycle-bin"} <= _anchors(ROOT / "docs" / "commands.md")
    assert "who-may-change-what--the-one-rule" in _anchors(ROOT / "docs" / "safety-and-approvals.md")
