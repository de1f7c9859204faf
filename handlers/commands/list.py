"""`/ami list [text] [--region R]`: the account's own AMIs, newest first."""

from bot.commands import Arg, Subcommand
from bot.render.images import image_list
from bot.services.images import list_images, shares_of_many

SHOWN = 20

SPEC = Subcommand(
    name="list", summary="your AMIs across the configured regions, newest first",
    usage="/ami list [text] [--region R]", example="/ami list web --region eu-west-1",
    args=(Arg("text", required=False, rest=True),), flags={"--region": "R"}, aliases=("ls",))


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    images, failures = list_images(ctx.aws, ctx.policy.digest.family_tag, call.args["text"],
                                   [region] if region else None)
    shares = shares_of_many(ctx.aws, images[:SHOWN])
    return image_list(images, SHOWN, call.args["text"], failures, shares, ctx.clock())
