"""One composition root (bot/wiring.py): importing a module registers nothing; the wiring holds every job kind,
approval kind, schedule and start hook; listener modules register only Slack listeners; the context is typed."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

from slack_bolt import App
from slack_sdk import WebClient

from bot import wiring
from bot.core.access import Access
from bot.core.config import Settings, parse_policy
from bot.durable.jobs import JobRunner
from bot.durable.store import Store
from bot.slack.context import Context

ROOT = Path(__file__).resolve().parents[1]

# Every kind of durable job a database can hold: a row of any other kind could not be run or recovered.
JOB_KINDS = {"command", "approval.execute", "approval.click", "audit.anchor", "digest.click", "digest.daily",
             "deregister.usage-report", "image.watch", "launch.form", "launch.open", "launch.wait",
             "home.refresh", "bake.watch", "bake.scheduled", "bake.promote", "bake.found",
             "bake.pipeline", "rollout.watch"}


def every_module() -> list[str]:
    names = []
    for path in sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


IMPORT_EVERYTHING = """
import importlib, json, sys, threading
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
from bot.services import approvals
print(json.dumps({"approval_kinds": sorted(approvals.KINDS),
                  "threads": sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()),
                  "schedulers": [name for name, module in sys.modules.items() if name.startswith(("bot", "handlers"))
                                 for value in vars(module).values()
                                 if type(value).__name__.endswith("Scheduler") and not isinstance(value, type)]}))
"""


def test_importing_every_module_registers_nothing():
    """A fresh interpreter imports every module of bot/ and handlers/: no approval kind is known, no thread or
    scheduler is started; only the factory (create_app → bot.wiring.attach) registers anything."""
    found = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING, json.dumps(every_module())], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert json.loads(found.stdout.splitlines()[-1]) == {"approval_kinds": [], "threads": [], "schedulers": []}


def bare_context(tmp_path) -> Context:
    policy = parse_policy({"aws": {"regions": ["us-east-1"]}})
    slack = WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/")
    store = Store(str(tmp_path / "amibot.db"))
    return Context(settings=Settings(db_path=str(tmp_path / "amibot.db")), policy=policy, store=store, aws=None,
                   slack=slack, jobs=JobRunner(store), access=Access(policy, slack))


def test_listener_modules_register_only_slack_listeners(tmp_path):
    import handlers

    ctx = bare_context(tmp_path)
    app = App(client=ctx.slack, signing_secret="secret", token_verification_enabled=False)
    try:
        handlers.register(app, ctx)
        assert ctx.jobs.kinds == {}  # every job kind is the wiring's
        assert ctx.outbox is None and ctx.digest_publisher is None and ctx.metrics is None
        assert app._listeners  # and the listeners are there
    finally:
        ctx.jobs.shutdown(wait=False)
        ctx.store.close()


def test_the_wiring_registers_every_job_kind_the_database_can_hold(harness):
    assert set(harness.ctx.jobs.kinds) == JOB_KINDS


def submitted_kinds() -> set[str]:
    """The kind of every `….submit(KIND, …)` in bot/ and handlers/ whose KIND is a module-level name."""
    kinds = set()
    for name in every_module():
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / name.replace(".", "/") / "__init__.py"
        module = importlib.import_module(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "submit" \
                    and node.args and isinstance(node.args[0], ast.Name | ast.Attribute | ast.Constant):
                try:
                    value = eval(compile(ast.Expression(node.args[0]), str(path), "eval"), vars(module))
                except NameError:  # a function's own variable (the wiring's "submit it again")
                    continue
                if isinstance(value, str):
                    kinds.add(value)
    return kinds


def test_every_kind_the_code_submits_is_a_kind_the_wiring_registers():
    assert submitted_kinds() == JOB_KINDS


def test_the_factory_registers_every_approval_kind(harness):
    from bot.services import approvals

    assert {kind.name for kind in wiring.approval_kinds()} == {
        "deregister", "snapshot-cleanup", "launch", "recycle-bin-enable", "share", "disable", "unprotect", "revoke",
        "bake-promote", "rollout"}
    assert set(approvals.KINDS) >= {kind.name for kind in wiring.approval_kinds()}


def test_every_scheduled_job_is_in_the_wiring(make_harness):
    harness = make_harness({"aws": {"regions": ["us-east-1"]}, "digest": {"channel": "C0DIGEST"},
                            "organization": {"enabled": True}})
    ids = {job.id for job in wiring.build_scheduler(harness.ctx).get_jobs()}
    assert ids == {"organization.refresh", "approvals.sweep", "outbox.prune", "audit.daily_anchor", "store.prune",
                   "digest.daily", "digest.retry", "home.keep_fresh"}


def test_a_bake_with_a_schedule_is_a_scheduled_job_in_the_wiring(make_harness):
    harness = make_harness({"aws": {"regions": ["us-east-1"]}, "bakes": [
        {"family": "web", "instance": "i-0123456789abcdef0", "schedule": "0 3 * * mon"},
        {"family": "api", "instance": "i-0123456789abcdef1"}]})
    ids = {job.id for job in wiring.build_scheduler(harness.ctx).get_jobs()}
    assert {job_id for job_id in ids if job_id.startswith("bake.")} == {"bake.web..", "bake.discover"}


def test_start_and_stop_hooks_are_listed_in_order():
    from bot import scheduler
    from bot.durable import anchors, backup
    from bot.services import approvals, digest
    from bot.slack import outbox
    from handlers.actions import image_buttons
    from handlers.commands import bake, launch

    ordered = [wiring.recover_jobs, outbox.at_start, approvals.at_start, anchors.daily_at_start, backup.daily_at_start,
               digest.catch_up, image_buttons.resume_watches, launch.resume_waits, bake.resume, bake.discover_at_start]
    assert wiring.start_hooks(scheduled=False) == ordered
    assert wiring.start_hooks(scheduled=True) == [*ordered, wiring.start_scheduler]
    assert wiring.stop_hooks(scheduled=False) == [outbox.at_stop]
    assert wiring.stop_hooks(scheduled=True) == [outbox.at_stop, scheduler.stop]


def test_the_context_is_typed_without_a_bag_of_string_keys():
    fields = {field.name: field.type for field in dataclasses.fields(Context)}
    assert "extras" not in fields
    assert not [name for name, annotation in fields.items() if "Any" in str(annotation)]
    assert {"scheduler", "outbox", "metrics", "jobs", "clock", "settings", "waits"} <= set(fields)
