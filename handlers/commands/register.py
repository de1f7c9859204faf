"""`/ami register <snapshot-id> <name> [--arch x86_64|arm64] [--boot-mode uefi|legacy-bios] [--family F]
[--version V] [--account A]`: register an AMI whose root volume is an EBS snapshot, in the bot's own account or
the one `--account` names."""

from bot.core.errors import UsageError
from bot.render.lifecycle import NewImage
from bot.services.create import (
    ARCHITECTURES,
    BOOT_MODES,
    check_name,
    find_snapshot,
    labels_for,
    register_from_snapshot,
)
from bot.services.images import acting_account
from bot.slack.subcommands import SNAPSHOT_ID, Arg, Subcommand
from handlers.actions.image_buttons import announce

SPEC = Subcommand(
    name="register", stage="create & bake", summary="register an AMI from one of your EBS snapshots",
    usage="/ami register <snapshot-id> <name> [--arch x86_64|arm64] [--boot-mode uefi|legacy-bios] [--family F] "
          "[--version V] [--account A]",
    example="/ami register snap-0abc1234def567890 web-from-snap --arch arm64 --family web",
    args=(Arg("snapshot", pattern=SNAPSHOT_ID, hint="a snapshot id like snap-0abc1234def567890"),
          Arg("name", rest=True)),
    flags={"--arch": "x86_64|arm64", "--boot-mode": "uefi|legacy-bios", "--family": "F", "--version": "V",
           "--account": "A"},
    changing=True)


def _choice(value: str | None, choices: tuple[str, ...], flag: str) -> str | None:
    if value is not None and value not in choices:
        raise UsageError(f"`{flag}` is one of {', '.join(choices)}; got `{value[:30]}`.")
    return value


def run(call):
    ctx, flags = call.ctx, call.flags
    name = check_name(call.args["name"])
    architecture = _choice(flags["arch"], ARCHITECTURES, "--arch") or "x86_64"
    boot_mode = _choice(flags["boot_mode"], BOOT_MODES, "--boot-mode")
    family_tag = ctx.policy.digest.family_tag
    labels = labels_for(name, flags["family"], flags["version"], call.user, family_tag)
    # where it is made (an unknown account: a message, before any AWS call); its operators decide
    here = call.acting_in(acting_account(ctx.aws, flags["account"]).account)
    snapshot = find_snapshot(here, call.args["snapshot"])
    image_id = register_from_snapshot(here, snapshot, name, labels, family_tag, architecture, boot_mode)
    call.audit_detail = {"image_id": image_id, "region": snapshot.region, "architecture": architecture,
                         "boot_mode": boot_mode, "family": labels.family, "account": here.account.id}
    boot = f", {boot_mode}" if boot_mode else ""
    announce(call, NewImage(image_id, name, snapshot.region, f"snapshot {snapshot.id}", call.user, labels.family,
                            labels.version, f"{architecture}{boot}, root volume {snapshot.size_gb} GiB gp3 on "
                                            "/dev/xvda, ENA on.", account=here.account.id,
                            account_label=here.account.label if ctx.aws.many else ""))
