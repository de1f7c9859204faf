"""Nothing a user typed is echoed raw (issue 14 §6): mentions and group pings in an answer are escaped at the
source, so `/ami versions <@U123>` cannot make the bot ping anyone. Nor can a tag value, a name or a description
(issue 19 §4): not in any block, not in a message's fallback text (what notifications show), through the real app
and through every message builder; and no CSV amibot writes holds a cell a spreadsheet would run."""

from __future__ import annotations

import collections
import csv
import dataclasses
import importlib
import inspect
import io
import pkgutil
import re
import subprocess
import sys
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bot
import bot.render
import bot.services
from bot.render import blocks
from bot.render.digest import Rendered
from bot.services import approvals
from bot.services.findings import ImageFindings
from bot.slack.subcommands import Subcommand
from tests.support import seed

MENTIONS = ["<@U123>", "<!subteam^S1>", "<!here>"]
COMMANDS = [  # the four first, then every other place a user's word comes back in an answer
    "versions {m}",
    "rollback {m}",
    "base {m}",
    "create {instance} image-x --family {m}",
    "versions {m} --region us-east-1",
    "promote {m}",
    "base al2023 --copy {m} --family {m}",
    "create {instance} {m}",
    "create {instance} image-y --version {m}",
    "register snap-0123456789abcdef0 {m}",
    "show {m}",
    "{m}",
]


@pytest.mark.parametrize("template", COMMANDS)
def test_no_raw_mention_is_echoed(harness, aws, template):
    instance = seed.instance(aws, name="builder") if "{instance}" in template else ""
    for mention in MENTIONS:
        before = len(harness.replies())
        harness.command(template.format(m=mention, instance=instance))
        texts = [call.text for call in harness.replies()[before:]]
        assert texts, f"the bot answered nothing to {template.format(m=mention, instance=instance)!r}"
        for text in texts:
            assert "<@" not in text and "<!" not in text, text
            assert mention.replace("<", "&lt;").replace(">", "&gt;") in text or "Unknown" in text or "usage" in \
                text.lower() or "not a valid" in text, text  # what was typed is shown, escaped
    for call in harness.fake.calls_to("chat.postMessage") + harness.fake.calls_to("chat.update"):
        assert all(mention not in call.text for mention in MENTIONS), call.text


# --- issue 19 §4: nothing in a message pings or links because of the data in it --------------------------------
# Slack parses mentions (<!channel>, <@U…>, <#C…>) and links in a message's fallback `text` — what notifications
# show — and in every mrkdwn text object; plain_text objects (headers, buttons, options, dialog texts) are shown as
# typed. So those two are checked, in every payload the bot sends and in every message builder's output.

DATA_PINGS = ("<!channel>", "<!here>", "<@U123>", "<@U999>", "<#C123>", "<http://evil")
DOUBLE_ESCAPED = ("&amp;lt;", "&amp;gt;", "&amp;amp;")
SURFACES = ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "views.publish", "views.open",
            "views.update")


def parsed_texts(payload: dict) -> list[tuple[str, str]]:
    """("fallback", text) for the payload's own `text`, ("mrkdwn", text) for each mrkdwn text object in it."""
    found = [("fallback", payload["text"])] if isinstance(payload.get("text"), str) else []

    def walk(value):
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            if value.get("type") == "mrkdwn" and isinstance(value.get("text"), str):
                found.append(("mrkdwn", value["text"]))
            for item in value.values():
                if isinstance(item, list | dict):
                    walk(item)
    walk({key: value for key, value in payload.items() if key != "text"})
    return found


def leaks(payload: dict) -> list[str]:
    """What in `payload` would ping, link or read wrong: a raw mention from the data, a double escape, a fallback
    text that data broke into several lines."""
    problems = []
    for where, text in parsed_texts(payload):
        problems += [f"{where} has a raw {ping}: {text[:300]!r}" for ping in DATA_PINGS if ping in text]
        problems += [f"{where} is escaped twice: {text[:300]!r}" for twice in DOUBLE_ESCAPED if twice in text]
        if where == "fallback" and "\n" in text:
            problems.append(f"the fallback text has a newline: {text[:300]!r}")
    return problems


