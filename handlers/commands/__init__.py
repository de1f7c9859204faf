"""The `/ami` slash command: ack at once, then run the subcommand as a durable background job.

Each subcommand lives in its own module here (handlers/commands/share.py is `/ami share`) and
exposes ``SPECS`` (its Subcommand declarations) and ``register(registry)``, or a single ``SPEC``
with ``run(call)``. Help and usage errors need no AWS, so they go straight into the ack.
"""

from __future__ import annotations

import importlib
import pkgutil

from bot import blocks
from bot.commands import parse
from bot.dispatch import JOB_KIND, payload_of
from bot.errors import UsageError

# Help lists subcommands in this order; modules not named here follow alphabetically.
ORDER = ["list", "show", "launch", "share", "copy", "create", "register", "base", "versions", "promote", "stages",
         "deregister", "requests", "audit", "digest"]


def _subcommand_modules():
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda name: (ORDER.index(name) if name in ORDER else len(ORDER), name))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def register_commands(app, ctx) -> None:
    for module in _subcommand_modules():
        if hasattr(module, "SPEC"):
            ctx.registry.add(module.SPEC, module.run)
        for spec, runner in getattr(module, "RUNNERS", []):
            ctx.registry.add(spec, runner)

    @app.command("/ami")
    def ami(ack, body):
        try:
            invocation = parse(ctx.registry, body.get("text") or "")
        except UsageError:
            invocation = False  # the job reports it, so it is audited like every other command
        # Recorded before the ack (one SQLite insert), so a crash right after cannot lose it.
        # The trigger_id is unique per invocation, so a retried or replayed command is recorded once.
        ctx.jobs.submit(JOB_KIND, payload_of(body) | {"acked_help": invocation is None},
                        dedupe_key=f"command:{body.get('trigger_id') or body.get('response_url')}")
        if invocation is None:
            ack(response_type="ephemeral", **blocks.usage_message(ctx.registry.specs))
        else:
            ack()
