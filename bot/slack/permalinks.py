"""Links to request messages, asked of Slack (chat.getPermalink) once per message and process.

A message's permalink never changes: each is asked once, and the ones not yet known side by side, so forty open
requests cost one round trip the first time and none after. A link is a convenience: one Slack will not give is
left out, never an error.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_FETCHING = threading.Lock()


def request_links(ctx, requests: list, client=None) -> dict[str, str]:
    """{request id: permalink of its message} for the requests whose message was posted and Slack could link."""
    known = ctx.permalinks
    slack = client or ctx.slack

    def link(request):
        try:
            return slack.chat_getPermalink(channel=request.channel, message_ts=request.message_ts)["permalink"]
        except Exception:  # a link is a convenience; what it links to is what matters
            return None

    with _FETCHING:  # many people asking at once: one fetches, the others then find the links known
        missing = list({(request.channel, request.message_ts): request for request in requests
                        if request.message_ts and (request.channel, request.message_ts) not in known}.values())
        if missing:
            with ThreadPoolExecutor(max_workers=8) as pool:
                for request, url in zip(missing, pool.map(link, missing), strict=True):
                    if isinstance(url, str) and url:
                        known[(request.channel, request.message_ts)] = url
    return {request.id: known[(request.channel, request.message_ts)] for request in requests
            if request.message_ts and (request.channel, request.message_ts) in known}
