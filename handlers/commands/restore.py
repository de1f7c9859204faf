"""`/ami restore <ami-id|name> [--region R] [--account NAME]`: bring a deregistered image back from the Recycle
Bin, with the snapshots that were deleted with it. Operators only; no approval (it undoes). Safe to run again: every
piece is looked up first, so after a crash it finishes what is left."""

from __future__ import annotations

from bot.core.errors import AmibotError, AwsError, NotFound
from bot.core.ids import AMI_ID
from bot.core.text import escape
from bot.render.recycle_bin import restored
from bot.services import recycle_bin as service
from bot.services.images import find_image, only_one
from bot.slack.subcommands import Subcommand, image_arg

SPEC = Subcommand(
    name="restore", stage="retire", summary="restore a deregistered AMI (and its snapshots) from the Recycle Bin",
    usage="/ami restore <ami-id|name> [--region R] [--account NAME]", example="/ami restore ami-0abc1234def567890",
    args=(image_arg("ami-id"),),
    flags={"--region": "R", "--account": "NAME"}, changing=True, resumable=True)


def run(call):
    ctx = call.ctx
    handle, region, image_id = _locate(call, call.args["ami-id"], call.flags["region"])
    handle = call.acting_in(handle.account)  # the account whose bin holds it: its operators, with or without --account
    snapshot_ids = service.snapshots_deleted_with(ctx, image_id, service.snapshots_in_bin(handle, region))
    result = service.restore(ctx, image_id, region, snapshot_ids, aws=handle)
    call.audit_detail = {"image": image_id, "region": region, "image_restore": result.image,
                         "snapshots": result.snapshots, **({"account": handle.account.id} if handle.account.id else {})}
    message = restored(result, call.user)
    posted = call.reply.post(message)
    if not result.ok:
        error = AmibotError(f"{image_id} was only partly restored: image {result.image}; snapshots "
                            + (", ".join(f"{k} {v}" for k, v in result.snapshots.items()) or "none") + ".")
        error.audit_outcome = "failed: partly restored"
        raise error
    return None if posted else message


def _locate(call, ref: str, region: str | None):
    """The account and region whose bin holds the image, and its id (or where it is back already, to finish its
    snapshots after a restart): every managed account is searched unless `--account` names one. `ref` is an id or
    a name: a name is looked for in the bins (they hold the deregistered images' names), and several images of
    that name there are listed, nothing restored (bot.services.images.only_one)."""
    ctx = call.ctx
    handles = ctx.aws.select(call.flags["account"])
    failures, named = [], []
    for handle in handles:
        regions = [region] if region else handle.regions
        try:
            if AMI_ID.match(ref):
                return handle, service.locate_in_bin(handle, ref, regions)[0], ref
            named += [(handle, image) for image in service.named_in_bin(handle, ref, regions)]
        except NotFound:
            continue
        except AwsError as error:
            failures.append(error)
    if named:
        image = only_one(ref, [image for _, image in named], ctx.aws.accounts, dated="in the Recycle Bin since")
        return next(handle for handle, found in named if found is image), image.region, image.id
    try:  # back already (restored before a restart, or by hand)
        accounts = [handle.account for handle in handles] if ctx.aws.accounts else None
        image = find_image(ctx.aws, ref, ctx.policy.digest.family_tag, [region] if region else None, accounts)
        return ctx.aws.of(image.account), image.region, image.id
    except NotFound:
        if failures:
            raise failures[0] from None
        where = ", ".join(dict.fromkeys(target.region for target in ctx.aws.targets(
            [handle.account for handle in handles] if ctx.aws.accounts else None, [region] if region else None)))
        if ctx.aws.many:
            where += f" of {len(handles)} account(s)"
        raise NotFound(f"{escape(ref)} is neither in the Recycle Bin nor registered in {where}: it may have left the "
                       "bin, or no retention rule covered it (`/ami recycle-bin`).") from None
