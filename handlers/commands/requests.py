"""`/ami requests`: open approval requests with links to their messages."""

import threading
from concurrent.futures import ThreadPoolExecutor

from bot.render.approvals import requests_list
from bot.services import approvals
from bot.slack.subcommands import Subcommand

SPEC = Subcommand(name="requests", stage="audit", summary="open approval requests, with links", usage="/ami requests",
                  example="/ami requests", aliases=("pending",), aws=False)

_FETCHING = threading.Lock()


def run(call):
    requests = approvals.pending(call.ctx)
    # A message's permalink never changes: each is asked of Slack once per process, and the ones not yet known
    # side by side, so forty open requests cost one round trip the first time and none after.
    known = call.ctx.permalinks

    def link(request):
        try:
            return call.ctx.slack.chat_getPermalink(channel=request.channel, message_ts=request.message_ts)["permalink"]
        except Exception:  # a link is a convenience; the list is what matters
            return None

    with _FETCHING:  # many people asking at once: one fetches, the others then find the links known
        missing = [request for request in requests[:40] if request.message_ts and
                   (request.channel, request.message_ts) not in known]
        if missing:
            with ThreadPoolExecutor(max_workers=8) as pool:
                for request, url in zip(missing, pool.map(link, missing), strict=True):
                    if url:
                        known[(request.channel, request.message_ts)] = url
    links = {request.id: known[(request.channel, request.message_ts)] for request in requests[:40]
             if (request.channel, request.message_ts) in known}
    return requests_list(requests, links)
