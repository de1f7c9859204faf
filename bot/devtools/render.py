"""Block Kit as terminal text: what a person would read in Slack, in plain lines.

Pure functions, data in, text out. Interactive elements (buttons, selects, overflow menus) are
shown as ``[N] Label``; the caller decides the numbers through ``number(block, element)`` — the
console numbers every button once and keeps that number while the button exists. Inputs in a modal
are shown as numbered form fields with their current values.

    >>> render_blocks([{"type": "header", "text": {"type": "plain_text", "text": "Hi"}}])
    ['== Hi ==']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from bot.devtools.slackclient import block_key, initial_value

INDENT = "  "
DIVIDER = "-" * 40
CLICKABLE = ("button", "static_select", "overflow", "radio_buttons", "checkboxes", "users_select",
             "conversations_select", "channels_select", "datepicker", "timepicker", "multi_static_select")
SELECTS_WITH_OPTIONS = ("static_select", "multi_static_select", "overflow", "radio_buttons", "checkboxes")

# Slack's emoji names the bot uses, as characters; others stay ":name:".
EMOJI = {
    "warning": "⚠️", "white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌", "no_entry": "⛔",
    "no_entry_sign": "🚫", "hourglass": "⌛", "hourglass_flowing_sand": "⏳", "bell": "🔔", "zzz": "💤",
    "sparkles": "✨", "rocket": "🚀", "lock": "🔒", "unlock": "🔓", "package": "📦", "broom": "🧹", "moneybag": "💰",
    "money_with_wings": "💸", "recycle": "♻️", "wastebasket": "🗑️", "information_source": "ℹ️",
    "large_green_circle": "🟢", "red_circle": "🔴", "large_yellow_circle": "🟡", "arrow_right": "→",
    "leftwards_arrow_with_hook": "↩️", "arrows_counterclockwise": "🔄", "camera": "📷", "floppy_disk": "💾",
    "handshake": "🤝", "globe_with_meridians": "🌐", "busts_in_silhouette": "👥", "eyes": "👀", "mag": "🔍",
    "clipboard": "📋", "calendar": "📅", "crown": "👑", "star": "⭐", "fire": "🔥", "tada": "🎉", "construction": "🚧",
    "pushpin": "📌", "link": "🔗", "gear": "⚙️", "shield": "🛡️", "snowflake": "❄️", "skull": "💀", "bulb": "💡",
    "memo": "📝", "chart_with_upwards_trend": "📈", "stopwatch": "⏱️", "ballot_box_with_check": "☑️",
    "heavy_minus_sign": "➖", "heavy_plus_sign": "➕", "new": "🆕", "raising_hand": "🙋", "raised_hand": "✋",
    "inbox_tray": "📥", "outbox_tray": "📤", "hammer_and_wrench": "🛠️", "arrow_up": "⬆️", "arrow_down": "⬇️",
    "back": "🔙", "repeat": "🔁", "key": "🔑", "earth_americas": "🌎", "world_map": "🗺️", "fast_forward": "⏩",
    "rewind": "⏪", "rotating_light": "🚨", "hourglass_done": "⌛", "white_circle": "⚪", "black_circle": "⚫",
    "bangbang": "‼️", "thumbsup": "👍", "+1": "👍", "thumbsdown": "👎", "no_good": "🙅", "point_right": "👉",
    "large_orange_circle": "🟠", "large_blue_circle": "🔵",
}

Number = Callable[[dict, dict], "int | None"]

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_FENCE = re.compile(r"```\n?(.*?)\n?```", re.DOTALL)


def _no_number(block: dict, element: dict) -> int | None:
    return None


# --- text ----------------------------------------------------------------------------------------------

def mrkdwn(text: str, names: Mapping[str, str] | None = None) -> str:
    """Slack mrkdwn as plain text: mentions by name, links as "text (url)", emoji, entities decoded,
    *bold*/_italic_/~strike~ markers dropped; `code` keeps its backticks (ids stay recognisable)."""
    names = names or {}
    text = _FENCE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: _link(m.group(1), m.group(2), names), text)
    for pattern in (_BOLD, _ITALIC, _STRIKE):
        text = pattern.sub(r"\1", text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _link(target: str, label: str | None, names: Mapping[str, str]) -> str:
    if target.startswith("@"):  # <@U123> or <@U123|name>
        ident = target[1:]
        return "@" + (names.get(ident) or label or ident)
    if target.startswith("#"):  # <#C123> or <#C123|general>
        ident = target[1:]
        return "#" + (label or names.get(ident) or ident)
    if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S123|@leads>, <!date^…|fallback>
        special = target[1:]
        if special.startswith("subteam^"):
            return label or "@" + (names.get(special.split("^", 1)[1]) or special.split("^", 1)[1])
        if special.startswith("date^"):
            return label or special
        return "@" + special
    return f"{label} ({target})" if label and label != target else target


def plain(obj: Any, names: Mapping[str, str] | None = None) -> str:
    """The text of a text object ({"type": "mrkdwn"|"plain_text", "text": …}) or a string."""
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    text = obj.get("text", "")
    if obj.get("type") == "plain_text":
        return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    return mrkdwn(text, names)


def _indent(text: str, prefix: str = INDENT) -> list[str]:
    return [prefix + line if line else "" for line in text.split("\n")]


# --- elements ------------------------------------------------------------------------------------------

def option_label(option: dict) -> str:
    return plain(option.get("text"))


def options_of(element: dict) -> list[dict]:
    """Every option of a select/overflow/radio/checkbox element, groups flattened, in order."""
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def element_label(element: dict, names: Mapping[str, str] | None = None) -> str:
    """A one-line label for an interactive element, with hints: "…" when it asks to confirm,
    "(danger)" for a danger button, "↗ url" for a link button, "▾" for a menu."""
    kind = element.get("type")
    if kind == "button":
        label = plain(element.get("text"), names)
        if element.get("confirm"):
            label += "…"
        if element.get("style") == "danger":
            label += " (danger)"
        if element.get("url"):
            label += f" ↗ {element['url']}"
        return label
    if kind == "overflow":
        return "⋯ " + " | ".join(option_label(option) for option in options_of(element))
    chosen = element.get("initial_option")
    placeholder = plain(element.get("placeholder"), names) or kind.replace("_", " ")
    return f"▾ {option_label(chosen) if chosen else placeholder}"


def _element(block: dict, element: dict, number: Number, names: Mapping[str, str] | None) -> str:
    kind = element.get("type")
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind not in CLICKABLE:
        return plain(element.get("text"), names) or f"[{kind}]"
    n = number(block, element)
    label = element_label(element, names)
    return f"[{n}] {label}" if n is not None else f"[{label}]"


# --- blocks --------------------------------------------------------------------------------------------

def render_blocks(blocks: list[dict], number: Number = _no_number,
                  names: Mapping[str, str] | None = None) -> list[str]:
    """Lines of text for a list of blocks, in order."""
    lines: list[str] = []
    for block in blocks or []:
        lines.extend(render_block(block, number, names))
    return lines


def render_block(block: dict, number: Number = _no_number, names: Mapping[str, str] | None = None) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"== {plain(block.get('text'), names)} =="]
    if kind == "section":
        return _section(block, number, names)
    if kind == "context":
        parts = [f"[image: {e.get('alt_text', '')}]" if e.get("type") == "image" else plain(e, names)
                 for e in block.get("elements") or []]
        return _indent(" · ".join(part for part in parts if part), INDENT + "› ")
    if kind == "divider":
        return [INDENT + DIVIDER]
    if kind == "actions":
        return [INDENT + "  ".join(_element(block, element, number, names) for element in block.get("elements") or [])]
    if kind == "image":
        return [f"{INDENT}[image: {plain(block.get('title'), names) or block.get('alt_text', '')}]"]
    if kind == "rich_text":
        return _indent(_rich_text(block))
    if kind == "input":
        return [f"{INDENT}{plain(block.get('label'), names)}: {element_label(block.get('element') or {}, names)}"]
    if kind == "table":
        return _table(block)
    return [f"{INDENT}[{kind} block]"]


def _cell(cell: Any) -> str:
    """A table cell's text: raw_text as it is (entities decoded), rich_text as its text."""
    if not isinstance(cell, dict):
        return ""
    if cell.get("type") == "rich_text":
        return _rich_text(cell)
    return str(cell.get("text", "")).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _table(block: dict) -> list[str]:
    """A table block as aligned columns, its first row (the header) underlined."""
    rows = [[" ".join(_cell(cell).split()) for cell in row] for row in block.get("rows") or []]
    if not rows:
        return []
    widths = [max(len(row[column]) if column < len(row) else 0 for row in rows)
              for column in range(max(len(row) for row in rows))]
    lines = ["  ".join(cell.ljust(widths[column]) for column, cell in enumerate(row)).rstrip() for row in rows]
    return [INDENT + line for line in [lines[0], "  ".join("-" * width for width in widths), *lines[1:]]]


