"""The digest's buttons — "Request deregistration", "Snooze 30 days", "Request cleanup".

Each click is acked at once and handled as a durable job: it checks the clicker may make changes,
opens the approval request (or stores the snooze), answers the clicker ephemerally, and replaces the
clicked buttons in the digest with who did what, so the channel sees it was taken care of. In the
organisation's digest a button's value starts with the account id, and the click acts in that account.
"""

from __future__ import annotations

import logging
import uuid

from bot.core import authority, metrics
from bot.core.errors import AmibotError, UsageError
from bot.durable import audit
from bot.render import blocks
from bot.render.digest import CLEANUP, DEREGISTER, SNOOZE, cleanup_block_id
from bot.services import digest
from bot.services.images import find_image
from bot.slack import delivery_keys
from bot.slack.reply import Reply
from bot.slack.subcommands import ACCOUNT_ID, AMI_ID, REGION_NAME, SNAPSHOT_ID
from handlers.commands.deregister import open_request

log = logging.getLogger(__name__)

CLICK_JOB = "digest.click"
LABELS = {"deregister": "Request deregistration", "snooze": "Snooze 30 days", "cleanup": "Request cleanup"}


def parse_value(action: str, value: str) -> tuple[str, str, list[str]]:
    """'[<account id>:]<region>:<ami-id>' or '[<account id>:]<region>:<snap-id>,<snap-id>…' → (account, region,
    ids), the account "" when the value has none (single-account digests, and those posted before accounts);
    UsageError if malformed."""
    parts = (value or "").split(":")
    account = parts.pop(0) if len(parts) == 3 and ACCOUNT_ID.match(parts[0]) else ""
    region, rest = (parts + [""])[:2] if len(parts) <= 2 else ("", "")
    ids = [item for item in rest.split(",") if item]
    pattern = SNAPSHOT_ID if action == "cleanup" else AMI_ID
    if not REGION_NAME.match(region) or not ids or not all(pattern.match(item) for item in ids):
        raise UsageError("That button does not name what to act on; run `/ami digest` for a fresh one.")
    return account, region, ids


def act(ctx, payload: dict) -> str:
    """Do what the click asks, in the account the button names; return the answer for the clicker. Raises
    AmibotError when refused (an account amibot no longer manages is a NotFound naming it)."""
    action, user, channel = payload["action"], payload["user"], payload.get("channel")
    account, region, ids = parse_value(action, payload.get("value", ""))
    ctx.access.check_may_change_somewhere(user, channel, LABELS[action], account=account or None)
    owner = ctx.aws.of(account)  # refuses an account amibot does not manage before anything is done
    where = f" in {owner.account.label}" if account and ctx.aws.many else ""
    if action == "deregister":
        # the account that owns the image decides (found first when the button names none), before the preflight
        request = open_request(ctx, ids[0], region, user, channel, account=account or None,
                               authorize=lambda image: authority.authorize(ctx, image.account))
        mark(ctx, payload, f"digest:{ids[0]}", f":hourglass: <@{user}> asked to deregister this: `{request.id}`")
        return f"Asked for approval to deregister {ids[0]}{where}: `{request.id}` is in <#{request.channel}>."
    if action == "snooze":
        authority.authorize(ctx, account or _image_owner(ctx, ids[0], region))
        until = digest.snooze(ctx, ids[0], region, user, channel, account=account)
        mark(ctx, payload, f"digest:{ids[0]}", f":zzz: <@{user}> snoozed this until {until.date().isoformat()}")
        return f"Snoozed {ids[0]}{where}: it stays out of the digest until {until.date().isoformat()}."
    authority.authorize(ctx, account)  # none named: the bot's own account, the only one its preflight looks in
    request = digest.request_cleanup(ctx, region, ids, requester=user, channel=channel, account=account)
    mark(ctx, payload, cleanup_block_id(account, region),
         f":hourglass: <@{user}> asked to clean these up: `{request.id}`")
    return (f"Asked for approval to delete {len(request.params['snapshot_ids'])} snapshot(s){where}: "
            f"`{request.id}`.")