HOSTILE_POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "access": {"operators": ["U0OPS", "U0LEAD"]},
                  "approvals": {"approvers": ["U0LEAD"]}}
HOSTILE_NAME = "web <@U123>\n:white_check_mark: Approved by <@U999>"
HOSTILE_TAGS = {"Family": "<!channel>", "Name": "<@U123>\n<#C123>", "Owner": "<!here> & co"}


def test_a_hostile_image_through_promote_rollback_show_and_an_approval_pings_nobody(make_harness, aws):
    app = make_harness(HOSTILE_POLICY)
    source = seed.instance(aws)
    old = seed.image(aws, f"{HOSTILE_NAME} 1", tags={**HOSTILE_TAGS, "Version": "<!channel> 1"}, from_instance=source,
                     description="<!here> see <http://evil.example|the notes> & <#C123>")
    new = seed.image(aws, f"{HOSTILE_NAME} 2", tags=HOSTILE_TAGS, from_instance=source)
    for command in (f"promote {old}", f"promote {new}", "rollback <!channel>", f"show {old}", "list web",
                    "versions <!channel>", f"disable {old}"):
        app.command(command)
    app.event({"type": "app_home_opened", "user": "U0LEAD", "tab": "home", "channel": "D0HOME"})
    request = app.ctx.store.one("SELECT id FROM requests")
    app.click("approval.approve", request["id"], user="U0LEAD")
    app.fake.wait_for_method("chat.postMessage", where=lambda c: "Succeeded" in c.text or "Failed" in c.text)
    app.wait_idle()

    sent = [call for call in app.fake.calls if call.method in SURFACES]
    assert {"chat.postMessage", "chat.update", "response_url", "views.publish"} <= {call.method for call in sent}
    assert [(call.method, problem) for call in sent for problem in leaks(call.params)] == []
    posts = [call.params["text"] for call in app.fake.calls_to("chat.postMessage")]
    assert f"{new} is now the current version of &lt;!channel&gt;" in posts  # the data is shown, escaped
    assert f"&lt;!channel&gt; rolled back to {old}" in posts
    shown = next(call.params["text"] for call in app.replies() if old in call.params.get("text", "")
                 and "(" in call.params["text"])
    assert shown.startswith("web &lt;@U123&gt; :white_check_mark: Approved by &lt;@U999&gt; 1")


# --- every message builder, fed hostile names, tags, descriptions and labels ------------------------------------

HOSTILE = "<!channel> <@U123> <#C123> <http://evil.example|x> & co\n> line"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
# What amibot itself makes or checks — AWS ids and states, regions, Slack user and channel ids, dates — gets plain
# values, by name. Every other text is hostile.
TRUSTED = {"id", "ids", "image_id", "request_id", "instance_id", "snapshot_id", "owner_id", "region", "regions",
           "failures", "state", "status", "kind", "which", "found_by", "user", "requester", "decided_by", "approvers",
           "channel", "day", "date", "permalink"}
# Parameters that are mrkdwn by contract (their callers escape any data in them, as in any block): plain values.
MRKDWN_PARAMS = {("stage_done", "what"), ("stage_done", "note"), ("stage_done", "undo"), ("button_hint", "action"),
                 ("notice_modal", "text"), ("home_view", "notice"), ("subcommand_help", "problem"),
                 ("usage_message", "problem"), ("NewImage", "note")}
# Functions of bot/render/blocks.py that take mrkdwn (their callers escape), not data.
MRKDWN_IN = {"section", "fields_section", "context", "error", "info", "mrkdwn_message", "fit"}


def _audit_rows():
    return [{"ts": "2026-06-01T10:00:00.000Z", "actor": f"actor {HOSTILE}", "action": f"action {HOSTILE}",
             "target": f"target {HOSTILE}", "outcome": f"outcome {HOSTILE}",
             "detail": {"account_label": f"label {HOSTILE}"}}]


