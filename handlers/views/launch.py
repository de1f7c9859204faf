"""The launch form: opened by `/ami launch` without arguments (or by an image's Launch button), and
its submission, which runs the same path as the command.

``open_launch_modal`` opens a "loading" view at once — a trigger_id is valid for 3 seconds — and
then replaces it with the form once the images are listed. The submission is validated before the
ack (no AWS: errors are shown on the fields), then launched as a durable job, recorded before the ack.

A Launch button's click is a durable job too (``OPEN_JOB``), recorded before the ack: its gate opens the loading
view on the quick lane while the trigger is fresh, naming it with an ``external_id`` of ours, and the job fills it
in on the AWS lane. After a crash the job runs again: the trigger has expired, but the view is found by its
external id and filled; if it never opened, the clicker is told to click again. Never lost, never two forms.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import asdict
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core import authority
from bot.core.errors import AmibotError, UsageError
from bot.durable import audit
from bot.render import blocks
from bot.render import launch as render
from bot.services import launch as service
from bot.services.images import account_labels, list_images
from bot.services.launch import LaunchOrder
from bot.services.versions import is_current
from bot.slack import delivery_keys
from bot.slack.dispatch import answer_failure
from bot.slack.reply import Reply
from handlers.launch_flow import start_launch

log = logging.getLogger(__name__)

JOB_KIND = "launch.form"
OPEN_JOB = "launch.open"  # a Launch button's form: opened (gate, quick lane), then filled (AWS lane)
TRIGGER_GONE = ("expired_trigger_id", "invalid_trigger_id")


def open_launch_modal(client, trigger_id: str, ctx, image_id: str | None = None, channel: str | None = None) -> None:
    """Open the launch form; `image_id` preselects an image, `channel` is where the launch is reported."""
    try:
        opened = client.views_open(trigger_id=trigger_id, view=render.loading_modal())
    except SlackApiError as error:
        if error.response.get("error") in TRIGGER_GONE:
            raise AmibotError("Slack closed the window for opening the launch form (3 seconds); try again, or "
                              "name the image: `/ami launch <ami-id|name|family> [type] [count]`.") from None
        raise
    client.views_update(view_id=opened["view"]["id"], view=_form_or_notice(ctx, image_id, channel))


def _form_or_notice(ctx, image_id: str | None, channel: str | None) -> dict:
    try:
        return _form(ctx, image_id, channel)
    except AmibotError as error:
        return render.notice_modal(f":warning: {blocks.escape(error.message)}")


# --- a Launch button's form, as a durable job ------------------------------------------------------------

def button_job(body: dict, key: str | None) -> dict[str, Any]:
    """What a Launch click's job needs, with the external id its views go by (derived from the delivery key, so
    a replayed click names the same view)."""
    seed = key or uuid.uuid4().hex
    return {"user": body["user"]["id"], "channel": delivery_keys.channel_of(body),
            "image_id": delivery_keys.text_at(body["actions"][0], "value"), "trigger_id": body.get("trigger_id"),
            "response_url": body.get("response_url"),
            "view": "amibot-launch-" + hashlib.sha256(seed.encode()).hexdigest()[:32]}


def open_loading(ctx, payload: dict[str, Any]) -> bool:
    """The gate: open the loading view while the trigger is fresh. True: go on and fill it. A trigger that is
    gone (the job outlived it: a restart) is fine if the view opened before; else the clicker is told."""
    try:
        ctx.slack.views_open(trigger_id=payload.get("trigger_id"), view=render.loading_modal(payload["view"]))
        return True
    except SlackApiError as error:
        said = error.response.get("error")
    if said == "duplicate_external_id" or (said in TRIGGER_GONE and _still_open(ctx, payload["view"])):
        return True
    log.warning("the launch form of %s could not be opened (%s)", payload["user"], said)
    _click_again(ctx, payload)
    return False


def _still_open(ctx, external_id: str) -> bool:
    try:
        ctx.slack.views_update(external_id=external_id, view=render.loading_modal(external_id))
    except SlackApiError:  # not_found: it never opened, or it was closed
        return False
    return True


def fill_form(ctx, payload: dict[str, Any]) -> None:
    """The job: list the images and put the form in the loading view's place (again after a restart: harmless)."""
    view = {**_form_or_notice(ctx, payload.get("image_id"), payload.get("channel")), "external_id": payload["view"]}
    try:
        ctx.slack.views_update(external_id=payload["view"], view=view)
    except SlackApiError as error:
        if error.response.get("error") != "not_found":
            raise
        _click_again(ctx, payload)  # closed meanwhile, or never opened


def _click_again(ctx, payload: dict[str, Any]) -> None:
    image = f" `{payload['image_id']}`" if payload.get("image_id") else " <ami-id>"
    try:
        Reply(ctx.slack, payload.get("channel"), payload["user"], payload.get("response_url")).ephemeral(blocks.error(
            "The launch form could not be opened: Slack allows 3 seconds for it, and amibot was restarting or busy. "
            f"Click *Launch* again, or run `/ami launch{image}`."))
    except Exception:
        log.exception("could not tell %s to click Launch again", payload["user"])


