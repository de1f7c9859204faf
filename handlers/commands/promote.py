"""`/ami promote <ami-id|name>` and `/ami rollback <family> [--region R] [--account A]`: set and undo a family's current
version, in the account that owns the image."""

from bot.core.errors import PolicyViolation
from bot.render import blocks
from bot.render.drift import drift_line
from bot.render.findings import promotion_refused_text
from bot.render.lifecycle import promoted, rolled_back
from bot.services import allowed as allowed_amis
from bot.services.drift import drift_after_change, retired_names
from bot.services.findings import promotion_check
from bot.services.images import account_named, find_image
from bot.services.versions import promote, rollback, rollback_place
from bot.slack.subcommands import Arg, Subcommand, image_arg

PROMOTE = Subcommand(
    name="promote", stage="use",
    summary="make an AMI its family's current version (tag + SSM parameter /amibot/<family>/current)",
    usage="/ami promote <ami-id|name> [--force]", example="/ami promote ami-0abc1234def567890",
    args=(image_arg(),), flags={"--force": None},
    changing=True)

ROLLBACK = Subcommand(
    name="rollback", stage="use", summary="point a family's current version back at the one promoted before",
    usage="/ami rollback <family> [--region R] [--account A]", example="/ami rollback web",
    args=(Arg("family", rest=True),), flags={"--region": "R", "--account": "A"}, changing=True)


def run_promote(call):
    ctx = call.ctx
    image = find_image(ctx.aws, call.args["image"], ctx.policy.digest.family_tag)  # in whichever account owns it
    owner = call.acting_in(image.account)  # the owning account's operators
    vulnerable = promotion_check(owner, image, bool(call.flags["force"]))
    if vulnerable.refuse:
        refused = PolicyViolation(promotion_refused_text(vulnerable.findings, image.id))
        refused.audit_outcome = f"refused: {vulnerable.findings.critical} critical finding(s)"
        raise refused
    result = promote(ctx, image, call.user)
    call.audit_detail = {"family": image.family, "region": image.region, "previous": result.previous_image_id,
                         "parameter": result.parameter, "account": image.account}
    message = promoted(result, call.user)
    call.audit_detail["critical_findings"] = vulnerable.findings.critical if vulnerable.findings.known else "unknown"
    message["blocks"] += [blocks.context(note) for note in vulnerable.notes]
    blocked = allowed_amis.warning_for(owner, image, ctx.clock())
    if blocked:  # promoted all the same: the criteria are the account's, but launches by family would fail
        call.audit_detail["allowed_amis"] = blocked
        message["blocks"].append(blocks.context(f"{blocked} Launches of the family's current version would be "
                                                "affected; `/ami allowed` shows the criteria."))
    message["blocks"].append(blocks.context(_drift_after(ctx, owner, image.family, image.region, "promotion")))
    call.reply.post(message)


def _drift_after(ctx, owner, family: str, region: str, change: str) -> str:
    """Drift of the family in the region the change was made in (bot.services.drift.drift_after_change)."""
    found = drift_after_change(ctx.aws, owner, region, ctx.policy.digest.family_tag, ctx.clock(), family,
                               retired_names(ctx.store))
    return drift_line(found, family, region, change)


def run_rollback(call):
    ctx, region = call.ctx, call.flags["region"]
    account = account_named(ctx.aws, call.flags["account"]).account.id if call.flags["account"] else None
    account, region = rollback_place(ctx, call.args["family"], region, account)  # where the channel moves
    owner = call.acting_in(account)  # that account's operators, with or without --account
    result = rollback(ctx, call.args["family"], region, call.user, account)
    call.audit_detail = {"family": result.family, "region": result.region, "from": result.newer_image_id,
                         "to": result.image.id, "instances_on_newer": [i.id for i in result.newer_usage.instances],
                         "account": result.image.account}
    message = rolled_back(result, call.user)
    message["blocks"].append(blocks.context(_drift_after(ctx, owner, result.family, result.region, "rollback")))
    call.reply.post(message)


RUNNERS = [(PROMOTE, run_promote), (ROLLBACK, run_rollback)]