def _bake_run(state: str = "failed") -> dict:
    """A bake's record as bot/services/bake.py keeps it, every value that comes from config or AWS hostile (user
    ids are Slack's own; the console link is amibot's)."""
    hostile = f"x {HOSTILE}"
    return {"id": f"bake-{HOSTILE}", "family": hostile, "version": hostile, "what": hostile, "region": hostile,
            "account_label": hostile, "user": "U0OPS", "state": state, "history": [hostile, hostile],
            "steps": [(hostile, hostile)], "failed_step": hostile, "failure": hostile, "partial": [hostile],
            "images": {hostile: hostile}, "notes": [hostile], "request": hostile, "manual": True,
            "result": hostile, "mechanism": hostile, "started_at": "2026-06-01T10:00:00+00:00", "elapsed": 61.0,
            "link": "https://console.aws.amazon.com/imagebuilder/home?region=us-east-1", "stopped": hostile,
            "cancelled_by": "U0LEAD"}


def _rollout_status():
    """A running rollout (bot.services.rollout_watch.RolloutStatus) whose groups' names and AWS's answers are
    hostile."""
    from bot.services import rollout, rollout_watch

    group = make(rollout.GroupPlan)
    group.method = rollout.PINNED
    found = make(rollout.RolloutPlan)
    found.groups = [group]
    status = make(rollout_watch.RolloutStatus)
    status.plan, status.finished = found, False
    status.progress = {rollout.group_key(group): {"status": f"x {HOSTILE}", "reason": f"x {HOSTILE}",
                                                  "percentage": 50}}
    return status


# Values typed too loosely to be generated from their annotation: (function or class, parameter or field).
SAMPLES = {
    ("bake_message", "view"): _bake_run,
    ("bakes_list", "runs"): lambda: [_bake_run(), _bake_run("cancelled")],
    ("bakes_list", "scheduled"): lambda: [{"family": f"x {HOSTILE}", "mechanism": f"x {HOSTILE}",
                                           "region": f"x {HOSTILE}", "next": f"x {HOSTILE}"}],
    ("Dashboard", "bakes"): lambda: [_bake_run("running")],
    ("Dashboard", "revoked"): lambda: [{key: f"x {HOSTILE}" for key in (
        "image_id", "region", "account", "name", "family", "reason", "request_id", "revoked_by", "revoked_at")}],
    ("status_message", "found"): lambda: [_rollout_status()],
    ("audit_history", "rows"): _audit_rows,
    ("request_message", "request"): lambda: make(approvals.Request),  # duck-typed: Any
    ("requests_list", "requests"): lambda: [make(approvals.Request)],
    ("Dashboard", "waiting"): lambda: [make(approvals.Request)],
    ("Dashboard", "mine"): lambda: [make(approvals.Request)],
    ("versions", "findings"): lambda: {"id-1": make(ImageFindings)},  # each image's findings, by its id
    ("per_account", "parts"): lambda: [(f"label {HOSTILE}", blocks.message(f"part {HOSTILE}", [])) for _ in "ab"],
    ("subcommand_help", "spec"): lambda: make(Subcommand),
    ("usage_message", "specs"): lambda: [make(Subcommand)],
}


def _classes() -> dict[str, type]:
    """Every class of bot/ and bot/services/ by name: for annotations imported only for type checkers."""
    found = {}
    for package in (bot, bot.services):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found.update({name: value for name, value in vars(module).items()
                          if inspect.isclass(value) and value.__module__ == module.__name__ and name not in found})
    return found


CLASSES = _classes()


def _hints(owner) -> dict[str, Any]:
    own = vars(sys.modules[owner.__module__])
    return typing.get_type_hints(owner, localns={k: v for k, v in CLASSES.items() if k not in own})


