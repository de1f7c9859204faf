"""The Share button's form: who to share a new image with. A submitted form runs exactly what
`/ami share <ami-id> <target> [--region R]` runs — the same access check, policy, approval and audit —
as a durable command job recorded before the ack."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.core.errors import UsageError
from bot.render.share import ANY_REGION, FIELD_REGION, FIELD_TARGET, SHARE_FORM, VALUE
from bot.services.share import parse_target
from bot.slack import delivery_keys
from bot.slack.dispatch import JOB_KIND


def read_form(view: dict[str, Any], accounts: Iterable = ()) -> tuple[str | None, dict[str, str]]:
    """The `/ami share` text the form stands for, or the errors to show on its fields (no AWS). `accounts`:
    the managed accounts, whose names the field accepts."""
    values = delivery_keys.pick(view, "state", "values") or {}
    image_id = delivery_keys.text_at(delivery_keys.metadata(view), "image_id") or ""
    target = delivery_keys.text_at(values, FIELD_TARGET, VALUE, "value") or ""
    region = delivery_keys.text_at(values, FIELD_REGION, VALUE, "selected_option", "value") or ANY_REGION
    try:
        parsed = parse_target(target, accounts)
    except UsageError as error:
        return None, {FIELD_TARGET: error.message.replace("`", "")[:150]}
    if not image_id.startswith("ami-"):
        return None, {FIELD_TARGET: "This form lost its image; press the Share button again."}
    text = f"share {image_id} {'public' if parsed.kind == 'public' else parsed.value}"
    if region != ANY_REGION:
        text += f" --region {region}"
    return text, {}


def register(app, ctx) -> None:
    @app.view(SHARE_FORM)
    def submitted(ack, body, view, context):
        text, errors = read_form(view if isinstance(view, dict) else {}, ctx.aws.accounts)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        channel = delivery_keys.text_at(delivery_keys.metadata(view), "channel")
        user = delivery_keys.text_at(body, "user", "id")
        ctx.jobs.submit(JOB_KIND, {"text": text, "user_id": user, "channel_id": channel, "response_url": None,
                                   "trigger_id": body.get("trigger_id"), "via": "share form"},
                        dedupe_key=delivery_keys.key_of(context, body))
        ack()
