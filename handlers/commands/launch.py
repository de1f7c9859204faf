"""`/ami launch <ami-id|name|family> [instance-type] [count]`: instances from an image, within policy.

Without arguments it opens the launch form (handlers/views/launch.py), which ends in the same
``start_launch`` (handlers/launch_flow.py) as the command.
"""

from __future__ import annotations

import logging

from bot.core.errors import AmibotError
from bot.durable import audit, jobs
from bot.durable.steps import DONE, FAILED, SKIPPED, Steps, owners_with_open
from bot.render import blocks
from bot.render import launch as render
from bot.services import launch as service
from bot.services.images import account_named
from bot.services.launch import LaunchOrder
from bot.slack.reply import Reply
from bot.slack.subcommands import Arg, Subcommand, image_arg
from handlers.launch_flow import start_launch
from handlers.views.launch import open_launch_modal

log = logging.getLogger(__name__)

SPEC = Subcommand(
    name="launch", stage="use",
    summary="launch instances from an AMI, an image name or a family (no arguments: a form)",
    usage="/ami launch [<ami-id|name|family> [instance-type] [count]] [--name N] [--subnet S] [--region R] "
          "[--account A] [--force]",
    example="/ami launch web t3.small 2 --name web-canary",
    args=(image_arg(required=False, pattern=None,
                    hint="an AMI id, an image's unique name, or a family (its current version)"),
          Arg("instance-type", required=False), Arg("count", required=False)),
    flags={"--name": "N", "--subnet": "S", "--region": "R", "--account": "A", "--force": None}, changing=True)


def run(call):
    ctx = call.ctx
    if not call.args["image"]:
        open_launch_modal(ctx.slack, call.trigger_id, ctx, channel=call.channel)
        call.audit_detail = {"opened": "launch form"}
        return None
    call.audit_detail = {}
    # The same command delivered again (or its job run again) names the same launch: one set of instances.
    reference = service.launch_reference(f"command:{call.trigger_id}" if call.trigger_id else None)
    return start_launch(ctx, order_from(call), call.user, call.channel, call.reply, call.audit_detail, reference)


def order_from(call) -> LaunchOrder:
    ctx, args, flags = call.ctx, call.args, call.flags
    instance_type, count = args["instance-type"], args["count"]
    if instance_type and instance_type.isdigit() and count is None:  # `/ami launch web 3`
        instance_type, count = None, instance_type
    default_type = ctx.policy.launch.default_instance_type
    into = account_named(ctx.aws, flags["account"]).account.id if flags["account"] else None  # no AWS call
    return LaunchOrder(image_ref=args["image"], instance_type=service.parse_instance_type(instance_type, default_type),
                       count=service.parse_count(count), name=service.parse_name(flags["name"]),
                       subnet_id=service.parse_subnet(flags["subnet"]), region=flags["region"],
                       force=bool(flags["force"]), account=into)


# --- a wait a crash interrupted ---------------------------------------------------------------------------

WAIT_JOB = "launch.wait"


def resume_waits(ctx) -> None:
    """At start, every launch whose wait a crash interrupted is resumed as a WAIT_JOB (polling again is
    harmless) and its "Waiting…" message is finished; interrupted again, it is resumed again."""
    for owner in owners_with_open(ctx.store, "wait_running", "launch:"):
        payload = {"owner": owner}
        if not jobs.is_active(ctx.store, WAIT_JOB, payload):
            ctx.jobs.submit(WAIT_JOB, payload)


def resume_wait(ctx, owner: str) -> None:
    steps = Steps(ctx.store, owner)
    wait = next((step for step in steps.all() if step.action == "wait_running" and step.open), None)
    if wait is None:
        return
    data = wait.data
    region = data.get("region", "")
    reference = data.get("reference") or owner.split(":", 1)[1]
    into = ctx.aws.of(data.get("account") or "")  # waits recorded before accounts: the bot's own
    ids = data.get("ids") or service.tagged_instances(into, region, reference)
    if not ids:  # the crash came before RunInstances answered and nothing was launched: no message to finish
        steps.mark(wait, SKIPPED, "nothing was launched before the restart")
        return
    image = service.stand_in_image(wait.target, data.get("image_name") or "", region)
    order = LaunchOrder(**data["order"]) if data.get("order") else LaunchOrder(wait.target, "?", len(ids))
    try:
        statuses = service.wait_for_instances(into, region, ids)
    except AmibotError as error:
        statuses = [service.InstanceStatus(instance_id, "unknown", error.message) for instance_id in ids]
    result = service.LaunchResult(image, ids, statuses)
    final = render.launch_finished(result, order, data.get("user") or "", reference,
                                   into.account.label if ctx.aws.many else "")
    final["blocks"].append(blocks.context(":arrows_counterclockwise: amibot restarted while waiting for these "
                                          "instances; this is what AWS said after a restart."))
    reply = Reply(ctx.slack, data.get("channel"), data.get("user"))
    try:
        if data.get("ts"):
            reply.update(data["ts"], final, channel=data.get("channel"))
        else:  # the started message went out through the response_url (gone by now) or not at all: tell the user
            reply.post(final, channel=data.get("user") or data.get("channel"))
    except Exception as error:  # close the step anyway: a message Slack refuses must not be retried every start
        log.warning("could not finish the launch message of %s: %s", reference, error)
        steps.mark(wait, FAILED, f"{service.summary(result)}; the message could not be updated ({error})"[:500])
        return
    steps.mark(wait, DONE, service.summary(result) + " (after a restart)")
    audit.record(ctx.store, actor="amibot", action="launch.resumed", channel=data.get("channel"), target=wait.target,
                 outcome=service.summary(result), detail={"request": reference, "instances": ids})
