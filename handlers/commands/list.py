"""`/ami list [text] [--region R] [--account A]`: the managed accounts' own AMIs, newest first."""

from bot.render.images import image_list
from bot.services.images import account_labels, accounts_named, list_images, owners_in, shares_of_many
from bot.slack.subcommands import Arg, Subcommand

SHOWN = 20

SPEC = Subcommand(
    name="list", stage="find", summary="your AMIs across the configured regions (and accounts), newest first",
    usage="/ami list [text] [--region R] [--account A]", example="/ami list web --region eu-west-1",
    args=(Arg("text", required=False, rest=True),), flags={"--region": "R", "--account": "A"}, aliases=("ls",))


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    accounts = accounts_named(ctx.aws, call.flags["account"])  # an unknown account: a message, before any AWS call
    regions = [region] if region else None
    images, failures = list_images(ctx.aws, ctx.policy.digest.family_tag, call.args["text"], regions, accounts)
    shares = shares_of_many(ctx.aws, images[:SHOWN])
    targets = ctx.aws.targets(accounts, regions)
    checked = [target for target in targets if target.label not in failures]  # the "No AMIs" line names these
    return image_list(images, SHOWN, call.args["text"], failures, shares, ctx.clock(), account_labels(ctx.aws),
                      owners_in(checked), searched=len(targets))
