"""Everything a listener or a job needs, built once by the app factory and passed explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient

from bot.aws.clients import AwsAccounts
from bot.core.access import Access
from bot.core.config import Policy, Settings
from bot.durable.jobs import JobRunner
from bot.durable.store import Store
from bot.slack.subcommands import Registry


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    policy: Policy
    store: Store
    aws: AwsAccounts
    slack: WebClient
    jobs: JobRunner
    access: Access
    registry: Registry = field(default_factory=Registry)
    clock: Callable[[], datetime] = utc_now
    started_at: datetime = field(default_factory=utc_now)
    extras: dict[str, Any] = field(default_factory=dict)  # room for services that need per-process state
