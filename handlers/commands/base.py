"""`/ami base [alias] [--region R] [--copy <name> --family F [--version V]] [--account A]`: AWS's current base
images through SSM public parameters; --copy starts a family from one (a changing action: operators only), in the
bot's own account or the one `--account` names."""

from bot.core.errors import UsageError
from bot.render.lifecycle import NewImage, alias_table, base_image
from bot.services.base_images import alias_named, aliases, copy_into_account, resolve
from bot.services.create import check_name, labels_for
from bot.services.images import acting_account
from bot.slack.subcommands import Arg, Subcommand
from handlers.actions.image_buttons import announce

SPEC = Subcommand(
    name="base", stage="create & bake",
    summary="AWS's current base images (al2023, ubuntu-24.04, windows-2022…); --copy starts a family",
    usage="/ami base [alias] [--region R] [--copy <name> --family F [--version V]] [--account A]",
    example="/ami base al2023 --copy web-base-2025-06 --family web",
    args=(Arg("alias", required=False),),
    flags={"--region": "R", "--copy": "NAME", "--family": "F", "--version": "V", "--account": "A"},
    changing_form="base --copy", changing_when=lambda invocation: bool(invocation.flags.get("copy")))


def run(call):
    ctx, flags = call.ctx, call.flags
    if not call.args["alias"]:
        if flags["copy"]:
            raise UsageError("`--copy` needs an alias to copy, e.g. `/ami base al2023 --copy web-base`.")
        return alias_table(aliases())
    if (flags["family"] or flags["version"]) and not flags["copy"]:
        raise UsageError("`--family` and `--version` go with `--copy <name>`.")
    alias = alias_named(call.args["alias"])
    here = acting_account(ctx.aws, flags["account"])  # an unknown account: a message, before any AWS call
    if not flags["copy"]:
        return base_image(resolve(here, alias, flags["region"] or here.default_region), ctx.clock())
    here = call.acting_in(here.account)  # looking is for everyone; copying changes the account: its operators
    name = check_name(flags["copy"])
    family_tag = ctx.policy.digest.family_tag
    labels = labels_for(name, flags["family"], flags["version"], call.user, family_tag)
    base = resolve(here, alias, flags["region"] or here.default_region)
    image_id = copy_into_account(here, base, name, labels, family_tag)
    call.audit_detail = {"image_id": image_id, "source": base.image_id, "alias": alias.name, "region": base.region,
                         "family": labels.family, "account": here.account.id}
    announce(call, NewImage(image_id, name, base.region, f"{alias.name} {base.image_id}", call.user, labels.family,
                            labels.version, f"A copy of {alias.description} ({base.name or base.image_id}) owned "
                                            "by this account: it stays when AWS retires the public image.",
                            account=here.account.id, account_label=here.account.label if ctx.aws.many else ""))
