"""The deregistration request's follow-up: the durable job that waits for AWS's image usage report (use by
other accounts) and then has the request's message re-rendered with what it says.

The job (``follow``, registered by bot/wiring.py) polls, bounded (ctx.waits.usage_report_wait_seconds,
default 1,200 s; every usage_report_poll_seconds, default 30 s), and survives a restart (polling again is
harmless). The report goes into the request's details (data); a request stored with rendered blocks (before
details were data) gets its block replaced here, not in bot/services (services never import bot/render).
"""

from __future__ import annotations

import logging
import time

from bot.core.errors import NotFound
from bot.durable import audit
from bot.render import deregister as render
from bot.services import approvals, usage_reports
from bot.services import deregister as service
from bot.services.usage_reports import OtherAccounts

log = logging.getLogger(__name__)


def follow(ctx, payload: dict) -> None:
    other = OtherAccounts.from_payload(payload["other"])
    interval = ctx.waits.usage_report_poll_seconds
    remaining = max(0.0, payload["deadline"] - time.time())
    try:
        owner = ctx.aws.of(other.account)  # the report is the owning account's
    except NotFound:
        log.warning("usage report %s: account %s is no longer managed; stopped following it", other.report_id,
                    other.account)
        return
    result = usage_reports.wait(owner, other, remaining, interval)
    try:
        request = approvals.get(ctx, payload["request_id"])
    except NotFound:
        return
    approvals.update_details(ctx, request.id, _with_report(request.details, result))
    outcome = (f"{len(result.accounts)} other account(s) use it" if result.known
               else f"unknown: {result.state}{' (timed out)' if result.timed_out else ''}")
    audit.record(ctx.store, actor="amibot", action="request.usage-report", channel=request.channel,
                 target=request.id, outcome=outcome,
                 detail={"image_id": result.image_id, "report_id": result.report_id, "accounts": result.accounts})


def _with_report(details: list[dict] | dict, result: OtherAccounts) -> list[dict] | dict:
    if isinstance(details, list):  # stored pre-rendered by an older build
        return render.with_other_accounts(details, result)
    return service.with_other_accounts(details, result)
