"""A new image's message: the durable job that watches it until available or failed, and its
Launch / Share buttons.

`/ami create`, `copy`, `register` and `base --copy` post "pending" at once and hand the wait to the
``image.watch`` job, so no command job sits on a worker for minutes. The watch is recorded as durable steps
(bot/durable/steps.py, owner ``watch:<ami-id>``: post the message, watch the image) *before* the message is posted, and
the message's ts the moment Slack answers, so a restart resumes the watch (polling is harmless to repeat) from
wherever a crash stopped it, instead of leaving the message "pending" forever. A crash between Slack taking the
post and the bot hearing its ts leaves a message the bot cannot find again: the resumed watch posts it anew,
saying so, and finishes that one. The wait is bounded: ctx.waits.create_wait_seconds (default 600) and
create_poll_seconds (default 15). The job and the resumption at start are registered by bot/wiring.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from bot.core.errors import AmibotError
from bot.durable import audit, jobs
from bot.durable.steps import DONE, FAILED, PLANNED, Step, Steps, owners_with_open
from bot.render import blocks
from bot.render.lifecycle import LAUNCH_ACTION, SHARE_ACTION, NewImage, button_hint, new_image
from bot.render.share import share_modal
from bot.services.create import wait_for_image
from bot.slack import delivery_keys
from bot.slack.reply import Reply
from handlers.views import launch as launch_form

log = logging.getLogger(__name__)

WATCH_JOB = "image.watch"
POST, WATCH = "post_message", "watch_image"  # the watch's two durable steps
REPOSTED = (":arrows_counterclockwise: amibot restarted while posting this message, so it was posted again: an "
            "earlier “pending” message about this image, if there is one, is out of date.")


def announce(call, new: NewImage) -> None:
    """Post the pending message where the command was run, then watch the image in the background."""
    ctx = call.ctx
    wait = ctx.waits.create_wait_seconds
    steps = Steps(ctx.store, f"watch:{new.image_id}")
    # Recorded before the post: whatever a crash interrupts from here on, the restart finishes (resume_watches).
    posting, _ = steps.plan([
        Step(POST, new.image_id, {"channel": call.channel, "response_url": call.reply.response_url}),
        Step(WATCH, new.image_id, {"image": dataclasses.asdict(new), "deadline": time.time() + wait})])
    try:
        ts = call.reply.post(new_image(new, "pending"))
    except Exception as error:  # the command reports it; the watch still answers, through the response_url
        steps.mark(posting, FAILED, f"{type(error).__name__}: {error}"[:300])
        ctx.jobs.submit(WATCH_JOB, {"watch": steps.owner})
        raise
    steps.mark(posting, DONE, "posted", ts=ts)
    ctx.jobs.submit(WATCH_JOB, {"watch": steps.owner})


def watch(ctx, payload: dict) -> None:
    if "watch" in payload:
        _watch_recorded(ctx, Steps(ctx.store, payload["watch"]))
    else:  # a job recorded before watches were durable steps: everything is in its payload
        _watch(ctx, payload)


def _watch_recorded(ctx, steps: Steps) -> None:
    found = {step.action: step for step in steps.all()}
    posting, waiting = found.get(POST), found.get(WATCH)
    if posting is None or waiting is None or not waiting.open:
        return  # finished already (this job is a repeat)
    if posting.open:  # the bot died while posting: Slack may have that message, but its ts never got here
        _post_again(ctx, steps, posting, waiting)
    payload = {**waiting.data, **{key: posting.data.get(key) for key in ("channel", "ts", "response_url")}}
    try:
        state = _watch(ctx, payload)
    except Exception as error:  # Slack refused the update for good: close the step, not retried every start
        steps.mark(waiting, FAILED, f"the message could not be finished ({type(error).__name__})")
        raise
    steps.mark(waiting, DONE, state)


def _post_again(ctx, steps: Steps, posting: Step, waiting: Step) -> None:
    new = NewImage(**waiting.data["image"])
    new.note = f"{new.note}\n{REPOSTED}" if new.note else REPOSTED  # every later render says it too
    steps.mark(waiting, PLANNED, None, image=dataclasses.asdict(new))
    reply = Reply(ctx.slack, posting.data.get("channel"), new.user, posting.data.get("response_url"))
    try:
        ts = reply.post(new_image(new, "pending"))
    except Exception as error:  # the outcome then goes to the requester (_finish_message without a ts)
        log.warning("could not post the message of %s again: %s", new.image_id, error)
        steps.mark(posting, FAILED, f"posted again after a restart, refused: {type(error).__name__}"[:300])
        return
    steps.mark(posting, DONE, "posted again after a restart", ts=ts)
    audit.record(ctx.store, actor="amibot", action="image.reposted", channel=posting.data.get("channel"),
                 target=new.image_id, outcome="posted again: the bot restarted before Slack's answer to the first "
                                              "post was recorded", detail={"name": new.name, "region": new.region})


def resume_watches(ctx) -> None:
    """At start: a watch recorded but with no job (a crash between recording it and starting it) gets one."""
    for owner in owners_with_open(ctx.store, WATCH, "watch:"):
        payload = {"watch": owner}
        if not jobs.is_active(ctx.store, WATCH_JOB, payload):
            ctx.jobs.submit(WATCH_JOB, payload)


def _watch(ctx, payload: dict) -> str:
    """Wait for the image, finish its message and audit it; returns the state it ended in."""
    new = NewImage(**payload["image"])
    interval = ctx.waits.create_poll_seconds
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
    return state


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
            time.sleep(ctx.waits.create_retry_seconds * attempt)


def register(app, ctx) -> None:
    @app.action(LAUNCH_ACTION)
    def launch_clicked(ack, body, context):
        """Open the launch form with this image chosen. Recorded before the ack, with the click's delivery key: a
        crash after the ack still ends in the form or in a word to click again, and a replay opens no second one."""
        key = delivery_keys.key_of(context, body)
        ctx.jobs.submit(launch_form.OPEN_JOB, launch_form.button_job(body, key), dedupe_key=key)
        ack()

    # Sharing needs a target: the Share button opens a small form (no AWS call; the trigger lasts 3 s).
    @app.action(SHARE_ACTION)
    def share_clicked(ack, body, client, context):
        first = delivery_keys.claim(ctx.store, delivery_keys.key_of(context, body))
        ack()
        if not first:
            return
        channel = delivery_keys.channel_of(body)
        image_id = body["actions"][0].get("value", "")
        regions = ctx.aws.regions  # configured, else the session's region: no AWS call
        try:
            client.views_open(trigger_id=body.get("trigger_id"), view=share_modal(image_id, regions, channel))
        except Exception:
            log.exception("could not open the share form")
            _hint(client, body, "share")


def _hint(client, body: dict, action: str) -> None:
    image_id = body["actions"][0].get("value", "")
    channel = delivery_keys.channel_of(body)
    try:
        Reply(client, channel, body["user"]["id"], body.get("response_url")).ephemeral(button_hint(action, image_id))
    except Exception:
        log.exception("could not answer the %s button", action)
