"""Answering in Slack: ephemeral replies through response_url, visible messages, updates in place.

Works without Bolt's `respond` so that a job resumed after a restart can still answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)


@dataclass
class Reply:
    client: WebClient
    channel: str | None
    user: str | None
    response_url: str | None = None

    def ephemeral(self, msg: dict[str, Any]) -> None:
        """Only the user who asked sees it."""
        if self.response_url:
            response = WebhookClient(self.response_url).send_dict(
                {**msg, "response_type": "ephemeral", "replace_original": False})
            if response.status_code < 300:
                return
            log.warning("response_url answered %s; falling back to chat.postEphemeral", response.status_code)
        if self.channel and self.user:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, **msg)

    def post(self, msg: dict[str, Any], thread_ts: str | None = None, channel: str | None = None) -> str | None:
        """A message the whole channel sees; returns its ts (for later updates), None if it could not post."""
        target = channel or self.channel
        try:
            response = self.client.chat_postMessage(channel=target, thread_ts=thread_ts, **msg)
            return response["ts"]
        except SlackApiError as error:
            if error.response.get("error") in ("not_in_channel", "channel_not_found") and self.response_url:
                # The bot is not in this channel: answer through the command's response_url instead.
                WebhookClient(self.response_url).send_dict({**msg, "response_type": "in_channel"})
                return None
            raise

    def update(self, ts: str, msg: dict[str, Any], channel: str | None = None) -> None:
        self.client.chat_update(channel=channel or self.channel, ts=ts, **msg)
