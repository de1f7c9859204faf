"""`/ami revoke`: the incident path for a version that must not run (issue 23 §2).

One four-eyes request (KIND) whose message shows, before anyone approves, what its approval will change:
- which channel moves: for every revoked image that is its family's current version in its account and region, the
  SSM parameter ``/amibot/<family>/current`` back to the version promoted before (bot.services.versions.rollback,
  the very function `/ami rollback` runs);
- which images are deprecated now and disabled (hidden from new launches, kept: `/ami enable` brings one back): the
  image, and with ``--descendants`` every image lineage knows was baked or copied from it (bot.services.lineage), in
  every managed account and region;
- how many instances and Auto Scaling groups run them, in which accounts (the instances' image, as drift reads it);
- the reason.

The requester must be an operator of every account owning an image it changes, before any AWS call that changes
something (``authorize``). On approval, each change is a durable step (bot.durable.steps) planned before the first
AWS call and marked the moment AWS answers, so a restart resumes the steps left open and repeats none (``reconcile``):
roll the channel back, then per image tag it ``amibot:revoked`` = reason, deprecate it now, disable it; and last
offer a rollout of the family's (new) current version to the groups still running a revoked image (``offer_rollout``).

Where revocations live: the tag ``amibot:revoked`` on the image (so `/ami show` marks it with the reason in every
account and process, and anyone in the AWS console sees why it is disabled), and the ``revocations`` table (owned
here) so the Home tab lists them from SQLite alone, without asking AWS on the ack path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.aws.clients import Aws, call, requires
from bot.core import metrics
from bot.core.errors import AmibotError, AwsError, PolicyViolation
from bot.core.text import escape
from bot.durable import audit
from bot.durable.steps import DONE, FAILED, SKIPPED, Resumed, Step, Steps
from bot.services import approvals, rollout, stages
from bot.services.drift import running_in
from bot.services.images import Image, describe_own_images, find_image
from bot.services.lineage import lineage_of
from bot.services.versions import active_promotion, finish_rollback, is_promoted, parameter_name, rollback

KIND = "revoke"
DETAILS_VIEW = "revoke"  # renders a revocation request's details (bot/render/revoke.py)
REVOKED_TAG = "amibot:revoked"
TAG_VALUE_CHARS = 256  # AWS's limit on a tag value
ROLLBACK, TAG, DEPRECATE, DISABLE, OFFER = "rollback_channel", "tag_revoked", "deprecate_image", "disable_image", \
    "offer_rollout"


# --- the plan, as data (stored as the request's details) ---------------------------------------------------

def _shown(image: Image, depth: int = 0) -> dict[str, Any]:
    return {"id": image.id, "name": image.name, "region": image.region, "account": image.account,
            "family": image.family, "version": image.version, "state": image.state, "depth": depth}


def _label(ctx, account_id: str) -> str:
    return ctx.aws.of(account_id or None).account.label if ctx.aws.many else ""


def channel_moves(ctx, images: list[Image]) -> list[dict[str, Any]]:
    """Every (account, region) where a revoked image is its family's current version: the channel goes back to the
    version promoted before it (None when there is none: the move cannot be made, and the plan says so)."""
    moves = []
    for image in images:
        if not image.family or not is_promoted(ctx, image):
            continue
        home = ctx.aws.home.account.id
        stored_as = (image.account, "") if image.account and image.account == home else (image.account,)
        active = active_promotion(ctx.store, image.family, image.region, stored_as)
        previous = active["previous_image_id"] if active and active["image_id"] == image.id else None
        moves.append({"family": image.family, "region": image.region, "account": image.account,
                      "account_label": _label(ctx, image.account), "parameter": parameter_name(image.family),
                      "from": image.id, "to": previous})
    return moves


def usage_of(ctx, images: list[dict[str, Any]]) -> dict[str, Any]:
    """How many instances and Auto Scaling groups run these images, per managed account (each image's region, in
    every managed account: a shared image runs in others too). Accounts that could not be read are named."""
    ids = {image["id"] for image in images}
    regions = sorted({image["region"] for image in images})
    by_account: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    results = ctx.aws.each_target(lambda handle, region: running_in(handle, region)[0],
                                  ctx.aws.targets(regions=regions))
    for target, result in results.items():
        if isinstance(result, AwsError):
            failures[target.label] = result.message
            continue
        label = target.account.label if ctx.aws.many else ""
        for instance in result:
            if instance.image_id not in ids:
                continue
            entry = by_account.setdefault(label, {"instances": 0, "groups": {}, "image_ids": []})
            entry["instances"] += 1
            if instance.group:
                key = f"{instance.group} ({target.region})"
                entry["groups"][key] = entry["groups"].get(key, 0) + 1
            if instance.image_id not in entry["image_ids"]:
                entry["image_ids"].append(instance.image_id)
    return {"accounts": by_account, "failures": failures}


@dataclass
class Plan:
    image: Image
    images: list[Image]  # the image first, then its descendants (tree order)
    depths: list[int]
    moves: list[dict[str, Any]]
    usage: dict[str, Any]
    unread: dict[str, str]  # where descendants could not be looked for


def plan(ctx, image: Image, descendants: bool, authorize: Callable[[str], object] | None = None) -> Plan:
    images, depths, unread = [image], [0], {}
    if descendants:
        found = lineage_of(ctx.aws, image, ctx.policy.digest.family_tag)
        images += [child for _, child in found.descendants]
        depths += [depth for depth, _ in found.descendants]
        unread = dict(found.unread)
    if authorize is not None:  # every owning account's operators, before anything is asked of AWS beyond reads
        for account in dict.fromkeys(each.account for each in images):
            authorize(account)
    shown = [_shown(each, depth) for each, depth in zip(images, depths, strict=True)]
    return Plan(image, images, depths, channel_moves(ctx, images), usage_of(ctx, shown), unread)


def approval_details(ctx, found: Plan, reason: str, descendants: bool) -> dict[str, Any]:
    return {"view": DETAILS_VIEW, "reason": reason, "descendants": descendants,
            "images": [{**_shown(image, depth), "account_label": _label(ctx, image.account)}
                       for image, depth in zip(found.images, found.depths, strict=True)],
            "moves": found.moves, "usage": found.usage, "unread": found.unread}


def request_revocation(ctx, ref: str, requester: str, channel: str, reason: str | None, descendants: bool, *,
                       authorize: Callable[[str], object] | None = None) -> approvals.Request:
    """Find the image (id or unique name), check the requester may change every account the revocation touches
    (`authorize(account id)` raises AccessDenied), plan it and open the request. Nothing in AWS changes here."""
    if not channel:
        raise AmibotError("Approval requests are posted in a channel; run this command in one.")
    image = find_image(ctx.aws, ref, ctx.policy.digest.family_tag)
    if authorize is not None:
        authorize(image.account)
    if image.state not in ("available", "disabled"):
        raise PolicyViolation(f"{image.id} is {image.state}; only an available or disabled image can be revoked.")
    found = plan(ctx, image, descendants, authorize)
    reason = (reason or "").strip() or "no reason given"
    more = f" and {len(found.images) - 1} descendant(s)" if len(found.images) > 1 else ""
    request = approvals.create_request(
        ctx, kind=KIND, params={"image_id": image.id, "region": image.region, "name": image.name,
                                "family": image.family, "account": image.account, "reason": reason,
                                "descendants": descendants,
                                "accounts": list(dict.fromkeys(each.account for each in found.images))},
        requester=requester, channel=channel,
        title=f"Revoke {image.name or image.id} ({image.id}, {image.region}){more}",
        details=approval_details(ctx, found, reason, descendants),
        reason=f"revoking deprecates and disables {len(found.images)} image(s)"
               + (f" and moves {len(found.moves)} channel(s) back" if found.moves else "") + f": {reason}",
        danger=True)
    return request


def confirm_text(params: dict, details: Any = None) -> str:
    images = len(details.get("images") or []) if isinstance(details, dict) else 1
    moves = len(details.get("moves") or []) if isinstance(details, dict) else 0
    text = f"Revoke {params.get('image_id')}: deprecate and disable {images} image(s)"
    if moves:
        text += f", move {moves} channel(s) back to the previous version"
    return (text + f". Reason: {params.get('reason') or ''}")[:290]


# --- executing: durable steps, resumed after a crash ---------------------------------------------------------

def _steps_of(details: dict[str, Any]) -> list[Step]:
    planned = [Step(ROLLBACK, f"{move['family']}@{move['account'] or '-'}/{move['region']}", dict(move))
               if move.get("to") else
               Step(ROLLBACK, f"{move['family']}@{move['account'] or '-'}/{move['region']}", dict(move), SKIPPED,
                    "no version was promoted before it: the channel stays (promote another version)")
               for move in details.get("moves") or []]
    for action in (TAG, DEPRECATE, DISABLE):
        planned += [Step(action, image["id"], {"region": image["region"], "account": image["account"]})
                    for image in details.get("images") or []]
    planned.append(Step(OFFER, (details.get("images") or [{}])[0].get("family") or "", {}))
    return planned


def _image(ctx, data: dict[str, Any], image_id: str) -> Image | None:
    found = describe_own_images(ctx.aws.of(data.get("account") or None), data["region"],
                                ctx.policy.digest.family_tag, image_id=[image_id])
    return found[0] if found else None


@requires("ec2:CreateTags")
def tag_revoked(aws: Aws, image: Image, reason: str) -> None:
    call(aws.ec2(image.region), "create_tags", resource=f"AMI {image.id}", Resources=[image.id],
         Tags=[{"Key": REVOKED_TAG, "Value": reason[:TAG_VALUE_CHARS]}])


def _run(ctx, request: approvals.Request, steps: Steps, step: Step, progress) -> None:
    """One step, idempotent: what AWS already shows as done is marked done without a second call."""
    params, data = request.params, step.data
    reason = params.get("reason") or "no reason given"
    try:
        if step.action == ROLLBACK:
            home = ctx.aws.home.account.id
            account = data.get("account") or ""
            stored_as = (account, "") if account and account == home else (account,)
            active = active_promotion(ctx.store, data["family"], data["region"], stored_as)
            if active is None or active["image_id"] != data["from"]:  # claimed: moved, or stopped before moving
                moved = finish_rollback(ctx, data["family"], data["region"], account or None, data["from"],
                                        data["to"])
                steps.mark(step, DONE, f"{data['parameter']} → {data['to']}" + ("" if moved else " (already)"))
            else:
                result = rollback(ctx, data["family"], data["region"], request.requester, account or None)
                steps.mark(step, DONE, f"{result.parameter} → {result.image.id}")
                progress(f":rewind: {result.parameter} in {data['region']} points at {result.image.id} again "
                         f"(was {data['from']}).")
        elif step.action == OFFER:
            steps.mark(step, DONE, offer_rollout(ctx, request, step.target, progress))
        else:
            image = _image(ctx, data, step.target)
            if image is None:
                steps.mark(step, FAILED, "the image no longer exists")
            else:
                owner = ctx.aws.of(data.get("account") or None)
                if step.action == TAG:
                    if image.tags.get(REVOKED_TAG) != reason[:TAG_VALUE_CHARS]:
                        tag_revoked(owner, image, reason)
                    steps.mark(step, DONE, "tagged")
                elif step.action == DEPRECATE:
                    now = ctx.clock()
                    if image.deprecation_time and image.deprecation_time <= now + timedelta(minutes=1):
                        steps.mark(step, DONE, "already deprecated")
                    else:
                        stages.deprecate(owner, image, stages.deprecation_time(now, None, None))
                        steps.mark(step, DONE, "deprecated")
                elif step.action == DISABLE:
                    if image.state == "disabled":
                        steps.mark(step, DONE, "already disabled")
                    else:
                        stages.disable(owner, image)
                        steps.mark(step, DONE, "disabled")
                        progress(f":no_entry: Deprecated and disabled {image.id} ({image.name}) in {image.region}.")
                    _remember(ctx, request, image, reason)
                    metrics.image_revoked(ctx)
    except AmibotError as error:
        steps.mark(step, FAILED, error.message)
    audit.record(ctx.store, actor="amibot", action=f"revoke.{step.action}", target=step.target,
                 outcome=f"{step.state}: {step.result}", channel=request.channel,
                 detail={"request": request.id, **{k: v for k, v in step.data.items() if k != "account_label"}})


def _work(ctx, request: approvals.Request, progress) -> tuple[list[Step], list[Step]]:
    """Run every open step in order; (steps done before this call, steps run now)."""
    steps = Steps(ctx.store, f"request:{request.id}")
    planned = steps.all()
    if not planned:  # the plan is durable before the first AWS call
        planned = steps.plan(_steps_of(request.details))
        audit.record(ctx.store, actor="amibot", action="revoke.plan", target=request.params["image_id"],
                     outcome=f"planned {len(planned)} step(s)", channel=request.channel,
                     detail={"request": request.id, "steps": [f"{s.action} {s.target}" for s in planned]})
    before = [step for step in planned if not step.open]
    now = [step for step in planned if step.open]
    for step in now:
        _run(ctx, request, steps, step, progress)
    return before, now


def _phrase(step: Step) -> str:
    return {ROLLBACK: f"moved {step.target} back", TAG: f"tagged {step.target}",
            DEPRECATE: f"deprecated {step.target}", DISABLE: f"disabled {step.target}",
            OFFER: "offered the rollout"}[step.action]


def execute(ctx, request: approvals.Request, progress) -> str:
    _, ran = _work(ctx, request, progress)
    failed = [f"{_phrase(step)}: {step.result}" for step in ran if step.state == FAILED]
    images = [step.target for step in ran if step.action == DISABLE and step.state == DONE]
    moved = [step.result for step in ran if step.action == ROLLBACK and step.state == DONE]
    summary = f"Revoked {', '.join(images) or 'nothing'}" + (f"; channel {', '.join(moved)}" if moved else "")
    if failed:
        raise AmibotError(f"{summary}; but could NOT: {'; '.join(failed)}")
    return summary + "."


def reconcile(ctx, request: approvals.Request):
    """After a restart mid-execution: no plan → nothing was done (approve again); else the open steps are run (each
    checks AWS first), the done ones are not repeated."""
    steps = Steps(ctx.store, f"request:{request.id}")
    if not steps.all():
        return None
    before, ran = _work(ctx, request, lambda text: None)
    resumed = Resumed(before=[_phrase(step) for step in before if step.state == DONE],
                      after=[_phrase(step) for step in ran if step.state == DONE],
                      failed=[f"{_phrase(step)}: {step.result}" for step in ran if step.state == FAILED])
    return approvals.Reconciled(approvals.FAILED if resumed.failed else approvals.SUCCEEDED, resumed.sentence())


# --- the rollout offer: THE call site the coordinator switches to bot.services.rollout.request_rollout --------

def offer_rollout(ctx, request: approvals.Request, family: str, progress) -> str:
    """Offer a rollout of the family's (new) current version to the groups still running a revoked image: a
    second four-eyes request with its plan (bot.services.rollout), narrowed to those groups. When none can be
    opened (nothing to roll, or an account the revocation did not authorize), the groups are named and the
    command to run is suggested instead."""
    images = request.details.get("images") or [] if isinstance(request.details, dict) else []
    usage = usage_of(ctx, images)
    groups = [(account, group, count) for account, entry in usage["accounts"].items()
              for group, count in sorted(entry["groups"].items())]
    if not groups:
        outcome = "no Auto Scaling group runs a revoked image"
        progress(f":white_check_mark: No Auto Scaling group runs a revoked image; nothing to roll out for "
                 f"{escape(family)}.")
        return outcome
    listed = ", ".join(f"{escape(group)}{f' in {escape(account)}' if account else ''}: {count} instance(s)"
                       for account, group, count in groups)
    try:
        offered = rollout.request_rollout(ctx, family, request.requester, request.channel,
                                          image_ids=[image["id"] for image in images])
    except AmibotError as error:  # nothing to roll now, or not ours to open: say what to run instead
        progress(f":arrows_counterclockwise: {len(groups)} group(s) still run a revoked image — {listed}. Roll the "
                 f"family's current version out to them: `/ami rollout {escape(family)}` "
                 f"({escape(error.message)})")
        return f"suggested `/ami rollout {family}` to {len(groups)} group(s)"
    progress(f":arrows_counterclockwise: {len(groups)} group(s) still run a revoked image — {listed}. Rollout "
             f"request `{escape(offered.id)}` asks for approval to replace their instances with {escape(family)}'s "
             "current version.")
    return f"opened rollout request {offered.id} for {len(groups)} group(s)"


# --- the revocations table (the Home tab reads it) ----------------------------------------------------------

def _remember(ctx, request: approvals.Request, image: Image, reason: str) -> None:
    ctx.store.db["revocations"].upsert({"image_id": image.id, "region": image.region, "account": image.account,
                                        "name": image.name, "family": image.family, "reason": reason,
                                        "request_id": request.id, "revoked_by": request.requester,
                                        "revoked_at": ctx.clock().isoformat()}, pk="image_id")


def recent(store, limit: int = 10) -> list[dict[str, Any]]:
    """The latest revocations, newest first (SQLite only: safe on the ack path)."""
    if not store.db["revocations"].exists():
        return []
    return list(store.db["revocations"].rows_where(order_by="revoked_at DESC", limit=limit))


def reason_of(image: Image) -> str | None:
    """Why the image was revoked (its tag), or None."""
    return image.tags.get(REVOKED_TAG)