def _section(block: dict, number: Number, names: Mapping[str, str] | None) -> list[str]:
    lines = _indent(plain(block.get("text"), names)) if block.get("text") else []
    for field in block.get("fields") or []:
        lines.append(INDENT + "• " + _field(field, names))
    accessory = block.get("accessory")
    if accessory:
        rendered = _element(block, accessory, number, names)
        if lines and accessory.get("type") != "image":
            lines[-1] = f"{lines[-1]}   {rendered}"
        elif accessory.get("type") != "image":
            lines.append(INDENT + rendered)
    return lines


def _field(field: dict, names: Mapping[str, str] | None) -> str:
    """A field "*Label*\\nvalue" reads "Label: value"; other multi-line fields are joined with " / "."""
    raw = field.get("text", "") if isinstance(field, dict) else str(field)
    head, _, rest = raw.partition("\n")
    if rest and field.get("type") != "plain_text" and _BOLD.fullmatch(head.strip()):
        return f"{mrkdwn(head, names)}: {mrkdwn(rest, names)}".replace("\n", " / ")
    return plain(field, names).replace("\n", " / ")


def _rich_text(block: dict) -> str:
    def texts(node: Any) -> str:
        if isinstance(node, list):
            return "".join(texts(item) for item in node)
        if not isinstance(node, dict):
            return ""
        if node.get("type") == "text":
            return node.get("text", "")
        if node.get("type") == "user":
            return f"@{node.get('user_id', '')}"
        if node.get("type") == "link":
            return node.get("text") or node.get("url", "")
        return texts(node.get("elements"))

    return texts(block.get("elements"))


