"""The Slack manifest tells one story with the README: every scope is justified and used, none is extra."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.yml"


def _scopes_with_reasons() -> dict[str, str]:
    """scope -> the comment line right above it in manifest.yml."""
    reasons, previous = {}, ""
    for line in MANIFEST.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- ") and previous.startswith("#"):
            reasons[stripped[2:]] = previous
        previous = stripped
    return reasons


def test_manifest_parses_and_declares_the_command_events_and_home_tab():
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert [command["command"] for command in manifest["features"]["slash_commands"]] == ["/ami"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_every_bot_scope_is_justified_in_a_comment():
    manifest = yaml.safe_load(MANIFEST.read_text())
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    reasons = _scopes_with_reasons()
    for scope in scopes:
        assert scope in reasons, f"{scope} has no comment saying why the bot needs it"
        assert reasons[scope].startswith(f"# {scope}:"), reasons[scope]


def test_no_chat_write_public_because_the_going_live_steps_say_to_invite_the_bot():
    scopes = yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"]
    steps = (ROOT / "docs" / "going-live.md").read_text()  # the README points there for going live
    assert "chat:write.public" not in scopes
    assert re.search(r"\*\*Invite the bot\*\* to the channels", steps)
    assert "does not ask for `chat:write.public`" in steps
