"""Running one `/ami` command after Slack has its ack: authorize, run, answer, audit.

The listener in handlers/commands only parses and enqueues; this is the job it enqueues. Every
command ends in exactly one audit row with its outcome, and in an answer the user sees — a known
error becomes its one sentence, anything else "something went wrong" with a reference to the log.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from bot import audit, blocks
from bot.commands import Invocation, parse
from bot.context import Context
from bot.errors import AccessDenied, AmibotError, UsageError
from bot.slack import Reply

log = logging.getLogger(__name__)

JOB_KIND = "command"


@dataclass
class CommandCall:
    """One invocation of a subcommand, as its runner sees it."""

    ctx: Context
    invocation: Invocation
    user: str
    channel: str | None
    reply: Reply
    trigger_id: str | None = None
    audit_detail: dict[str, Any] | None = None  # runners add to what the audit row records

    @property
    def args(self) -> dict[str, Any]:
        return self.invocation.args

    @property
    def flags(self) -> dict[str, Any]:
        return self.invocation.flags


def payload_of(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a slash command's body a job needs (no tokens)."""
    return {key: body.get(key) for key in ("text", "user_id", "user_name", "channel_id", "channel_name",
                                           "response_url", "trigger_id", "team_id")}


def answer_failure(reply: Reply, error: Exception, what: str, log_context: str) -> str:
    """Tell the user what went wrong in one sentence; return the audit outcome. Known errors show their
    message; anything else "something went wrong" with a reference to grep the log for."""
    if isinstance(error, UsageError) and error.show_help:
        _safe(reply.ephemeral, blocks.usage_message(error.specs or [], problem=error.message))
        return f"usage: {error.message}"
    if isinstance(error, UsageError):
        _safe(reply.ephemeral, blocks.error(error.message, error.usage or "Type `/ami help` for every subcommand."))
        return f"usage: {error.message}"
    if isinstance(error, AmibotError):
        _safe(reply.ephemeral, blocks.error(error.message))
        return f"{'refused' if isinstance(error, AccessDenied) else 'error'}: {error.message}"
    reference = uuid.uuid4().hex[:8]
    log.error("%s failed (ref %s)", log_context, reference, exc_info=error)
    _safe(reply.ephemeral, blocks.error(
        f"Something went wrong running {what} (ref `{reference}`); the bot's log has the details."))
    return f"crashed: ref {reference}"


def run_command(ctx: Context, payload: dict[str, Any]) -> None:
    user, channel, text = payload["user_id"], payload.get("channel_id"), payload.get("text") or ""
    reply = Reply(ctx.slack, channel, user, payload.get("response_url"))
    name, outcome, detail = "help", "ok", {"text": text}
    target = None
    try:
        invocation = parse(ctx.registry, text)
        if invocation is None:
            if not payload.get("acked_help"):  # the listener already put help into the ack
                reply.ephemeral(blocks.usage_message(ctx.registry.specs))
            return
        name = invocation.subcommand.name
        target = _target_of(invocation)
        if invocation.subcommand.changing:
            ctx.access.check_changing(user, channel, f"/ami {name}")
        call = CommandCall(ctx, invocation, user, channel, reply, payload.get("trigger_id"))
        result = ctx.registry.runner(name)(call)
        if call.audit_detail:
            detail.update(call.audit_detail)
        if result is not None:
            reply.ephemeral(result)
    except Exception as error:
        if isinstance(error, UsageError) and error.show_help:
            error.specs = ctx.registry.specs
        outcome = answer_failure(reply, error, f"`/ami {name}`", f"command {text!r} by {user}")
    finally:
        audit.record(ctx.store, actor=user, action=f"command.{name}", channel=channel, target=target,
                     detail=detail, outcome=outcome)


def report_interrupted(ctx: Context, payload: dict[str, Any]) -> None:
    """A command was running when the bot stopped. Read-only commands simply run again; for a
    changing one, say so rather than guess or silently repeat it."""
    text = payload.get("text") or ""
    try:
        invocation = parse(ctx.registry, text)
    except UsageError:
        invocation = None
    if invocation is None or not invocation.subcommand.changing:
        ctx.jobs.submit(JOB_KIND, payload)
        return
    audit.record(ctx.store, actor=payload["user_id"], action="command.interrupted",
                 channel=payload.get("channel_id"), detail={"text": text},
                 outcome="interrupted: the bot restarted while this ran")
    reply = Reply(ctx.slack, payload.get("channel_id"), payload["user_id"], payload.get("response_url"))
    _safe(reply.ephemeral, blocks.error(
        f"amibot restarted while running `/ami {blocks.escape(text)[:200]}`. It was not re-run; check the "
        "result with `/ami show` or `/ami audit` before trying again."))


def _target_of(invocation: Invocation) -> str | None:
    for value in invocation.args.values():
        if isinstance(value, str) and value.startswith(("ami-", "i-", "snap-", "req-")):
            return value
    return None


def _safe(function, *args) -> None:
    try:
        function(*args)
    except Exception:
        log.exception("could not answer in Slack")
