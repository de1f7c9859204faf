"""`/ami show <ami-id|name>`: one AMI in full, with what uses it and who may launch it."""

from bot.core.errors import NotFound
from bot.core.ids import AMI_ID
from bot.core.text import escape
from bot.render.findings import findings_blocks
from bot.render.images import CHOICES_SHOWN, image_choices, image_detail
from bot.render.lineage import origin_section
from bot.services.blast_radius import use_in_every_account
from bot.services.findings import findings_of
from bot.services.images import account_labels, accounts_named, find_images, shares_of, shares_of_many
from bot.services.lineage import origin_of
from bot.services.references import scan
from bot.services.versions import family_images
from bot.slack.subcommands import Subcommand, image_arg

SPEC = Subcommand(
    name="show", stage="find", summary="one AMI in full: devices, tags, shares, what uses it",
    usage="/ami show <ami-id|name> [--account A]", example="/ami show ami-0abc1234def567890",
    args=(image_arg(rest=True, pattern=None),), flags={"--account": "A"}, aliases=("describe", "info"))


def run(call):
    ctx = call.ctx
    accounts = accounts_named(ctx.aws, call.flags["account"])
    try:
        images = find_images(ctx.aws, call.args["image"], ctx.policy.digest.family_tag, accounts=accounts)
    except NotFound as missing:
        raise _pointed_at_family(ctx, call.args["image"], accounts, missing) from None
    if len(images) > 1:
        shown = images[:CHOICES_SHOWN]
        return image_choices(call.args["image"], images, ctx.clock(), account_labels(ctx.aws),
                             shares_of_many(ctx.aws, shown))
    image = images[0]
    owner = ctx.aws.of(image.account)  # an id is found in whichever account owns it; all else is looked up there
    call.audit_detail = {"image": image.id, "region": image.region, "account": image.account}
    shares = shares_of(owner, image)
    if ctx.aws.many:  # the managed accounts it is shared with run it too: scanned as the preflight does
        usage, elsewhere = use_in_every_account(ctx, image, shares)
    else:
        usage, elsewhere = scan(owner, image.region, [image.id]).of(image.id), []
    message = image_detail(image, shares, usage, ctx.clock(), owner.account.label if ctx.aws.many else "",
                           elsewhere)
    message["blocks"] += origin_section(image, origin_of(owner, image, ctx.policy.digest.family_tag))
    message["blocks"] += findings_blocks(findings_of(owner, image))
    return message


def _pointed_at_family(ctx, ref: str, accounts, missing: NotFound) -> NotFound:
    """No image has that name, but it may be a family's (`/ami show web`): say where its versions are."""
    if AMI_ID.match(ref):
        return missing
    found, _ = family_images(ctx.aws, ref, ctx.policy.digest.family_tag, accounts=accounts)
    if not found:
        return missing
    return NotFound(f"{missing.message}. `{escape(ref)}` is an image family: `/ami versions {escape(ref)}` lists its "
                    "versions.")
