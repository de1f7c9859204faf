"""What a service needs of the running bot, typed low: the fields of the app's Context that services read.

Services are called with the app's Context (bot/slack/context.py, above the services); annotating them with it
would be an import upward (and pulls in Slack's SDK). This Protocol names the same fields, so a type checker
still checks the callers, and any object that has them — the Context, a test's stand-in — fits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only; all three are lower layers
    from bot.aws.clients import Aws
    from bot.core.config import Policy
    from bot.durable.store import Store


class ServiceContext(Protocol):
    aws: Aws
    policy: Policy
    store: Store
    clock: Callable[[], datetime]