def arguments(owner) -> dict[str, Any]:
    """A value for each parameter of a function, or each field of a dataclass."""
    hints = _hints(owner)
    if dataclasses.is_dataclass(owner):
        names = [field.name for field in dataclasses.fields(owner) if field.init]
    else:
        names = [name for name, spec in inspect.signature(owner).parameters.items()
                 if spec.kind not in (spec.VAR_POSITIONAL, spec.VAR_KEYWORD)]
    values = {}
    for name in names:
        if (owner.__name__, name) in SAMPLES:
            values[name] = SAMPLES[owner.__name__, name]()
        elif (owner.__name__, name) in MRKDWN_PARAMS:
            values[name] = f"{name}-1"
        else:
            values[name] = make(hints.get(name, Any), name)
    return values


def make(kind: Any, name: str = "") -> Any:
    """A value of type `kind` whose every text is hostile (or, for TRUSTED names, plain)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        return make(next(arg for arg in args if arg is not type(None)), name)
    if kind is str or kind in (Any, inspect.Parameter.empty):
        return f"{name}-1" if name in TRUSTED else f"{name} {HOSTILE}"
    simple = {bool: True, int: 3, float: 2.5, datetime: NOW - timedelta(days=400), timedelta: timedelta(days=2),
              re.Pattern: re.compile(".+")}
    if kind in simple:
        return simple[kind]
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable) or kind is list:
        return [make(args[0] if args else Any, name)]
    if origin in (set, frozenset):
        return {make(args[0], name)}
    if origin is tuple:
        return tuple(make(arg, name) for arg in args if arg is not Ellipsis)
    if origin is dict or kind is dict:
        key, value = args or (str, Any)
        return {make(key, name): make(value, name)}
    if kind is collections.Counter:
        return collections.Counter({f"{name} {HOSTILE}": 2})
    if inspect.isclass(kind) and issubclass(kind, Exception):
        return kind(f"{name} {HOSTILE}")
    if dataclasses.is_dataclass(kind):
        return kind(**arguments(kind))
    if origin is collections.abc.Callable:
        return lambda *_args, **_kwargs: False
    raise TypeError(f"no value for {name}: {kind!r} (add a sample to SAMPLES)")


def message_builders() -> dict[str, Callable]:
    """Every public function of bot/render/ and bot/render/blocks.py that returns a message, a digest or a view."""
    modules = [importlib.import_module(f"bot.render.{info.name}") for info in pkgutil.iter_modules(bot.render.__path__)]
    found = {}
    for module in [*modules, blocks]:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__ or name in MRKDWN_IN:
                continue
            returns = _hints(function).get("return")
            if returns in (blocks.Message, dict, Rendered):
                found[f"{module.__name__}.{name}"] = function
    return found


BUILDERS = message_builders()


def test_the_builders_are_found():
    assert {"bot.render.lifecycle.promoted", "bot.render.lifecycle.rolled_back", "bot.render.images.image_detail",
            "bot.render.approvals.request_message", "bot.render.digest.digest_message", "bot.render.home.home_view",
            "bot.render.blocks.message", "bot.render.blocks.per_account"} <= set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_builder_lets_data_ping_or_link(name):
    function = BUILDERS[name]
    built = function(**arguments(function))
    built = built.message if isinstance(built, Rendered) else built
    assert leaks(built) == []


# --- issue 19 §4: nothing in a CSV amibot writes runs as a spreadsheet formula ----------------------------------

FORMULAS = ["@SUM(1+1)", "+cmd|calc", "=1+2"]


def test_audit_export_csv_defuses_what_anyone_typed(harness, tmp_path):
    for formula in FORMULAS:
        harness.command(f"list {formula}")  # anyone may list: the first word is the audit row's target
    exported = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "export", "--format", "csv"],
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "AMIBOT_DB": harness.db_path})
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [row["target"] for row in rows if row["action"] == "command.list"] == [f"'{f}" for f in FORMULAS]
    cells = [value for row in rows for value in row.values()]
    assert [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))] == []
