"""Retiring an image in stages that can be undone: deprecate (still launchable, marked old),
disable (hidden from launches, kept), and deregistration protection (cannot be deregistered).

Deprecation and protection are not implemented by every endpoint (moto has neither); bot.aws.clients turns
that into "this AWS endpoint does not support …". Disabling or unprotecting the *current* version of
a family goes through an approval (kinds DISABLE_KIND and UNPROTECT_KIND, registered by bot/wiring.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.aws.clients import Aws, call, requires
from bot.core.errors import AmibotError, NotFound, UsageError
from bot.core.text import named
from bot.services import approvals
from bot.services.images import Image, describe_own_images
from bot.services.references import Usage

DISABLE_KIND, UNPROTECT_KIND = "disable", "unprotect"  # the approval kinds for a current version
DETAILS_VIEW = "stage-change"  # renders a disable/unprotect request's details (bot/render/lifecycle.py)
MAX_AHEAD = timedelta(days=3650)  # AWS refuses deprecation times more than 10 years ahead
DURATION = re.compile(r"^(\d{1,5})\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)?$", re.IGNORECASE)
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DATE_HINT = "a date like 2026-07-01 or 2026-07-01T09:00Z (UTC unless an offset is given)"


def _round_up_to_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def deprecation_time(now: datetime, in_text: str | None, at_text: str | None) -> datetime:
    """When to deprecate: `--in N [days|hours|weeks|minutes]`, `--at DATE`, or (neither) the next minute."""
    if in_text and at_text:
        raise UsageError("Give either `--in N days` or `--at DATE`, not both.")
    if in_text:
        match = DURATION.match(in_text.strip())
        if not match:
            raise UsageError(f"`--in {in_text[:40]}` is not a duration; write e.g. `--in 30 days`, `--in 12 hours`.")
        amount = int(match.group(1))
        unit = UNITS[(match.group(2) or "d")[0].lower()]
        if amount <= 0:
            raise UsageError("`--in` needs a positive duration; leave it out to deprecate now.")
        moment = now + timedelta(**{unit: amount})
    elif at_text:
        moment = _parse_date(at_text)
        if moment <= now:
            raise UsageError(f"`--at {at_text[:40]}` is in the past; deprecation times must be in the future.")
    else:
        moment = now + timedelta(seconds=1)  # AWS refuses a time in the past: the next whole minute
    if moment - now > MAX_AHEAD:
        raise UsageError("AWS accepts deprecation times at most 10 years ahead.")
    return _round_up_to_minute(moment)


def _parse_date(text: str) -> datetime:
    value = text.strip().replace(" ", "T")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"`--at {text[:40]}` is not a date; use {DATE_HINT}.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@requires("ec2:EnableImageDeprecation")
def deprecate(aws: Aws, image: Image, at: datetime) -> None:
    call(aws.ec2(image.region), "enable_image_deprecation", resource=f"AMI {image.id}", ImageId=image.id,
         DeprecateAt=at)


@requires("ec2:DisableImageDeprecation")
def undeprecate(aws: Aws, image: Image) -> None:
    call(aws.ec2(image.region), "disable_image_deprecation", resource=f"AMI {image.id}", ImageId=image.id)


@requires("ec2:DisableImage")
def disable(aws: Aws, image: Image) -> None:
    call(aws.ec2(image.region), "disable_image", resource=f"AMI {image.id}", ImageId=image.id)


@requires("ec2:EnableImage")
def enable(aws: Aws, image: Image) -> None:
    call(aws.ec2(image.region), "enable_image", resource=f"AMI {image.id}", ImageId=image.id)


@requires("ec2:EnableImageDeregistrationProtection")
def protect(aws: Aws, image: Image, cooldown: bool = False) -> None:
    call(aws.ec2(image.region), "enable_image_deregistration_protection", resource=f"AMI {image.id}",
         ImageId=image.id, WithCooldown=cooldown)


@requires("ec2:DisableImageDeregistrationProtection")
def unprotect(aws: Aws, image: Image) -> None:
    call(aws.ec2(image.region), "disable_image_deregistration_protection", resource=f"AMI {image.id}",
         ImageId=image.id)


def protection(image: Image) -> str | None:
    """'disabled', 'enabled', 'enabled-with-cooldown' (DescribeImages), or None if the endpoint does not say."""
    return image.raw.get("DeregistrationProtection")


def is_protected(image: Image) -> bool:
    return (protection(image) or "").startswith("enabled")


# --- approved stage changes of a family's current version ------------------------------------------

def _owner_of(ctx, request) -> Aws:
    """The account the request's image is in (requests from before accounts: the bot's own)."""
    return ctx.aws.of(request.params.get("account") or "")


def _image_of(ctx, request) -> Image:
    params = request.params
    found = describe_own_images(_owner_of(ctx, request), params["region"], ctx.policy.digest.family_tag,
                                image_id=[params["image_id"]])
    if not found:
        raise NotFound(f"AMI {params['image_id']} no longer exists in {params['region']}.")
    return found[0]


def execute_disable(ctx, request, progress) -> str:
    image = _image_of(ctx, request)
    if image.state == "disabled":
        return f"{image.id} was already disabled"
    disable(_owner_of(ctx, request), image)
    return f"disabled {image.id} in {image.region}; `/ami enable {image.id}` brings it back"


def reconcile_disable(ctx, request) -> str | None:
    return approvals.SUCCEEDED if _image_of(ctx, request).state == "disabled" else None


def execute_unprotect(ctx, request, progress) -> str:
    image = _image_of(ctx, request)
    if protection(image) == "disabled":
        return f"{image.id} was not protected"
    unprotect(_owner_of(ctx, request), image)
    return f"removed deregistration protection from {image.id} in {image.region}"


def reconcile_unprotect(ctx, request) -> str | None:
    return approvals.SUCCEEDED if protection(_image_of(ctx, request)) == "disabled" else None


def _confirm(verb: str, params: dict, undo: str) -> str:
    """The Approve confirmation (plain text, within Slack's 300 characters): the image by name and id, and how
    it is undone."""
    return (f"{verb} {named(params.get('name'), str(params.get('image_id')))}, the current version of "
            f"{str(params.get('family'))[:48]}? {undo}")


def confirm_disable(params: dict) -> str:
    return _confirm("Disable", params, f"Undone with /ami enable {params.get('image_id')}: nothing is deleted.")


def confirm_unprotect(params: dict) -> str:
    return _confirm("Remove deregistration protection from", params,
                    f"Undone with /ami protect {params.get('image_id')}; until then it can be deregistered.")


def check_state(image: Image, allowed: tuple[str, ...], doing: str) -> None:
    if image.state not in allowed:
        raise AmibotError(f"{image.id} is {image.state}; cannot {doing} it.")


def approval_details(image: Image, usage: Usage, consequence: str, parameter: str) -> dict:
    """A disable/unprotect request's details as data (`consequence` is mrkdwn written without data in it):
    rendered with the request's message."""
    return {"view": DETAILS_VIEW, "image": {**image.shown(), "family": image.family, "version": image.version},
            "usage": usage.to_data(), "consequence": consequence, "parameter": parameter}
