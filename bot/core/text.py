"""How amibot writes words for people, below every layer that writes a sentence: amounts, counts, and Slack's
mrkdwn escaping.

An AmibotError's message is mrkdwn (bot/core/errors.py: `str(error)` is safe to show), and it is stored, put
in threads and shown by many callers as it is: so a user's words quoted in one are escaped where the sentence
is written. Everything else — the words in data a service returns — is escaped by bot/render/, where text
becomes Block Kit (bot/render/blocks.py re-exports these same functions)."""

from __future__ import annotations

from typing import Any


def escape(text: Any) -> str:
    """Neutralise Slack's control sequences: <!channel>, <@U…>, links; keep everything readable."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def money(amount: float) -> str:
    return f"${amount:,.2f}"


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def named(name: Any, image_id: str, limit: int = 48) -> str:
    """"web-1.4.2 (ami-…)" for a confirmation's plain text — the name cut to `limit` characters so the dialog stays
    within Slack's 300 — or just the id when the image has no name."""
    name = str(name or "")
    if not name:
        return image_id
    return f"{name[:limit - 1] + '…' if len(name) > limit else name} ({image_id})"
