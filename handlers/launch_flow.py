"""The edge of the launch use-case both `/ami launch` (handlers/commands/launch.py) and the launch form
(handlers/views/launch.py) end in: bot.services.launch.start_launch decides (resolve, check, authorize, approval
or a durable launch); this says what it did, in the channel or to the user. In a module of its own so the two
listeners need it, not each other."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.render import blocks
from bot.render import launch as render
from bot.services import launch as service
from bot.services.images import Image
from bot.services.launch import LaunchOrder
from bot.slack.reply import Reply

log = logging.getLogger(__name__)


def start_launch(ctx, order: LaunchOrder, user: str, channel: str | None, reply: Reply,
                 detail: dict[str, Any], reference: str | None = None) -> dict | None:
    """Start the launch; report it in the channel as it starts and when it is done, or say an approval was asked
    for. Returns the message to answer with (None when the launch's own message was updated instead)."""
    posted: dict[str, str | None] = {}

    def started(image: Image, ids: list[str], request_ref: str, where: str) -> tuple[str | None, str | None]:
        msg = render.launch_started(image, order, ids, user, request_ref, where)
        try:
            posted.update(ts=reply.post(msg), channel=None)
        except SlackApiError as error:  # not in the channel and no response_url (the form): tell the user directly
            log.warning("cannot post the launch in %s (%s); sending it to %s", channel, error.response.get("error"),
                        user)
            posted.update(ts=reply.post(msg, channel=user), channel=user)
        return posted.get("ts"), posted.get("channel")

    def warn(blocked: str) -> None:
        reply.ephemeral(blocks.info(f"{blocked} `/ami allowed` shows the criteria."))

    outcome = service.start_launch(ctx, order, user, channel, detail, reference, warn=warn, started=started)
    if outcome.request is not None:
        return render.needs_approval(outcome.request.id, outcome.request.channel, outcome.reasons)
    final = render.launch_finished(outcome.result, order, user, outcome.reference, outcome.where)
    if posted.get("ts"):
        reply.update(posted["ts"], final, channel=posted["channel"])
        return None
    return final
