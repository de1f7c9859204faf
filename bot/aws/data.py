"""Reading AWS items defensively: real answers have missing keys, odd types and malformed dates.

Every parser of AWS items (images, snapshots, instances, templates…) reads the fields it needs
through these helpers. A field that is missing is simply unknown (None, or the given default); a
field that is there but malformed is unknown too, and a WARNING names the item and the field, so
one bad item never breaks a listing and nobody mistakes "unknown" for "none".

``item`` in every signature is a short label of the item for the log, such as
``"image ami-0abc… in eu-west-1"`` (see ``label``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("amibot.awsdata")


def label(kind: str, item_id: Any, region: str | None = None) -> str:
    where = f" in {region}" if region else ""
    return f"{kind} {item_id}{where}"


def malformed(item: str, field: str, value: Any) -> None:
    """Log that one field of one item could not be read (the item is kept with the field unknown)."""
    shown = repr(value)
    log.warning("%s: field %s is malformed (%s); treated as unknown", item, field,
                shown if len(shown) <= 80 else shown[:79] + "…")


def item_id(data: Any, key: str, kind: str, region: str | None = None) -> str | None:
    """The item's id, or None (with a warning) when it has none: such an item cannot be acted on and is skipped."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, str) and value:
        return value
    log.warning("%s without a usable %s%s skipped: %s", kind, key, f" in {region}" if region else "",
                repr(data)[:120])
    return None


def expect(data: dict, keys: tuple[str, ...], item: str) -> None:
    """Warn about fields AWS always sends that this item lacks (they are then unknown)."""
    for key in keys:
        if key not in data:
            log.warning("%s: field %s is missing; treated as unknown", item, key)


def parse_time(value: Any, item: str = "an AWS item", field: str = "a date") -> datetime | None:
    """An ISO 8601 time (AWS's '2024-05-01T10:00:00.000Z') or a datetime, always time-zone aware (UTC if AWS
    gave none); None when missing or malformed (e.g. '2020-09-24T13:31:456.000Z')."""
    if value is None or value == "":
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        malformed(item, field, value)
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def text(data: dict, key: str, item: str, default: str = "") -> str:
    """A string field; `default` when missing or not a string."""
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    malformed(item, key, value)
    return default


def optional_text(data: dict, key: str, item: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value or None
    malformed(item, key, value)
    return None


def integer(data: dict, key: str, item: str) -> int | None:
    """A whole-number field (sizes, counts, version numbers); None when missing or not a number."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    malformed(item, key, value)
    return None


def flag(data: dict, key: str, item: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    malformed(item, key, value)
    return None


def mapping(data: dict, key: str, item: str) -> dict:
    """A nested structure (e.g. an instance's State, a mapping's Ebs); {} when missing or not a structure."""
    value = data.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    malformed(item, key, value)
    return {}


def items(data: dict, key: str, item: str) -> list:
    """A list field; [] when missing or not a list."""
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    malformed(item, key, value)
    return []


def tags_of(data: dict, item: str) -> dict[str, str]:
    """Tags as {key: value}. A tag without a string Key is dropped; one without a string Value keeps its key with
    an empty value; Tags that are not a list are no tags. Each is logged."""
    tags: dict[str, str] = {}
    for tag in items(data, "Tags", item):
        key = tag.get("Key") if isinstance(tag, dict) else None
        if not isinstance(key, str):
            malformed(item, "Tags[].Key", tag)
            continue
        value = tag.get("Value")
        if not isinstance(value, str):
            malformed(item, f"Tags[{key}].Value", value)
            value = ""
        tags[key] = value
    return tags


def tag_value(data: dict, key: str, item: str, default: str = "") -> str:
    """One tag's value (e.g. Name) without building the whole dict when the tags are well-formed."""
    return tags_of(data, item).get(key, default)
