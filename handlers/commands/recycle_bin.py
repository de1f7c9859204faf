"""`/ami recycle-bin [--region R]` and `/ami recycle-bin enable [--days N] [--tag K=V] [--region R]`: the undo
for deregistration — the retention rules, what is in the bin and when it leaves, and (with approval) a
pair of rules so deregistered images and their snapshots can be restored."""

from __future__ import annotations

from bot.core.errors import UsageError
from bot.render import recycle_bin as render
from bot.render.blocks import per_account
from bot.services import approvals
from bot.services import recycle_bin as service
from bot.slack.subcommands import Arg, Subcommand

SPEC = Subcommand(
    name="recycle-bin", stage="retire",
    summary="the Recycle Bin: retention rules, images in the bin and when they leave; `enable`",
    usage="/ami recycle-bin [enable [--days N] [--tag K=V]] [--region R] [--account NAME]",
    example="/ami recycle-bin enable --days 14",
    args=(Arg("action", required=False, hint="nothing, or enable"),),
    flags={"--region": "R", "--days": "N", "--tag": "K=V", "--account": "NAME"}, aliases=("rbin", "bin"),
    changing_form="recycle-bin enable",
    changing_when=lambda invocation: (invocation.args.get("action") or "").lower() == "enable")


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    handles = ctx.aws.select(call.flags["account"])
    action = (call.args["action"] or "").lower()
    if action == "enable":
        if len(handles) > 1:
            raise UsageError("Retention rules are set per account: say which with `--account NAME` ("
                             + ", ".join(handle.account.short for handle in handles) + ").")
        return _enable(call, handles[0], [region] if region else handles[0].regions)
    if action:
        raise UsageError(f"`/ami recycle-bin` takes nothing or `enable`, not `{action[:20]}`.",
                         usage="Usage: `/ami recycle-bin [enable [--days N] [--tag K=V]] [--region R]`")
    if call.flags["days"] or call.flags["tag"]:
        raise UsageError("`--days` and `--tag` go with `enable`: `/ami recycle-bin enable --days 14`.")
    call.audit_detail = {"regions": [region] if region else ctx.aws.regions}
    now = ctx.clock()
    return per_account([(handle.account.label,
                         render.recycle_bin(service.read_bins(handle, [region] if region else handle.regions), now))
                        for handle in handles])


def _enable(call, handle, regions: list[str]):
    ctx = call.ctx
    order = service.EnableOrder(regions, service.parse_days(call.flags["days"]), service.parse_tag(call.flags["tag"]))
    handle = call.acting_in(handle.account)  # the account whose rules change: its operators
    params = service.enable_params(order, handle.account.id)
    where = f"{handle.account.label}: {', '.join(regions)}" if handle.account.id else ", ".join(regions)
    request = approvals.create_request(
        ctx, kind=service.ENABLE_KIND, params=params, requester=call.user, channel=call.channel,
        title=f"Keep deregistered images {order.days} days in the Recycle Bin ({where})",
        details=service.enable_details(params),
        reason="retention rules change what every deregistration in these regions keeps (and costs)")
    call.audit_detail = {"approval_request": request.id, **params}
    return render.enable_requested(request.id, request.channel, order.days, regions)
