"""Messages and the form for `/ami launch`."""

from __future__ import annotations

import json
from datetime import datetime

from bot.render.blocks import (
    Message,
    age,
    clip,
    code,
    context,
    escape,
    fields_section,
    message,
    mrkdwn_message,
    section,
)
from bot.services.images import Image
from bot.services.launch import FAMILY_PREFIX, HARD_MAX_COUNT, LaunchOrder, LaunchResult

CALLBACK_ID = "launch_modal"
FIELD_IMAGE, FIELD_TYPE, FIELD_COUNT, FIELD_NAME = "image", "instance_type", "count", "name"
VALUE = "value"  # the action_id of every input in the form
MAX_OPTIONS = 100  # Slack's limit for a static_select
MAX_FAMILIES = 25
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_INSTANCES_LISTED = 20


def _image_label(image: Image) -> str:
    return f"*{escape(image.name or '(no name)')}* {code(image.id)} in {image.region}"


def _what(order: LaunchOrder) -> str:
    return f"{order.count} × {code(order.instance_type)}"


def _instance_list(ids: list[str]) -> str:
    shown = ", ".join(code(instance_id) for instance_id in ids[:MAX_INSTANCES_LISTED])
    more = len(ids) - MAX_INSTANCES_LISTED
    return shown + (f" …and {more} more" if more > 0 else "")


def _into(where: str) -> str:
    """" into prod (111111111111)": the account the instances run in, said when there are many."""
    return f" into {escape(where)}" if where else ""


def launch_started(image: Image, order: LaunchOrder, ids: list[str], user: str, request_ref: str,
                   where: str = "") -> Message:
    text = (f":rocket: <@{user}> launched {_what(order)}{_into(where)} from {_image_label(image)}: "
            f"{_instance_list(ids)}")
    return message(f"Launching {len(ids)} instance(s) from {image.id}", [
        section(text),
        context(f":hourglass_flowing_sand: Waiting for them to run… · tagged `amibot:request={escape(request_ref)}`")])


def launch_finished(result: LaunchResult, order: LaunchOrder, user: str, request_ref: str, where: str = ""
                    ) -> Message:
    image = result.image
    if result.failed:
        icon, headline = ":red_circle:", f"{len(result.failed)} of {len(result.statuses)} instance(s) failed"
    elif result.pending:
        icon, headline = ":hourglass:", f"{len(result.pending)} of {len(result.statuses)} instance(s) still pending"
    else:
        icon, headline = ":large_green_circle:", f"{len(result.running)} instance(s) running"
    lines = []
    for status in result.statuses[:MAX_INSTANCES_LISTED]:
        reason = f" — {escape(status.reason)}" if status.reason and status.state != "running" else ""
        lines.append(f"• {code(status.id)} {status.state}{reason}")
    if len(result.statuses) > MAX_INSTANCES_LISTED:
        lines.append(f"…and {len(result.statuses) - MAX_INSTANCES_LISTED} more")
    blocks = [section(f"{icon} {headline}{_into(where)}: {_what(order)} from {_image_label(image)}, "
                      f"launched by <@{user}>"),
              section("\n".join(lines))]
    note = f"tagged `amibot:request={escape(request_ref)}`"
    if result.pending:
        note += " · they did not run within the wait; check them in the EC2 console"
    blocks.append(context(note))
    return message(f"{headline} from {image.id}", blocks)


def approval_details(image: Image, order: LaunchOrder, subnet: str | None, where: str = "") -> list[dict]:
    fields = [f"*Image*\n{_image_label(image)}", f"*Instances*\n{_what(order)}{_into(where)}",
              f"*Name tag*\n{escape(order.name or image.name or image.id)}",
              f"*Subnet*\n{code(subnet) if subnet else 'the default VPC'}"]
    if order.force:
        fields.append("*Deprecated image*\nlaunched anyway (`--force`)")
    return [fields_section(fields)]


def stored_image(details: dict) -> Image:
    """The image stored details show (Image.shown), as an Image to render."""
    shown = details.get("image") or {}
    return Image.stand_in(shown.get("id", ""), shown.get("name") or "", shown.get("region", ""))


def launch_details(details: dict) -> list[dict]:
    """A launch request's details from its data (bot.services.launch.approval_details)."""
    image = stored_image(details)
    return approval_details(image, LaunchOrder(**details.get("order") or {}), details.get("subnet"),
                            details.get("where") or "")


