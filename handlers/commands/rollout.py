"""`/ami rollout <family> [--account A] [--region R] [--groups G1,G2] [--min-healthy P] [--warmup SECONDS]
[--checkpoints 20,50]`: plan the rollout of a family's current version to the Auto Scaling groups that run it, and
ask for a second person's approval; the operators of every account whose groups it changes may ask.
`/ami rollout status [family|rollout-id]`, `/ami rollout cancel|rollback <rollout-id|family>`: read, stop or undo one
(operators of the groups' accounts, no approval: they stop or undo a change; audited, said in its thread)."""

from bot.core.errors import UsageError
from bot.render import blocks
from bot.render.rollout import status_message
from bot.services.images import account_named
from bot.services.rollout import options_of, request_rollout
from bot.services.rollout_watch import status, stop
from bot.slack.subcommands import Arg, Subcommand

SPEC = Subcommand(
    name="rollout", stage="use",
    summary="replace the instances of the Auto Scaling groups that run a family with its current version "
            "(instance refresh), after a second person approves the plan",
    usage="/ami rollout <family> [--account A] [--region R] [--groups G1,G2] [--min-healthy P] [--warmup SECONDS] "
          "[--checkpoints 20,50] | /ami rollout status [family] | /ami rollout cancel|rollback <rollout-id|family>",
    example="/ami rollout web",
    args=(Arg("family", hint="a family, or `status`, `cancel`, `rollback`"),
          Arg("which", required=False, hint="a rollout id like req-0a1b2c3d, or a family")),
    flags={"--account": "A", "--region": "R", "--groups": "G1,G2", "--min-healthy": "P", "--warmup": "SECONDS",
           "--checkpoints": "20,50"},
    changing_when=lambda invocation: invocation.args.get("family") != "status")

ACTIONS = ("status", "cancel", "rollback")


def _number(flag: str, text: str | None, low: int, high: int | None = None) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"`{flag}` takes a whole number, not `{blocks.defuse(text)}`.", usage=SPEC.usage) from None
    if value < low or (high is not None and value > high):
        raise UsageError(f"`{flag}` must be between {low} and {high if high is not None else 'more'}.",
                         usage=SPEC.usage)
    return value


def _checkpoints(text: str | None) -> list[int] | None:
    if not text:
        return None
    points = [_number("--checkpoints", item.strip(), 1, 100) for item in text.split(",") if item.strip()]
    if points != sorted(set(points)):
        raise UsageError("`--checkpoints` are percentages in ascending order, e.g. `20,50`.", usage=SPEC.usage)
    return points


def run(call):
    if call.args["family"] in ACTIONS:
        return _act(call, call.args["family"], call.args.get("which"))
    if call.args.get("which"):
        raise UsageError(f"`/ami rollout` takes one family, not `{blocks.defuse(call.args['which'])}` too.",
                         usage=SPEC.usage)
    ctx, flags = call.ctx, call.flags
    options = options_of(_number("--min-healthy", flags["min_healthy"], 0, 100),
                         _number("--warmup", flags["warmup"], 0), _checkpoints(flags["checkpoints"]))
    accounts = [account_named(ctx.aws, flags["account"]).account] if flags["account"] else None
    groups = [name.strip() for name in (flags["groups"] or "").split(",") if name.strip()] or None
    request = request_rollout(ctx, call.args["family"], call.user, call.channel, accounts=accounts,
                              regions=[flags["region"]] if flags["region"] else None, groups=groups, options=options)
    call.audit_detail = {"request": request.id, "family": request.params["family"], "groups": request.params["groups"],
                         "accounts": request.params["accounts"], "totals": request.reason}
    return blocks.info(f"Asked for approval: `{request.id}` — {request.reason}; the plan is in "
                       f"<#{request.channel}>.")


def _act(call, action: str, which: str | None):
    if action == "status":
        found = status(call.ctx, which)
        call.audit_detail = {"rollouts": [item.request_id for item in found]}
        return status_message(found)
    if not which:
        raise UsageError(f"`/ami rollout {action}` needs a rollout id or a family.", usage=SPEC.usage)
    request, said = stop(call.ctx, which, call.user, undo=action == "rollback")
    call.audit_detail = {"request": request.id, "family": request.params.get("family"), "groups": said}
    return blocks.info(f"{action.capitalize()} of `{request.id}`: " + "; ".join(blocks.defuse(item) for item in said)
                       + f". The thread in <#{request.channel}> follows it.")
