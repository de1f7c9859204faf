"""The `/ami` slash command: ack at once, then run the subcommand as a durable background job.

Each subcommand lives in its own module here (handlers/commands/share.py is `/ami share`) and
exposes ``SPECS`` (its Subcommand declarations) and ``register(registry)``, or a single ``SPEC``
with ``run(call)``. Help and usage errors need no AWS, so they go straight into the ack.
"""

from __future__ import annotations

import importlib
import pkgutil

from bot.core.errors import UsageError
from bot.durable.jobs import AWS, QUICK
from bot.slack import delivery_keys
from bot.slack.dispatch import JOB_KIND, help_message, payload_of
from bot.slack.subcommands import Registry, parse

# The registry (and docs/commands.md) lists subcommands in this order, the stages' order (bot/core/stages.py): the
# first subcommand of each stage gives the stage's example in `/ami help`. Modules not named here follow
# alphabetically.
ORDER = ["list", "show", "versions", "create", "register", "base", "bake", "copy", "lineage", "launch", "promote",
         "rollout", "share", "stages", "revoke", "deregister", "restore", "recycle_bin", "drift", "digest", "allowed",
         "audit", "requests"]


def _subcommand_modules():
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda name: (ORDER.index(name) if name in ORDER else len(ORDER), name))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def add_subcommands(registry: Registry) -> None:
    """Every subcommand with its runner, in help order: what the app registers, and what `amibot docs` documents."""
    for module in _subcommand_modules():
        if hasattr(module, "SPEC"):
            registry.add(module.SPEC, module.run)
        for spec, runner in getattr(module, "RUNNERS", []):
            registry.add(spec, runner)


def register_commands(app, ctx) -> None:
    add_subcommands(ctx.registry)

    @app.command("/ami")
    def ami(ack, body, context):
        help_answer = None
        try:
            invocation = parse(ctx.registry, body.get("text") or "")
            if invocation is None:  # help needs no AWS: straight into the ack
                help_answer = help_message(ctx.registry, body.get("text") or "")
        except UsageError:
            invocation = False  # the job reports it, so it is audited like every other command
        # Recorded before the ack (one SQLite insert), so a crash right after cannot lose it.
        # Its delivery key (the trigger_id, unique per invocation) is the job's dedupe key, so a retried, redelivered
        # or replayed command is recorded once (bot/slack/delivery_keys.py).
        # Help, usage errors and subcommands declared aws=False run on the quick lane: nobody waits behind AWS.
        lane = AWS if invocation and invocation.subcommand.aws else QUICK
        ctx.jobs.submit(JOB_KIND, payload_of(body) | {"acked_help": invocation is None},
                        dedupe_key=delivery_keys.key_of(context, body), lane=lane)
        if invocation is None:
            ack(response_type="ephemeral", **help_answer)
        else:
            ack()
