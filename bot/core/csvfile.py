"""Every CSV amibot writes goes through here — the digest's full list and `amibot audit export` — so no cell runs
as a spreadsheet formula. Their cells hold AMI names, tag values and whatever anyone typed after `/ami` (the audit
trail's target is the first word of the command), and a spreadsheet evaluates a cell such as `@SUM(1+1)` or
`+cmd|calc` when the file is opened."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list: how a spreadsheet recognises a formula


def cell(value: Any) -> Any:
    """A text a spreadsheet would evaluate gets a leading ' (shown as typed); anything else is unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write(stream: TextIO, fieldnames: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """The header, then one line per row, each cell defused."""
    writer = csv.DictWriter(stream, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: cell(value) for key, value in row.items()})


def text(fieldnames: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    write(out, fieldnames, rows)
    return out.getvalue()
