"""`/ami requests`: open approval requests with links to their messages."""

from bot import approvals
from bot.commands import Subcommand
from bot.render.approvals import requests_list

SPEC = Subcommand(name="requests", summary="open approval requests, with links", usage="/ami requests",
                  example="/ami requests", aliases=("pending",))


def run(call):
    requests = approvals.pending(call.ctx)
    links = {}
    for request in requests[:40]:
        if request.message_ts:
            try:
                links[request.id] = call.ctx.slack.chat_getPermalink(
                    channel=request.channel, message_ts=request.message_ts)["permalink"]
            except Exception:  # a link is a convenience; the list is what matters
                pass
    return requests_list(requests, links)
