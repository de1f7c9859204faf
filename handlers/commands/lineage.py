"""`/ami lineage <ami-id|name>`: what an image was made from, back to the AWS base image, and what was made
from it (issue 22 §6)."""

from bot.render.images import CHOICES_SHOWN, image_choices
from bot.render.lineage import lineage_message
from bot.services.images import account_labels, accounts_named, find_images, shares_of_many
from bot.services.lineage import lineage_of
from bot.slack.subcommands import Subcommand, image_arg

SPEC = Subcommand(
    name="lineage", stage="create & bake",
    summary="what an image was baked from, back to the AWS base image, and the images baked from it",
    usage="/ami lineage <ami-id|name> [--account A]", example="/ami lineage web-1.4.3",
    args=(image_arg(rest=True, pattern=None),), flags={"--account": "A"}, aliases=("ancestry",))


def run(call):
    ctx = call.ctx
    accounts = accounts_named(ctx.aws, call.flags["account"])
    images = find_images(ctx.aws, call.args["image"], ctx.policy.digest.family_tag, accounts=accounts)
    if len(images) > 1:
        shown = images[:CHOICES_SHOWN]
        return image_choices(call.args["image"], images, ctx.clock(), account_labels(ctx.aws),
                             shares_of_many(ctx.aws, shown))
    image = images[0]
    call.audit_detail = {"image": image.id, "region": image.region, "account": image.account}
    return lineage_message(lineage_of(ctx.aws, image, ctx.policy.digest.family_tag))
