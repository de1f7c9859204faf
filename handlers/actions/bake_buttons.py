"""The Promote button of a bake with promote = "manual": an operator of the account the bake ran in makes the baked
version current, exactly as `/ami promote` does, in every region it exists in.

The click is recorded as a durable job with its delivery key before the ack (a replay promotes nothing twice, and
promoting an already current version is left as it is); the job is registered by bot/wiring.py.
"""

from __future__ import annotations

import logging

from bot.core import authority, metrics
from bot.core.errors import NotFound
from bot.durable import audit
from bot.render import blocks
from bot.render.bake import PROMOTE_ACTION
from bot.services import bake as baking
from bot.slack import delivery_keys
from bot.slack.dispatch import answer_failure
from bot.slack.reply import Reply

log = logging.getLogger(__name__)

CLICK_JOB = "bake.promote"


def promote_clicked(ctx, payload: dict) -> None:
    user, channel, bake_id = payload["user"], payload.get("channel"), payload.get("value", "")
    reply = Reply(ctx.slack, channel, user, payload.get("response_url"))
    outcome = "ok"
    try:
        run = baking.load(ctx.store, bake_id) if bake_id else None
        join = run.steps.get(baking.JOIN) if run else None
        if run is None or join is None or not join.data.get("images"):
            raise NotFound(f"No finished bake `{bake_id}` to promote; `/ami bakes` lists them.")
        record = run.record
        ctx.access.check_may_change_somewhere(user, channel, "Promote", account=record["account"] or None)
        with authority.acting(user, f"promote {bake_id}"):
            authority.authorize(ctx, record["account"] or None)  # the operators of the account it was baked in
            params = {"family": record["family"], "version": join.data.get("version") or record["version"],
                      "images": join.data["images"], "account": record["account"]}
            said = baking.promote_version(ctx, params, user, lambda text: None)
        reply.ephemeral(blocks.info(f":white_check_mark: {said}."))
    except Exception as error:
        outcome = answer_failure(reply, error, "Promote", f"promote click on {bake_id} by {user}")
    finally:
        audit.record(ctx.store, actor=user, action="bake.promote", channel=channel, target=bake_id,
                     outcome=outcome if outcome != "ok" else "promoted", detail={"bake": bake_id})
        metrics.click_finished(ctx, CLICK_JOB, outcome)


def report_interrupted(ctx, payload: dict) -> None:
    """Promoting again is harmless (a region already current is left as it is): run it again."""
    ctx.jobs.submit(CLICK_JOB, payload)


def register(app, ctx) -> None:
    @app.action(PROMOTE_ACTION)
    def clicked(ack, body, context):
        key = delivery_keys.key_of(context, body)
        payload = {"user": body["user"]["id"], "channel": delivery_keys.channel_of(body),
                   "value": body["actions"][0].get("value", ""), "response_url": body.get("response_url")}
        ctx.jobs.submit(CLICK_JOB, payload, dedupe_key=key)
        ack()

