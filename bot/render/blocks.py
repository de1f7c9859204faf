"""Block Kit building blocks: pure functions, data in, dicts out.

Every message is a dict {"text": fallback, "blocks": [...]}; ``fit`` enforces Slack's limits
(50 blocks, 3,000 characters a section, 10 fields) so no message is ever rejected. Every piece of
text that came from a user or from AWS goes through ``escape`` so nobody can ping a channel or
break formatting through a tag value or an AMI name: builders escape what they put in mrkdwn blocks, and
``message`` escapes the fallback ``text`` itself (what notifications show, where Slack parses mentions too),
so no builder can forget it there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.core.stages import by_stage
from bot.core.text import escape, money, plural  # noqa: F401 (builders import them from here)

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_HEADER = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_TEXT = 3000  # the top-level fallback text; Slack truncates at 40k but notifications want it short
# Slack's table block: at most ONE per message (Slack refuses a second), 100 rows, 20 cells a row, and about
# 10,000 characters across all its cells; a cell is raw_text (plain, never parsed for mentions or links).
MAX_TABLE_ROWS = 100
MAX_TABLE_COLUMNS = 20
MAX_TABLE_CHARS = 10000
MAX_CELL = 500

Message = dict[str, Any]


def code(text: Any) -> str:
    return f"`{escape(text).replace('`', chr(0x2019))}`"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": True}}


def section(text: str, fields: list[str] | None = None, accessory: dict | None = None) -> dict:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": clip(f, MAX_FIELD)} for f in fields[:MAX_FIELDS]]
    if accessory:
        block["accessory"] = accessory
    return block


def fields_section(fields: list[str]) -> dict:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, MAX_FIELD)}
                                          for f in fields[:MAX_FIELDS]]}


def context(*texts: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(t, MAX_SECTION)}
                                            for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def table(columns: list[str], rows: list[list[Any]]) -> dict:
    """A table block: a header row of `columns`, then `rows` (cut to Slack's limits: rows, cells, characters).
    Cells are escaped like any block text (they arrive as plain data: tags, names). One per message: `fit`
    turns any further table into aligned text."""
    cells = [[clip(escape(value), MAX_CELL) for value in row[:MAX_TABLE_COLUMNS]]
             for row in [columns, *rows][:MAX_TABLE_ROWS]]
    while len(cells) > 2 and sum(len(cell) for row in cells for cell in row) > MAX_TABLE_CHARS:
        cells.pop()
    return {"type": "table", "column_settings": [{"is_wrapped": True}] * len(columns[:MAX_TABLE_COLUMNS]),
            "rows": [[{"type": "raw_text", "text": cell or "—"} for cell in row] for row in cells]}


def table_lines(block: dict) -> list[str]:
    """A table block as lines of text (header first, cells joined by " · "): what a second table in one message
    becomes, and what a reader without tables would see."""
    return [" · ".join(cell.get("text", "") for cell in row) for row in block.get("rows") or []]


def divider() -> dict:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str = "", style: str | None = None,
           confirm: dict | None = None, url: str | None = None) -> dict:
    element: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": clip(text, 75)},
                               "action_id": action_id[:255]}
    if value:
        element["value"] = value[:2000]
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    if url:
        element["url"] = url
    return element


def confirm_dialog(title: str, text: str, confirm: str = "Yes", deny: str = "Cancel",
                   style: str | None = None) -> dict:
    """`text` is plain words (Slack shows it as typed, so a family or a name in it can neither ping nor link)."""
    dialog: dict[str, Any] = {"title": {"type": "plain_text", "text": clip(title, 100)},
                              "text": {"type": "plain_text", "text": clip(text, 300)},
                              "confirm": {"type": "plain_text", "text": clip(confirm, 30)},
                              "deny": {"type": "plain_text", "text": clip(deny, 30)}}
    if style:
        dialog["style"] = style
    return dialog


def actions(*elements: dict, block_id: str | None = None) -> dict:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements)[:25]}
    if block_id:
        block["block_id"] = block_id
    return block


def message(text: str, blocks: list[dict], **extra: Any) -> Message:
    """A message whose fallback `text` (what notifications and screen readers get) is plain words with names,
    tags and typed text as they came: escaped here with the same `escape` as block text, and kept on one
    line, so nothing in it pings anyone or fakes a line."""
    return mrkdwn_message(escape(clip(text, MAX_TEXT)), blocks, **extra)


def mrkdwn_message(text: str, blocks: list[dict], **extra: Any) -> Message:
    """A message whose fallback `text` is already mrkdwn, its data escaped like any block's (`error`, `info`:
    the same words as their section). Anything else goes through `message`."""
    return fit({"text": one_line(clip(text, MAX_TEXT)), "blocks": blocks, **extra})


def one_line(text: str) -> str:
    """A notification is one line: newlines (in a name, say) would let data add lines of its own."""
    return " ".join(text.split())


def fit(msg: Message) -> Message:
    """Enforce Slack's limits; a message that would be cut says so in its last block."""
    blocks = msg.get("blocks") or []
    tables = [index for index, block in enumerate(blocks) if block.get("type") == "table"]
    for index in tables[1:]:  # Slack takes one table a message: the others as text
        blocks[index] = section(clip("\n".join(table_lines(blocks[index])), MAX_SECTION))
    if len(blocks) > MAX_BLOCKS:
        dropped = len(blocks) - (MAX_BLOCKS - 1)
        blocks = blocks[: MAX_BLOCKS - 1] + [context(f"…and {dropped} more blocks not shown (Slack's limit).")]
    msg["blocks"] = blocks
    return msg