def _image_owner(ctx, image_id: str, region: str) -> str:
    """The account that owns an image a button names without an account (a digest from before accounts)."""
    if not ctx.aws.accounts:
        return ""
    return find_image(ctx.aws, image_id, ctx.policy.digest.family_tag, [region]).account


def mark(ctx, payload: dict, block_id: str, text: str) -> None:
    """Replace the clicked buttons in the digest message with a line saying who did what."""
    message = payload.get("message") or {}
    old = message.get("blocks") or []
    if not payload.get("message_ts") or not any(block.get("block_id") == block_id for block in old):
        return
    new = [blocks.context(text) if block.get("block_id") == block_id else block for block in old]
    try:
        ctx.slack.chat_update(channel=payload["channel"], ts=payload["message_ts"], text=message.get("text") or "",
                              blocks=new)
    except Exception:  # the action itself succeeded; a stale button is only cosmetic
        log.exception("could not update the digest message")


def handle_click(ctx, payload: dict) -> None:
    reply = Reply(ctx.slack, payload.get("channel"), payload["user"], payload.get("response_url"))
    try:
        with authority.acting(payload["user"], LABELS[payload["action"]]):  # act authorizes the account it changes
            done = act(ctx, payload)
        metrics.click_finished(ctx, payload["action"], "ok")
        reply.ephemeral(blocks.info(done))
        return
    except AmibotError as error:
        outcome, answer = f"refused: {error.message}", blocks.error(error.message)
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("digest button %s failed (ref %s)", payload["action"], reference)
        outcome = f"crashed: ref {reference}"
        answer = blocks.error(f"Something went wrong (ref `{reference}`); the bot's log has the details.")
    metrics.click_finished(ctx, payload["action"], outcome)
    audit.record(ctx.store, actor=payload["user"], action=f"digest.{payload['action']}",
                 channel=payload.get("channel"), target=payload.get("value", "")[:200], outcome=outcome)
    reply.ephemeral(answer)


def refused_early(ctx, payload: dict) -> bool:
    """The click's gate, on the jobs' quick lane: a malformed button or a clicker who may not make changes is
    answered (and audited) at once by handle_click, without waiting behind AWS work. True: go on to AWS."""
    try:
        account = parse_value(payload["action"], payload.get("value", ""))[0]
        ctx.access.check_may_change_somewhere(payload["user"], payload.get("channel"), LABELS[payload["action"]],
                                              account=account or None)
    except AmibotError:
        handle_click(ctx, payload)
        return False
    return True


def report_interrupted(ctx, payload: dict) -> None:
    """Not re-run (it might open a second request): tell the clicker to check and click again."""
    Reply(ctx.slack, payload.get("channel"), payload["user"], payload.get("response_url")).ephemeral(blocks.error(
        f"amibot restarted while handling “{LABELS[payload['action']]}”. Check `/ami requests`, then click again."))


def _click(body: dict, action: str) -> dict:
    container = body.get("container") or {}
    return {"action": action, "value": body["actions"][0].get("value", ""), "user": body["user"]["id"],
            "channel": delivery_keys.channel_of(body),
            "message_ts": container.get("message_ts"), "response_url": body.get("response_url"),
            "message": {key: (body.get("message") or {}).get(key) for key in ("text", "blocks")}}


def register(app, ctx) -> None:
    def listener(kind: str):
        def clicked(ack, body, context):  # Bolt passes arguments by name: only ask for what is used
            # Recorded before the ack with the click's delivery key: a replayed click opens no second request.
            ctx.jobs.submit(CLICK_JOB, _click(body, kind), dedupe_key=delivery_keys.key_of(context, body))
            ack()

        return clicked

    for action_id, kind in ((DEREGISTER, "deregister"), (SNOOZE, "snooze"), (CLEANUP, "cleanup")):
        app.action(action_id)(listener(kind))
