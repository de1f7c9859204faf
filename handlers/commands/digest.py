"""`/ami digest`: post the stale-image digest into this channel now (read-only; not the daily run)."""

from bot.services import digest
from bot.services.dashboard import record_posted_digest
from bot.slack import post_digest
from bot.slack.subcommands import Subcommand

SPEC = Subcommand(
    name="digest", stage="watch",
    summary="post the digest of stale images and orphaned snapshots, with their cost, here now",
    usage="/ami digest", example="/ami digest")


def run(call):
    ctx = call.ctx
    findings = digest.compute_for(ctx)
    day = digest.local_day(ctx, findings.generated_at)
    ts = post_digest.post(ctx.slack, call.channel, findings, day, send=call.reply.post)
    record_posted_digest(ctx, day, findings, call.channel, ts, post_digest.permalink(ctx.slack, call.channel, ts))
    call.audit_detail = {"stale_images": len(findings.stale), "orphaned_snapshots": len(findings.orphans),
                         "monthly_cost": round(findings.monthly_cost, 2)}
    return None
