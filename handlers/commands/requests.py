"""`/ami requests`: open approval requests with links to their messages."""

from bot.render.approvals import requests_list
from bot.services import approvals
from bot.slack.permalinks import request_links
from bot.slack.subcommands import Subcommand

SPEC = Subcommand(name="requests", stage="audit", summary="open approval requests, with links", usage="/ami requests",
                  example="/ami requests", aliases=("pending",), aws=False)


def run(call):
    requests = approvals.pending(call.ctx)
    return requests_list(requests, request_links(call.ctx, requests[:40]))