def _form(ctx, image_id: str | None, channel: str | None) -> dict:
    images, failures = list_images(ctx.aws, ctx.policy.digest.family_tag)
    now = ctx.clock()
    launchable = [image for image in images if image.state == "available"
                  and not (image.deprecation_time and image.deprecation_time <= now)]
    selected = next((image for image in images if image.id == image_id), None) if image_id else None
    if not launchable and selected is None:
        if failures:
            raise next(iter(failures.values()))
        return render.notice_modal("There are no available images to launch in "
                                   f"{', '.join(ctx.aws.regions)}. `/ami list` shows every image.")
    families = list(dict.fromkeys(image.family for image in launchable if image.family))
    promoted = {image.family for image in launchable if image.family and is_current(image)}
    return render.launch_modal(launchable, families, ctx.policy.launch.default_instance_type, now, channel,
                               selected, promoted=promoted, accounts=account_labels(ctx.aws))


def read_form(values: dict[str, Any], default_type: str) -> tuple[LaunchOrder | None, dict[str, str]]:
    """The order in the submitted form, or the errors to show on its fields (no AWS calls)."""
    errors: dict[str, str] = {}
    selected = delivery_keys.text_at(values, render.FIELD_IMAGE, render.VALUE, "selected_option", "value") or ""
    if not selected:
        errors[render.FIELD_IMAGE] = "Pick an image or a family."
    image_ref, _, region = selected.partition("@")
    parsed: dict[str, Any] = {}
    for block, parse in ((render.FIELD_TYPE, lambda text: service.parse_instance_type(text, default_type)),
                         (render.FIELD_COUNT, service.parse_count), (render.FIELD_NAME, service.parse_name)):
        text = delivery_keys.pick(values, block, render.VALUE, "value")
        try:
            if text is not None and not isinstance(text, str):  # Slack sends text; anything else is not an answer
                raise UsageError("This is not text.")
            parsed[block] = parse(text)
        except UsageError as error:
            errors[block] = error.message.replace("`", "")
    if errors:
        return None, errors
    return LaunchOrder(image_ref=image_ref, instance_type=parsed[render.FIELD_TYPE], count=parsed[render.FIELD_COUNT],
                       name=parsed[render.FIELD_NAME], region=region or None), {}


def run_form(ctx, payload: dict[str, Any]) -> None:
    """The job behind a submitted form: the same checks and launch as `/ami launch`, audited alike."""
    user, channel = payload["user"], payload.get("channel")
    reply = Reply(ctx.slack, channel or user, user)
    order = LaunchOrder(**payload["order"])
    detail: dict[str, Any] = {"form": payload["order"]}
    outcome = "ok"
    try:
        ctx.access.check_may_change_somewhere(user, channel, "/ami launch")
        with authority.acting(user, "/ami launch"):  # start_launch authorizes the account the instances run in
            answer = start_launch(ctx, order, user, channel or user, reply, detail,
                                  service.launch_reference(payload.get("delivery")))
        if answer is not None:
            reply.ephemeral(answer)
    except Exception as error:
        outcome = answer_failure(reply, error, "the launch form", f"launch form of {user}")
    finally:
        audit.record(ctx.store, actor=user, action="launch.form", channel=channel, target=detail.get("image"),
                     detail=detail, outcome=outcome)


def report_interrupted(ctx, payload: dict[str, Any]) -> None:
    """A launch is not repeated blindly after a restart: say what to check instead."""
    user, channel = payload["user"], payload.get("channel")
    audit.record(ctx.store, actor=user, action="launch.form", channel=channel, detail={"form": payload["order"]},
                 outcome="interrupted: the bot restarted while this ran")
    try:
        Reply(ctx.slack, channel or user, user).ephemeral(blocks.error(
            "amibot restarted while launching from your form. It was not re-run; look for instances tagged "
            f"`amibot:requested-by={user}` before trying again."))
    except Exception:
        log.exception("could not report an interrupted launch")


def register(app, ctx) -> None:
    @app.view(render.CALLBACK_ID)
    def submitted(ack, body, view, context):
        values = delivery_keys.pick(view, "state", "values") or {}
        order, errors = read_form(values, ctx.policy.launch.default_instance_type)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        channel = delivery_keys.text_at(delivery_keys.metadata(view), "channel")
        # Recorded before the ack (one SQLite insert, no AWS), so a crash right after cannot lose it. Only an
        # accepted submission claims its delivery key, so a replay launches nothing more; the key also names
        # the launch (its ClientToken), so even a re-run of this job cannot launch twice on AWS.
        key = delivery_keys.key_of(context, body)
        ctx.jobs.submit(JOB_KIND, {"order": asdict(order), "user": body["user"]["id"], "channel": channel,
                                   "delivery": key}, dedupe_key=key)
        ack()
