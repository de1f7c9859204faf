"""`/ami create <instance-id|Name tag> <name> [--family F] [--version V] [--reboot] [--account A]`: bake an AMI
from an instance (by id, or by its Name tag), in the bot's own account or the one `--account` names."""

from bot.render.lifecycle import NO_REBOOT_NOTE, REBOOT_NOTE, NewImage
from bot.services.create import check_name, create_from_instance, find_instance, labels_for
from bot.services.images import acting_account
from bot.slack.subcommands import Arg, Subcommand, instance_arg
from handlers.actions.image_buttons import announce

SPEC = Subcommand(
    name="create", stage="create & bake", summary="bake an AMI from an instance (no reboot unless --reboot)",
    usage="/ami create <instance-id|Name tag> <name> [--family F] [--version V] [--reboot] [--account A]",
    example="/ami create i-0abc1234def567890 web-2025-06-01 --family web --version 42",
    args=(instance_arg(), Arg("name", rest=True)),
    flags={"--family": "F", "--version": "V", "--reboot": None, "--account": "A"}, changing=True)


def run(call):
    ctx, flags = call.ctx, call.flags
    name = check_name(call.args["name"])
    family_tag = ctx.policy.digest.family_tag
    labels = labels_for(name, flags["family"], flags["version"], call.user, family_tag)
    # where it is made (an unknown account: a message, before any AWS call); its operators decide
    here = call.acting_in(acting_account(ctx.aws, flags["account"]).account)
    instance = find_instance(here, call.args["instance"])
    image_id = create_from_instance(here, instance, name, labels, family_tag, reboot=flags["reboot"])
    call.audit_detail = {"image_id": image_id, "region": instance.region, "reboot": flags["reboot"],
                         "family": labels.family, "version": labels.version, "account": here.account.id}
    source = f"instance {instance.id}" + (f" ({instance.name})" if instance.name else "")
    announce(call, NewImage(image_id, name, instance.region, source, call.user, labels.family, labels.version,
                            REBOOT_NOTE if flags["reboot"] else NO_REBOOT_NOTE, account=here.account.id,
                            account_label=here.account.label if ctx.aws.many else ""))
