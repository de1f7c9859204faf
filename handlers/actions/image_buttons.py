"""A new image's message: the durable job that watches it until available or failed, and its
Launch / Share buttons.

`/ami create`, `register` and `base --copy` post "pending" at once and hand the wait to the
``image.watch`` job, so no command job sits on a worker for minutes, and a restart resumes the
watch (polling is harmless to repeat) instead of leaving the message "pending" forever. The wait is
bounded: ctx.extras["create.wait_seconds"] (default 600) and ["create.poll_seconds"] (default 15).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from bot import audit, blocks, delivery
from bot.errors import AmibotError
from bot.render.lifecycle import LAUNCH_ACTION, SHARE_ACTION, NewImage, button_hint, new_image
from bot.render.share import share_modal
from bot.services.create import DEFAULT_POLL_SECONDS, DEFAULT_WAIT_SECONDS, wait_for_image
from bot.slack import Reply
from handlers.views.launch import open_launch_modal

log = logging.getLogger(__name__)

WATCH_JOB = "image.watch"


def announce(call, new: NewImage) -> None:
    """Post the pending message where the command was run, then watch the image in the background."""
    ctx = call.ctx
    ts = call.reply.post(new_image(new, "pending"))
    wait = float(ctx.extras.get("create.wait_seconds", DEFAULT_WAIT_SECONDS))
    ctx.jobs.submit(WATCH_JOB, {"image": dataclasses.asdict(new), "channel": call.channel, "ts": ts,
                                "response_url": call.reply.response_url, "deadline": time.time() + wait})


def watch(ctx, payload: dict) -> None:
    new = NewImage(**payload["image"])
    interval = float(ctx.extras.get("create.poll_seconds", DEFAULT_POLL_SECONDS))
    remaining = max(0.0, payload["deadline"] - time.time())  # after a restart: what is left of the wait
    try:
        image = wait_for_image(ctx.aws.of(new.account), new.region, new.image_id, ctx.policy.digest.family_tag,
                               remaining, interval)  # in the account it is made in
    except Exception as error:  # the message is always finished: with what is known, never left "pending"
        said = error.message if isinstance(error, AmibotError) else type(error).__name__
        log.warning("watching %s failed: %s", new.image_id, said)
        pending = new_image(new, "pending")["blocks"]
        msg = blocks.message(f"AMI {new.name} ({new.image_id}): amibot could not check it", pending[:-1] + [
            blocks.context(f":warning: amibot could not check the image ({blocks.escape(said)}) and stopped watching "
                           f"it; AWS may still be working on it. Check with `/ami show {new.image_id}`.")])
        state = f"unknown: could not check ({said})"
    else:
        state = image.state if image else "gone"
        reason = (image.raw.get("StateReason") or {}).get("Message", "") if image else ""
        msg = new_image(new, state, reason, timed_out=state == "pending")
    _finish_message(ctx, payload, new, msg)
    audit.record(ctx.store, actor="amibot", action="image.watch", channel=payload.get("channel"),
                 target=new.image_id, outcome=state if state != "pending" else "still pending after the wait",
                 detail={"name": new.name, "region": new.region, "requested_by": new.user})


def _finish_message(ctx, payload: dict, new: NewImage, msg: dict, attempts: int = 3) -> None:
    """Update the pending message in place; Slack hiccups are retried briefly (an update is idempotent)."""
    reply = Reply(ctx.slack, payload.get("channel"), new.user, payload.get("response_url"))
    for attempt in range(1, attempts + 1):
        try:
            if payload.get("ts"):
                reply.update(payload["ts"], msg)
            else:  # the bot could not post in the channel; the command's response_url got the first message
                reply.ephemeral(msg)
            return
        except Exception:
            if attempt == attempts:
                raise
            log.warning("could not finish the message of %s (attempt %s); retrying", new.image_id, attempt)
            time.sleep(float(ctx.extras.get("create.retry_seconds", 1.0)) * attempt)


def register(app, ctx) -> None:
    ctx.jobs.register(WATCH_JOB, lambda payload: watch(ctx, payload),
                      lambda payload: ctx.jobs.submit(WATCH_JOB, payload),  # watching again is harmless
                      deadline=None)  # bounded by its own wait (create.wait_seconds), and says so itself

    @app.action(LAUNCH_ACTION)
    def launch_clicked(ack, body, client, context):
        """Open the launch form with this image chosen (the trigger is only valid for 3 s: open it now)."""
        first = delivery.claim(ctx.store, delivery.key_of(context, body))  # a replay opens no second form
        ack()
        if not first:
            return
        channel = delivery.channel_of(body)
        try:
            open_launch_modal(client, body.get("trigger_id"), ctx, image_id=body["actions"][0].get("value"),
                              channel=channel)
        except AmibotError as error:
            Reply(client, channel, body["user"]["id"], body.get("response_url")).ephemeral(blocks.error(error.message))

    # Sharing needs a target: the Share button opens a small form (no AWS call; the trigger lasts 3 s).
    @app.action(SHARE_ACTION)
    def share_clicked(ack, body, client, context):
        first = delivery.claim(ctx.store, delivery.key_of(context, body))
        ack()
        if not first:
            return
        channel = delivery.channel_of(body)
        image_id = body["actions"][0].get("value", "")
        regions = ctx.aws.regions  # configured, else the session's region: no AWS call
        try:
            client.views_open(trigger_id=body.get("trigger_id"), view=share_modal(image_id, regions, channel))
        except Exception:
            log.exception("could not open the share form")
            _hint(client, body, "share")


def _hint(client, body: dict, action: str) -> None:
    image_id = body["actions"][0].get("value", "")
    channel = delivery.channel_of(body)
    try:
        Reply(client, channel, body["user"]["id"], body.get("response_url")).ephemeral(button_hint(action, image_id))
    except Exception:
        log.exception("could not answer the %s button", action)
