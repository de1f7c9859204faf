"""The stages of an image's life, in the order `/ami help` and docs/commands.md group the subcommands by.

Each Subcommand (bot/slack/subcommands.py) declares its `stage`; the first subcommand of a stage (in registry order)
gives the stage's example.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

STAGES = ("find", "create & bake", "use", "share", "retire", "watch", "audit")


def by_stage(specs: Iterable[Any]) -> list[tuple[str, list[Any]]]:
    """The subcommands grouped by stage, in STAGES order (each stage's in the order given); any without a known
    stage last, as "more"."""
    groups: dict[str, list[Any]] = {stage: [] for stage in STAGES}
    for spec in specs:
        groups.setdefault(spec.stage if spec.stage in STAGES else "more", []).append(spec)
    return [(stage, members) for stage, members in groups.items() if members]
