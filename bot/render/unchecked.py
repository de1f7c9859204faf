"""What could not be checked, said before anything else (pure builders).

Every headline that sums up AWS — the digest, `/ami list`, `/ami drift`, the Home tab's fleet — reads several
regions (and accounts). One that could not be read must never let a total or a "none" claim more than was
checked: the message names first what was not checked and why, then what it found *where checked*, and says
nothing at all about what it found when nothing could be read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.render.blocks import escape


def unchecked_line(where: str, why: str) -> str:
    return f":warning: *{escape(where)}*: not checked — {escape(why)}"


def unchecked_lines(failures: Mapping[str, str], shown: int = 5) -> list[str]:
    """One line per place that could not be read (at most `shown`, then how many more)."""
    lines = [unchecked_line(where, why) for where, why in sorted(failures.items())[:shown]]
    if len(failures) > shown:
        lines.append(f":warning: …and {len(failures) - shown} more not checked")
    return lines


def unchecked_names(places: Sequence[str], shown: int = 3) -> str:
    """ "us-east-1, eu-west-1 and 2 more": the places not checked, for a headline or a notification's text."""
    more = f" and {len(places) - shown} more" if len(places) > shown else ""
    return ", ".join(places[:shown]) + more


def headline(subject: str, failures: Mapping[str, str], checked_any: bool, found: str) -> str:
    """The headline of a message some of whose places could not be read, saying that first: "AMIs not checked:
    us-east-1 could not be read" (nothing was read: nothing is claimed), or "Drift not checked in eu-west-1;
    where checked: 2 instances behind" (`found`, claimed where checked only)."""
    names = unchecked_names(sorted(failures))
    if not checked_any:
        return f"{subject} not checked: {names} could not be read"
    return f"{subject} not checked in {names}; where checked: {found}"
