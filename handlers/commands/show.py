"""`/ami show <ami-id|name>`: one AMI in full, with what uses it and who may launch it."""

from bot.commands import Arg, Subcommand
from bot.render.findings import findings_blocks
from bot.render.images import image_choices, image_detail
from bot.services.findings import findings_of
from bot.services.images import find_images, shares_of
from bot.services.references import scan

SPEC = Subcommand(
    name="show", summary="one AMI in full: devices, tags, shares, what uses it",
    usage="/ami show <ami-id|name>", example="/ami show ami-0abc1234def567890",
    args=(Arg("image", rest=True),), aliases=("describe", "info"))


def run(call):
    ctx = call.ctx
    images = find_images(ctx.aws, call.args["image"], ctx.policy.digest.family_tag)
    if len(images) > 1:
        return image_choices(call.args["image"], images, ctx.clock())
    image = images[0]
    call.audit_detail = {"image": image.id, "region": image.region}
    usage = scan(ctx.aws, image.region, [image.id]).of(image.id)
    message = image_detail(image, shares_of(ctx.aws, image), usage, ctx.clock())
    message["blocks"] += findings_blocks(findings_of(ctx.aws, image))
    return message
