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

from bot.core import authority, metrics
from bot.core.errors import AccessDenied, AmibotError, UsageError
from bot.durable import audit
from bot.render import blocks
from bot.slack.context import Context
from bot.slack.reply import Reply
from bot.slack.subcommands import MAX_TEXT, Invocation, flag_doc, help_topic, parse

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

    def acting_in(self, account: Any):
        """The AWS handle of the account this command changes (an Account, id or name; "" or None: the bot's
        own), once its operators have allowed this user (bot/core/authority.py: the one rule, the one check). Every
        changing command resolves that account from what it acts on and calls this before changing anything;
        AWS calls that change an account not authorized here are refused. Raises AccessDenied or NotFound."""
        return authority.authorize(self.ctx, account, self.invocation.subcommand.changing_label)


def payload_of(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a slash command's body a job needs (no tokens). The text is stored cut at MAX_TEXT
    characters (no real command is longer; Slack sends at most about 4,000): ``text_chars`` keeps its real
    length, and run_command refuses such a command saying it was cut."""
    payload = {key: body.get(key) for key in ("text", "user_id", "user_name", "channel_id", "channel_name",
                                              "response_url", "trigger_id", "team_id")}
    text = payload.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT:
        payload["text"], payload["text_chars"] = text[:MAX_TEXT], len(text)
    return payload


def _refuse_cut_text(payload: dict[str, Any]) -> None:
    length = payload.get("text_chars") or 0
    if length > MAX_TEXT:
        raise UsageError(f"That command is {length:,} characters long; amibot commands are short "
                         f"(only its first {MAX_TEXT:,} characters were kept, and it was not run).")


def help_message(registry, text: str) -> dict[str, Any]:
    """`/ami help` lists every subcommand; `/ami help <subcommand>` explains that one. UsageError for help
    about a subcommand that does not exist (with the closest one's usage)."""
    spec = help_topic(registry, text)
    if spec is None:
        return blocks.usage_message(registry.specs)
    return subcommand_help_message(spec)


def subcommand_help_message(spec, problem: str | None = None) -> dict[str, Any]:
    flags = [(flag, metavar, flag_doc(spec, flag)) for flag, metavar in spec.flags.items()]
    return blocks.subcommand_help(spec, flags, problem)


def answer_failure(reply: Reply, error: Exception, what: str, log_context: str) -> str:
    """Tell the user what went wrong in one sentence; return the audit outcome. Known errors show their
    message; anything else "something went wrong" with a reference to grep the log for."""
    if isinstance(error, UsageError) and getattr(error, "help_for", None) is not None:
        _safe(reply.ephemeral, subcommand_help_message(error.help_for))
        return "help"
    if isinstance(error, UsageError) and error.show_help:
        _safe(reply.ephemeral, blocks.usage_message(error.specs or [], problem=error.message))
        return f"usage: {error.message}"
    if isinstance(error, UsageError):
        _safe(reply.ephemeral, blocks.error(error.message, error.usage or "Type `/ami help` for every subcommand."))
        return f"usage: {error.message}"
    if isinstance(error, AmibotError):
        _safe(reply.ephemeral, blocks.error(error.message))
        if error.audit_outcome:
            return error.audit_outcome
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
    if payload.get("text_chars"):
        detail["text_cut_from"] = payload["text_chars"]
    target, call = None, None
    try:
        _refuse_cut_text(payload)
        invocation = parse(ctx.registry, text)
        if invocation is None:
            if not payload.get("acked_help"):  # the listener already put help into the ack
                reply.ephemeral(help_message(ctx.registry, text))
            return
        name = invocation.subcommand.name
        target = _target_of(invocation)
        if invocation.subcommand.changes(invocation):
            _check_changing(ctx, invocation, user, channel)
        call = CommandCall(ctx, invocation, user, channel, reply, payload.get("trigger_id"))
        # changes only in the accounts the runner has authorized (call.acting_in)
        with authority.acting(user, invocation.subcommand.changing_label):
            result = ctx.registry.runner(name)(call)
        if call.audit_detail:
            detail.update(call.audit_detail)
            _name_account(ctx, detail)
            resolved = call.audit_detail.get("image")
            if isinstance(resolved, str) and resolved.startswith("ami-"):
                target = resolved  # a name or family resolved to one image: the row names the image
        if result is not None:
            reply.ephemeral(result)
    except Exception as error:
        if isinstance(error, UsageError) and error.show_help:
            error.specs = ctx.registry.specs
        outcome = answer_failure(reply, error, f"`/ami {name}`", f"command {text!r} by {user}")
        if call is not None and (call.audit_detail or {}).get("account"):  # a refusal in an account names it
            detail["account"] = call.audit_detail["account"]
            _name_account(ctx, detail)
    finally:
        audit.record(ctx.store, actor=user, action=f"command.{name}", channel=channel, target=target,
                     detail=detail, outcome=outcome)
        metrics.command_finished(ctx, text, outcome)


def report_interrupted(ctx: Context, payload: dict[str, Any]) -> None:
    """A command was running when the bot stopped. Read-only commands simply run again; for a
    changing one, say so rather than guess or silently repeat it."""
    text = payload.get("text") or ""
    try:
        invocation = parse(ctx.registry, text)
    except UsageError:
        invocation = None
    if invocation is None or not invocation.subcommand.changes(invocation) or invocation.subcommand.resumable:
        ctx.jobs.submit(JOB_KIND, payload)
        return
    audit.record(ctx.store, actor=payload["user_id"], action="command.interrupted",
                 channel=payload.get("channel_id"), detail={"text": text},
                 outcome="interrupted: the bot restarted while this ran")
    reply = Reply(ctx.slack, payload.get("channel_id"), payload["user_id"], payload.get("response_url"))
    _safe(reply.ephemeral, blocks.error(
        f"amibot restarted while running `/ami {blocks.escape(text)[:200]}`. It was not re-run; check the "
        "result with `/ami show` or `/ami audit` before trying again."))


def gate_command(ctx: Context, payload: dict[str, Any]) -> bool:
    """Runs on the jobs' quick lane before a command waits for AWS (bot/durable/jobs.py). A command that needs no
    AWS after all, or a changing one its user may not run, is answered right here by run_command itself
    (so it is refused and audited exactly as it would be later); True: let it go on to the AWS lane."""
    try:
        invocation = parse(ctx.registry, payload.get("text") or "")
    except UsageError:
        invocation = None
    if invocation is not None and invocation.subcommand.aws:
        if not invocation.subcommand.changes(invocation):
            return True
        try:  # operators may be user groups: resolved through Slack (cached), never through AWS
            _check_changing(ctx, invocation, payload["user_id"], payload.get("channel_id"))
            return True
        except AccessDenied:
            pass
    run_command(ctx, payload)
    return False


def report_overdue(ctx: Context, payload: dict[str, Any], seconds: float) -> None:
    """Said once, when a command passes its deadline; its answer is still posted when AWS gets back."""
    try:
        invocation = parse(ctx.registry, payload.get("text") or "")
        name = f"/ami {invocation.subcommand.name}" if invocation else "/ami help"
    except UsageError:
        name = "/ami"
    reply = Reply(ctx.slack, payload.get("channel_id"), payload["user_id"], payload.get("response_url"))
    _safe(reply.ephemeral, blocks.info(
        f":hourglass: `{name}` is taking longer than {_duration(seconds)}; AWS is slow. The answer will "
        "follow here when it arrives — no need to run it again."))


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds" if seconds != 1 else "1 second"


def _check_changing(ctx: Context, invocation: Invocation, user: str, channel: str | None) -> None:
    """The early refusal, before any AWS: the channel, and the user must be an operator of the account
    `--account` names or, without it, of some account. Not the authority itself: the runner resolves the account
    the command changes from what it acts on and authorizes that (CommandCall.acting_in)."""
    named = invocation.flags.get("account")
    ctx.access.check_may_change_somewhere(user, channel, invocation.subcommand.changing_label,
                                          named if isinstance(named, str) and named else None)


def _name_account(ctx: Context, detail: dict[str, Any]) -> None:
    """An audit row that records an account id also names it: "prod (111111111111)"."""
    account_id = detail.get("account")
    if not isinstance(account_id, str) or not account_id or "account_label" in detail:
        return
    known = next((account for account in ctx.aws.accounts if account.id == account_id), None)
    detail["account_label"] = known.label if known else account_id


def _target_of(invocation: Invocation) -> str | None:
    """What the command is about, for the audit row: an AWS or request id if one was given, else the first
    argument (an image name, a family, a filter), cut short."""
    values = [value for value in invocation.args.values() if isinstance(value, str) and value.strip()]
    for value in values:
        if value.startswith(("ami-", "i-", "snap-", "req-")):
            return value[:200]
    return values[0][:200] if values else None


def _safe(function, *args) -> None:
    try:
        function(*args)
    except Exception:
        log.exception("could not answer in Slack")
