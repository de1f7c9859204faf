"""`/ami promote <ami-id>` and `/ami rollback <family> [--region R]`: set and undo a family's current version."""

from bot.commands import AMI_ID, Arg, Subcommand
from bot.render.lifecycle import promoted, rolled_back
from bot.services.images import find_images
from bot.services.versions import promote, rollback

PROMOTE = Subcommand(
    name="promote", summary="make an AMI its family's current version (tag + SSM parameter /amibot/<family>/current)",
    usage="/ami promote <ami-id>", example="/ami promote ami-0abc1234def567890",
    args=(Arg("image", pattern=AMI_ID, hint="an AMI id like ami-0abc1234def567890"),), changing=True)

ROLLBACK = Subcommand(
    name="rollback", summary="point a family's current version back at the one promoted before",
    usage="/ami rollback <family> [--region R]", example="/ami rollback web",
    args=(Arg("family", rest=True),), flags={"--region": "R"}, changing=True)


def run_promote(call):
    ctx = call.ctx
    image = find_images(ctx.aws, call.args["image"], ctx.policy.digest.family_tag)[0]
    result = promote(ctx, image, call.user)
    call.audit_detail = {"family": image.family, "region": image.region, "previous": result.previous_image_id,
                         "parameter": result.parameter}
    call.reply.post(promoted(result, call.user))


def run_rollback(call):
    ctx, region = call.ctx, call.flags["region"]
    result = rollback(ctx, call.args["family"], region, call.user)
    call.audit_detail = {"family": result.family, "region": result.region, "from": result.newer_image_id,
                         "to": result.image.id, "instances_on_newer": [i.id for i in result.newer_usage.instances]}
    call.reply.post(rolled_back(result, call.user))


RUNNERS = [(PROMOTE, run_promote), (ROLLBACK, run_rollback)]