def needs_approval(request_id: str, channel: str, reasons: list[str]) -> Message:
    why = "; ".join(escape(reason) for reason in reasons)
    text = (f":raised_hand: This launch is outside the launch policy ({why}), so it needs an approval. "
            f"Asked for it: `{request_id}` in <#{channel}>.")
    return mrkdwn_message(text, [section(text)])


# --- the form ----------------------------------------------------------------------------------------

def loading_modal(external_id: str | None = None) -> dict:
    """Opened at once (a trigger_id lives 3 s); replaced by the form when the images are listed. ``external_id``
    (ours, unlike the view id Slack answers with) lets a restart find the view to replace."""
    view = _modal([section(":hourglass_flowing_sand: Finding your images…")], submit=False)
    return {**view, "external_id": external_id} if external_id else view


def notice_modal(text: str) -> dict:
    return _modal([section(text)], submit=False)


def _option(text: str, value: str) -> dict:
    return {"text": {"type": "plain_text", "text": clip(text, MAX_OPTION_TEXT)}, "value": value}


def image_option(image: Image, now: datetime, accounts: dict[str, str] | None = None) -> dict:
    """`accounts` ({id: short name}, with many accounts): the option names the image's account."""
    where = f"{accounts.get(image.account, image.account)} · {image.region}" if accounts else image.region
    return _option(f"{image.name or image.id} · {where} · {age(image.created, now)}", f"{image.id}@{image.region}")


def launch_modal(images: list[Image], families: list[str], instance_type: str, now: datetime,
                 channel: str | None, selected: Image | None = None, promoted: set[str] | None = None,
                 accounts: dict[str, str] | None = None) -> dict:
    """The form: image (families and recent images), instance type, count, name. A family reads "(current
    version)" only when a version was promoted; otherwise the launch takes its newest available image."""
    promoted = promoted or set()
    family_options = [_option(f"{family} ({'current' if family in promoted else 'newest'} version)",
                              FAMILY_PREFIX + family)
                      for family in families[:MAX_FAMILIES]
                      if len(FAMILY_PREFIX + family) <= MAX_OPTION_VALUE]
    image_options = [image_option(image, now, accounts) for image in images]
    if selected is not None and all(option["value"] != f"{selected.id}@{selected.region}" for option in image_options):
        image_options.insert(0, image_option(selected, now, accounts))
    image_options = image_options[:MAX_OPTIONS - len(family_options)]
    groups = [{"label": {"type": "plain_text", "text": label}, "options": options}
              for label, options in (("Families", family_options), ("Recent images", image_options)) if options]
    select: dict = {"type": "static_select", "action_id": VALUE, "option_groups": groups,
                    "placeholder": {"type": "plain_text", "text": "A family or an image"}}
    if selected is not None:
        select["initial_option"] = image_option(selected, now, accounts)
    blocks = [
        {"type": "input", "block_id": FIELD_IMAGE, "label": {"type": "plain_text", "text": "Image"},
         "element": select},
        {"type": "input", "block_id": FIELD_TYPE, "label": {"type": "plain_text", "text": "Instance type"},
         "element": {"type": "plain_text_input", "action_id": VALUE, "initial_value": instance_type,
                     "max_length": 40}},
        {"type": "input", "block_id": FIELD_COUNT, "label": {"type": "plain_text", "text": "Count"},
         "element": {"type": "number_input", "action_id": VALUE, "is_decimal_allowed": False,
                     "initial_value": "1", "min_value": "1",
                     "max_value": str(HARD_MAX_COUNT)}},
        {"type": "input", "block_id": FIELD_NAME, "optional": True,
         "label": {"type": "plain_text", "text": "Name tag"},
         "element": {"type": "plain_text_input", "action_id": VALUE, "max_length": 255,
                     "placeholder": {"type": "plain_text", "text": "defaults to the image name"}}},
    ]
    return _modal(blocks, submit=True, channel=channel)


def _modal(blocks: list[dict], submit: bool, channel: str | None = None) -> dict:
    view: dict = {"type": "modal", "callback_id": CALLBACK_ID,
                  "title": {"type": "plain_text", "text": "Launch instances"},
                  "close": {"type": "plain_text", "text": "Cancel" if submit else "Close"},
                  "blocks": blocks, "private_metadata": json.dumps({"channel": channel})}
    if submit:
        view["submit"] = {"type": "plain_text", "text": "Launch"}
    return view
