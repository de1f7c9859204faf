"""Events: the App Home tab is the dashboard.

On app_home_opened the tab is published at once from SQLite (the requests waiting for the user, theirs, the
digest's trend) and the fleet numbers cached by the last refresh — never an AWS call on this path. When the
cache is older than five minutes, a durable ``home.refresh`` job reads the fleet from AWS and publishes the
tab again. While someone looks at the tab (opened in the last 30 minutes) the scheduler keeps the cache fresh.
"""

from __future__ import annotations

import logging
import time

from bot.durable.jobs import AWS, QUICK
from bot.render.home import SHOWN_ROLLOUTS, SHOWN_WAITING, home_view
from bot.services import dashboard
from bot.slack import delivery_keys
from bot.slack.permalinks import request_links

log = logging.getLogger(__name__)

HOME_JOB = "home.refresh"
BUCKET_SECONDS = 300  # one refresh per user per five minutes, however often the tab is opened


def publish(ctx, client, user: str, notice: str | None = None) -> None:
    board = dashboard.dashboard(ctx, user)
    # each message's link is asked of Slack once: the requests waiting, and the rollouts' requests
    links = request_links(ctx, board.waiting[:SHOWN_WAITING] + board.rollouts[:SHOWN_ROLLOUTS], client)
    client.views_publish(user_id=user, view=home_view(board, notice, links))


def refresh(ctx, payload: dict) -> None:
    """Recompute the fleet (AWS) when asked, then publish the tab for the users named (no AWS for those)."""
    if payload.get("fleet", True) and (payload.get("force") or dashboard.stale(ctx.store, ctx.clock())):
        dashboard.save_fleet(ctx.store, dashboard.compute_fleet(ctx))
    for user in payload.get("users") or []:
        try:
            publish(ctx, ctx.slack, user, payload.get("notice"))
        except Exception:  # one user's tab failing must not stop the others'
            log.exception("could not publish the Home tab for %s", user)


def ask_for_refresh(ctx, users: list[str], fleet: bool = True, notice: str | None = None) -> None:
    """A fleet refresh: at most one per user (or for the cache alone) in each five-minute window. Without the
    fleet (after a decision taken on the tab, with its outcome as `notice`): every time, on the quick lane."""
    if not fleet:
        ctx.jobs.submit(HOME_JOB, {"users": users, "fleet": False, "notice": notice}, lane=QUICK)
        return
    bucket = int(time.time() // BUCKET_SECONDS)
    who = ",".join(sorted(users)) or "cache"
    ctx.jobs.submit(HOME_JOB, {"users": users, "fleet": True}, lane=AWS, dedupe_key=f"home:{who}:{bucket}")


def keep_fresh(ctx) -> None:
    """Scheduled: refresh the fleet cache while someone is looking at the Home tab."""
    now = ctx.clock()
    if dashboard.wanted(ctx.store, now) and dashboard.stale(ctx.store, now):
        ask_for_refresh(ctx, [])


def register(app, ctx) -> None:
    @app.event("app_home_opened")
    def home_opened(event, client, body, context):
        if not isinstance(event, dict) or event.get("tab") != "home" or not isinstance(event.get("user"), str):
            return
        # No job to record: the event's delivery key is claimed on its own (one INSERT), so a retried or
        # redelivered event publishes once.
        if not delivery_keys.claim(ctx.store, delivery_keys.key_of(context, body)):
            return
        user, now = event["user"], ctx.clock()
        dashboard.want(ctx.store, now)
        try:
            publish(ctx, client, user)
        finally:  # even if Slack refused the first view, the refresh publishes a fresh one
            if dashboard.stale(ctx.store, now):
                ask_for_refresh(ctx, [user])