def render_message(message: dict, number: Number = _no_number, names: Mapping[str, str] | None = None) -> list[str]:
    """A message ({"text", "blocks", "attachments"}): its blocks, or its text when it has none."""
    lines = render_blocks(message.get("blocks") or [], number, names)
    if not lines and message.get("text"):
        lines = _indent(mrkdwn(str(message["text"]), names))
    for attachment in message.get("attachments") or []:
        inner = render_blocks(attachment.get("blocks") or [], number, names)
        if not inner and attachment.get("text"):
            inner = _indent(mrkdwn(attachment["text"], names))
        lines.extend("  |" + line for line in inner)
    return lines


# --- modals --------------------------------------------------------------------------------------------

def inputs_of(view: dict) -> list[dict]:
    """The input blocks of a modal, in order (the fields a person fills in)."""
    return [block for block in view.get("blocks") or [] if block.get("type") == "input"]


def describe_value(value: Any) -> str:
    """A field's current value for display: a selected option's label, a list, or the text."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, dict):
        return option_label(value)
    if isinstance(value, list):
        return ", ".join(option_label(item) if isinstance(item, dict) else str(item) for item in value)
    return str(value)


def render_view(view: dict, values: Mapping[str, Any] | None = None, number: Number = _no_number,
                names: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None) -> list[str]:
    """A modal: title, its blocks, and its inputs as numbered fields (1) Label*: value, with any errors."""
    values = values or {}
    errors = errors or {}
    lines = [f"[ {plain(view.get('title'), names)} ]"]
    field = 0
    for index, block in enumerate(view.get("blocks") or []):
        if block.get("type") != "input":
            lines.extend(render_block(block, number, names))
            continue
        field += 1
        element = block.get("element") or {}
        block_id = block_key(block, index)
        required = "" if block.get("optional") else "*"
        value = values.get(block_id, initial_value(element))
        label = plain(block.get("label"), names)
        lines.append(f"{INDENT}({field}) {label}{required}: {describe_value(value)}")
        hint = plain(block.get("hint"), names)
        if hint:
            lines.append(f"{INDENT}    {hint}")
        if block_id in errors:
            lines.append(f"{INDENT}    ⚠️ {errors[block_id]}")
    buttons = [plain(view.get(key), names) for key in ("submit", "close") if view.get(key)]
    if buttons:
        lines.append(INDENT + "  ".join(f"<{label}>" for label in buttons))
    return lines
