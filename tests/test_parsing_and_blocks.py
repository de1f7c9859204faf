"""Pure parts: command parsing and Block Kit builders."""

from __future__ import annotations

import pytest

from bot.core.errors import UsageError
from bot.render import blocks
from bot.slack.subcommands import AMI_ID, Arg, Registry, Subcommand, clean, parse

SHOW = Subcommand("show", "one image", "/ami show <image>", "/ami show ami-0abc1234", args=(Arg("image"),))
DEREGISTER = Subcommand("deregister", "retire", "/ami deregister <ami-id> [--force]", "/ami deregister ami-0abc1234",
                        args=(Arg("ami-id", pattern=AMI_ID),), flags={"--force": None, "--region": "R"},
                        changing=True)
LIST = Subcommand("list", "images", "/ami list [text]", "/ami list web", args=(Arg("text", required=False, rest=True),),
                  aliases=("ls",))


@pytest.fixture
def registry():
    registry = Registry()
    for spec in (LIST, SHOW, DEREGISTER):
        registry.add(spec, lambda call: None)
    return registry


def test_help_and_empty_mean_help(registry):
    assert parse(registry, "") is None and parse(registry, "help") is None and parse(registry, "  ") is None


def test_positional_flags_and_values(registry):
    invocation = parse(registry, "deregister ami-0abc1234 --force --region=eu-west-1")
    assert invocation.args == {"ami-id": "ami-0abc1234"}
    assert invocation.flags == {"force": True, "region": "eu-west-1"}


def test_rest_argument_and_alias(registry):
    invocation = parse(registry, 'ls "web server" prod')
    assert invocation.subcommand is LIST and invocation.args["text"] == "web server prod"


def test_smart_punctuation_from_slack_clients(registry):
    invocation = parse(registry, "deregister ami-0abc1234 \u2014force")
    assert invocation.flags["force"] is True
    assert parse(registry, "show \u201cmy image\u201d").args["image"] == "my image"


def test_control_characters_are_dropped():
    assert clean("li\u0000st\u0007") == "li st"


@pytest.mark.parametrize("text, message", [
    ("deregister", "needs an ami-id"),
    ("deregister ami-nope", "is not a valid ami-id"),
    ("deregister ami-0abc1234 --region", "needs a value"),
    ("deregister ami-0abc1234 --nuke", "has no option `--nuke`"),
    ("show a b", "does not take `b`"),
    ("shwo x", "Did you mean `show`?"),
])
def test_usage_errors(registry, text, message):
    with pytest.raises(UsageError) as raised:
        parse(registry, text)
    assert message in raised.value.message


def test_escape_neutralises_mentions():
    assert blocks.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert "<!here>" not in blocks.error("hi <!here>")["text"]


def test_fit_caps_blocks_and_section_text():
    message = blocks.message("x", [blocks.section("y" * 5000) for _ in range(80)])
    assert len(message["blocks"]) == 50
    assert "more blocks not shown" in message["blocks"][-1]["elements"][0]["text"]
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if b["type"] == "section")


def test_usage_message_sections_stay_under_the_limit():
    specs = [Subcommand(f"cmd{n}", "does a thing " * 10, f"/ami cmd{n} <a> [--b B]", f"/ami cmd{n} x")
             for n in range(40)]
    message = blocks.usage_message(specs, problem="Unknown subcommand `x`.")
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if b["type"] == "section")
    assert all(f"`cmd{n}`" in str(message["blocks"]) for n in range(40))


def test_confirm_dialog_respects_limits():
    dialog = blocks.confirm_dialog("t" * 200, "x" * 500, "c" * 50, "d" * 50)
    assert len(dialog["title"]["text"]) <= 100 and len(dialog["text"]["text"]) <= 300
    assert len(dialog["confirm"]["text"]) <= 30 and len(dialog["deny"]["text"]) <= 30
