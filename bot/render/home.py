"""The App Home tab."""

from __future__ import annotations

from datetime import datetime

from bot import audit
from bot.blocks import context, divider, escape, header, section
from bot.store import Store


def home_view(specs: list, store: Store, now: datetime) -> dict:
    commands = "\n".join(f"• `{escape(spec.usage)}` — {escape(spec.summary)}" for spec in specs)
    recent = audit.rows(store, limit=10, newest_first=True)
    lines = [f"`{row['ts'][:16].replace('T', ' ')}` <@{row['actor']}> {escape(row['action'])} "
             f"{escape(row['target'] or '')} — {escape(row['outcome'][:80])}" for row in recent]
    blocks = [header("amibot"), section("Run the whole life of your AMIs from Slack."), divider(),
              section(f"*Commands*\n{commands}"[:3000]), divider(),
              section("*Recent activity*\n" + ("\n".join(lines) or "nothing yet")),
              context(f"Updated {now:%Y-%m-%d %H:%M} UTC")]
    return {"type": "home", "blocks": blocks[:100]}