def per_account(parts: list[tuple[str, Message]]) -> Message:
    """One message from each account's own report: its blocks under the account's label (its header block
    dropped, the first part's kept as the whole message's). One part: that message unchanged."""
    if len(parts) == 1:
        return parts[0][1]
    blocks: list[dict] = []
    texts = []
    for index, (label, part) in enumerate(parts):
        own = list(part.get("blocks") or [])
        if own and own[0].get("type") == "header":
            if index == 0:
                blocks.append(own[0])
            own = own[1:]
        blocks.append(section(f"*{escape(label)}*"))
        blocks += own
        texts.append(f"{escape(label)}: {part.get('text', '')}")  # each part's text is escaped already
    return mrkdwn_message(" · ".join(texts), blocks)


BROADCASTS = ("<!channel", "<!here", "<!everyone")


def defuse(text: str) -> str:
    """Never broadcast: <!channel>, <!here>, <!everyone> are shown, not sent. (Text from users and AWS is
    escaped where it enters a message; this is the last guard for the ones that would ping everybody.)"""
    for broadcast in BROADCASTS:
        text = text.replace(broadcast, "&lt;" + broadcast[1:])
    return text


def error(text: str, usage: str | None = None) -> Message:
    body = defuse(f":warning: {text}")
    if usage:
        body += f"\n{usage}"
    return mrkdwn_message(body, [section(body)])


def info(text: str) -> Message:
    """One section of mrkdwn (data in it escaped by the caller), the same words as the fallback."""
    return mrkdwn_message(text, [section(text)])


def age(created: datetime | None, now: datetime) -> str:
    """'3d', '5mo', '2y' — short enough for a list row."""
    if created is None:
        return "?"
    days = (now - created).total_seconds() / 86400
    if days < 1:
        hours = max(0, int(days * 24))
        return f"{hours}h"
    if days < 60:
        return f"{int(days)}d"
    if days < 730:
        return f"{int(days // 30)}mo"
    return f"{days / 365:.1f}y"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def subcommand_help(spec, flags: list[tuple[str, str | None, str]], problem: str | None = None) -> Message:
    """`/ami help <subcommand>`: its summary, usage, every flag with its meaning, and an example.
    `flags` is [(flag, metavar or None, meaning)]."""
    lines = [f"*/ami {escape(spec.name)}* — {escape(spec.summary)}", f"Usage: `{escape(spec.usage)}`"]
    if flags:
        lines.append("Options:")
        lines += [f"• `{escape(flag)}{' ' + escape(metavar) if metavar else ''}` — {escape(meaning) or 'see the usage'}"
                  for flag, metavar, meaning in flags]
    if spec.aliases:
        lines.append("Also: " + ", ".join(f"`{escape(alias)}`" for alias in spec.aliases))
    lines.append(f"Example: `{escape(spec.example)}`")
    if getattr(spec, "changing", False):
        lines.append("_Changes AWS: operators only._")
    blocks: list[dict] = [section(f":warning: {problem}")] if problem else []
    blocks.append(section("\n".join(lines)[:MAX_SECTION]))
    return mrkdwn_message((problem + " " if problem else "") + escape(f"/ami {spec.name}: {spec.usage}"), blocks)


def usage_message(specs: list, problem: str | None = None) -> Message:
    """The help: the subcommands grouped by the stage of an image's life (find · create & bake · use · share ·
    retire · watch · audit), each stage with one example (its first subcommand's); `problem` first when there
    was one. `/ami help <subcommand>` has the rest."""
    # Escaped: Slack would read `<ami-id|name>` as a link even inside backticks.
    lines = [f"*{escape(stage.capitalize())}* {' · '.join(f'`{escape(spec.name)}`' for spec in members)}\n"
             f"      e.g. `{escape(members[0].example)}`" for stage, members in by_stage(specs)]
    blocks: list[dict] = []
    if problem:
        blocks.append(section(f":warning: {problem}"))
    blocks.append(header("amibot — AMIs from Slack"))
    chunk: list[str] = []
    for line in lines:  # several sections, each under Slack's 3,000 characters
        if sum(len(item) + 1 for item in chunk) + len(line) > MAX_SECTION - 100:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    blocks.append(context("`/ami help &lt;subcommand&gt;` explains one, with its options. Changing commands need an "
                          "operator; irreversible ones need a second person's approval."))
    text = (problem + " " if problem else "") + escape("amibot subcommands: " + ", ".join(s.name for s in specs))
    return mrkdwn_message(text, blocks)
