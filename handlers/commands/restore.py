"""`/ami restore <ami-id> [--region R]`: bring a deregistered image back from the Recycle Bin, with the
snapshots that were deleted with it. Operators only; no approval (it undoes). Safe to run again: every
piece is looked up first, so after a crash it finishes what is left."""

from __future__ import annotations

from bot.commands import AMI_ID, Arg, Subcommand
from bot.errors import AmibotError, NotFound
from bot.render.recycle_bin import restored
from bot.services import recycle_bin as service
from bot.services.images import find_image

SPEC = Subcommand(
    name="restore", summary="restore a deregistered AMI (and its snapshots) from the Recycle Bin",
    usage="/ami restore <ami-id> [--region R]", example="/ami restore ami-0abc1234def567890",
    args=(Arg("ami-id", pattern=AMI_ID, hint="e.g. ami-0abc1234def567890"),), flags={"--region": "R"},
    changing=True, resumable=True)


def run(call):
    ctx, image_id, region = call.ctx, call.args["ami-id"], call.flags["region"]
    regions = [region] if region else ctx.aws.regions
    try:
        region, _ = service.locate_in_bin(ctx.aws, image_id, regions)
    except NotFound:
        try:  # back already (restored before a restart, or by hand): finish its snapshots, if any are left
            region = find_image(ctx.aws, image_id, ctx.policy.digest.family_tag, regions).region
        except NotFound:
            raise NotFound(f"{image_id} is neither in the Recycle Bin nor registered in {', '.join(regions)}: it "
                           "may have left the bin, or no retention rule covered it (`/ami recycle-bin`).") from None
    snapshot_ids = service.snapshots_deleted_with(ctx, image_id, service.snapshots_in_bin(ctx.aws, region))
    result = service.restore(ctx, image_id, region, snapshot_ids)
    call.audit_detail = {"image": image_id, "region": region, "image_restore": result.image,
                         "snapshots": result.snapshots}
    message = restored(result, call.user)
    posted = call.reply.post(message)
    if not result.ok:
        error = AmibotError(f"{image_id} was only partly restored: image {result.image}; snapshots "
                            + (", ".join(f"{k} {v}" for k, v in result.snapshots.items()) or "none") + ".")
        error.audit_outcome = "failed: partly restored"
        raise error
    return None if posted else message
