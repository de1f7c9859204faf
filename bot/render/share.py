"""Messages for `/ami share` and `/ami unshare`."""

from __future__ import annotations

import json

from bot.render.blocks import Message, code, context, escape, fields_section, message, mrkdwn_message, section
from bot.services.images import Image
from bot.services.share import ACCOUNT, BLOCKED, PUBLIC, UNKNOWN, ShareResult, SnapshotInfo, Target


def _image_label(image: Image) -> str:
    return f"*{escape(image.name or '(no name)')}* {code(image.id)} ({image.region})"


def target_label(target: Target) -> str:
    return "*everyone* (public)" if target.kind == PUBLIC else f"{target.kind} {code(target.value)}"


def _notes(result: ShareResult) -> list[dict]:
    return [context(f":information_source: {escape(note)}") for note in result.notes]


def shared(result: ShareResult, user: str) -> Message:
    text = f":handshake: <@{user}> shared {_image_label(result.image)} with {target_label(result.target)}."
    lines = [text]
    if result.snapshots:
        lines.append(f"It may create volumes from {', '.join(code(s) for s in result.snapshots)} (to copy the image).")
    return message(f"Shared {result.image.id} with {result.target.label}",
                   [section("\n".join(lines)), *_notes(result)])


def unshared(result: ShareResult, user: str, was_shared: bool) -> Message:
    if was_shared:
        text = (f":no_entry_sign: <@{user}> stopped sharing {_image_label(result.image)} with "
                f"{target_label(result.target)}.")
    else:
        text = (f":no_entry_sign: {_image_label(result.image)} was not shared with {target_label(result.target)}; "
                f"<@{user}> made sure it is not.")
    lines = [text]
    if result.snapshots:
        lines.append(f"Removed its createVolumePermission on {', '.join(code(s) for s in result.snapshots)}.")
    return message(f"Stopped sharing {result.image.id} with {result.target.label}", [section("\n".join(lines))])


def already_shared(image: Image, target: Target) -> Message:
    text = f"{_image_label(image)} is already shared with {target_label(target)}; nothing to do."
    return mrkdwn_message(text, [section(text)])


def approval_details(image: Image, target: Target, snapshots: list[SnapshotInfo], public_block: str | None) -> list:
    fields = [f"*Image*\n{_image_label(image)}", f"*Shared with*\n{target_label(target)}"]
    if target.kind == ACCOUNT and snapshots:
        fields.append(f"*Snapshots it may copy*\n{', '.join(code(s.id) for s in snapshots)}")
    keys = sorted({s.kms_key_id for s in snapshots if s.encrypted and s.kms_key_id})
    if keys:
        fields.append(f"*Encrypted with*\n{', '.join(code(key) for key in keys)} — the receiver needs a grant on it; "
                      "amibot does not change key policies")
    if target.kind == PUBLIC:
        state = {UNKNOWN: "unknown (this AWS endpoint does not report it)", BLOCKED: "on"}.get(
            public_block or UNKNOWN, public_block or UNKNOWN)
        fields.append(f"*Image block public access*\n{escape(state)}")
        fields.append("*Blast radius*\nanyone with an AWS account can launch this image")
    return [fields_section(fields)]


def share_details(details: dict) -> list:
    """A share request's details from its data (bot.services.share.approval_details)."""
    shown = details.get("image") or {}
    image = Image.stand_in(shown.get("id", ""), shown.get("name") or "", shown.get("region", ""))
    snapshots = [SnapshotInfo(**snapshot) for snapshot in details.get("snapshots") or []]
    return approval_details(image, Target(**details["target"]), snapshots, details.get("public_block"))


def needs_approval(request_id: str, channel: str, reason: str) -> Message:
    text = (f":raised_hand: Sharing needs an approval ({escape(reason)}). Asked for it: `{request_id}` "
            f"in <#{channel}>.")
    return mrkdwn_message(text, [section(text)])


# --- the Share button's form -------------------------------------------------------------------------

SHARE_FORM = "share.form"
FIELD_TARGET, FIELD_REGION, VALUE = "share_target", "share_region", "value"
ANY_REGION = "any"


def share_modal(image_id: str, regions: list[str], channel: str | None) -> dict:
    """A small form: who to share with (account, organisation or OU, or public) and the image's region."""
    region_options = [{"text": {"type": "plain_text", "text": "where the image is (found in any region)"},
                       "value": ANY_REGION}]
    region_options += [{"text": {"type": "plain_text", "text": region}, "value": region} for region in regions[:99]]
    return {
        "type": "modal", "callback_id": SHARE_FORM,
        "title": {"type": "plain_text", "text": "Share an AMI"},
        "submit": {"type": "plain_text", "text": "Share"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"image_id": image_id, "channel": channel}),
        "blocks": [
            section(f"Share {code(image_id)}: the account, organisation or OU may then launch and copy it. "
                    "Accounts outside `[sharing].allowed_accounts`, organisations, OUs and `public` need approval."),
            {"type": "input", "block_id": FIELD_TARGET,
             "label": {"type": "plain_text", "text": "With"},
             "hint": {"type": "plain_text", "text": "A 12-digit account id, org:<organization ARN>, "
                                                    "ou:<OU ARN>, or public"},
             "element": {"type": "plain_text_input", "action_id": VALUE, "max_length": 200,
                         "placeholder": {"type": "plain_text", "text": "123456789012"}}},
            {"type": "input", "block_id": FIELD_REGION,
             "label": {"type": "plain_text", "text": "Region"},
             "element": {"type": "static_select", "action_id": VALUE, "options": region_options,
                         "initial_option": region_options[0]}},
        ],
    }
