"""Retiring in stages that can be undone: `/ami deprecate` / `undeprecate`, `/ami disable` / `enable`,
`/ami protect` / `unprotect`. Disabling or unprotecting a family's current version needs approval. Each acts in
the account that owns the image (`ctx.aws.of(image.account)`)."""

from bot.core.errors import AmibotError, UsageError
from bot.render import blocks
from bot.render.blocks import code, escape, when
from bot.render.deregister import unknown_lines, usage_lines
from bot.render.lifecycle import stage_done
from bot.services import approvals, stages
from bot.services.images import Image, find_image
from bot.services.references import scan
from bot.services.versions import is_promoted, parameter_name
from bot.slack.subcommands import Arg, Subcommand, image_arg, usage_of

IMAGE = image_arg()


def _spec(name: str, summary: str, example_tail: str = "", usage_tail: str = "", **kwargs) -> Subcommand:
    return Subcommand(name=name, stage="retire", summary=summary, usage=f"/ami {name} <ami-id|name>{usage_tail}",
                      example=f"/ami {name} ami-0abc1234def567890{example_tail}", changing=True, **kwargs)


DEPRECATE = _spec("deprecate", "mark an AMI deprecated (now, or --in N days / --at DATE); still launchable by id",
                  " --in 30 days", " [--in N days | --at DATE]",
                  args=(IMAGE, Arg("unit", required=False, rest=True, hint="days, hours or weeks")),
                  flags={"--in": "N", "--at": "DATE"})
UNDEPRECATE = _spec("undeprecate", "cancel an AMI's deprecation", args=(IMAGE,))
DISABLE = _spec("disable", "hide an AMI from launches but keep it (the current version needs approval)",
                args=(IMAGE,))
ENABLE = _spec("enable", "make a disabled AMI launchable again", args=(IMAGE,))
PROTECT = _spec("protect", "turn on deregistration protection (--cooldown: removal waits 24 h)", " --cooldown",
                " [--cooldown]", args=(IMAGE,), flags={"--cooldown": None})
UNPROTECT = _spec("unprotect", "turn off deregistration protection (the current version needs approval)",
                  args=(IMAGE,))


def _image(call) -> Image:
    """The image, found in whichever account owns it, once that account's operators allow this user: nothing
    about its state is said to someone who may not act on it."""
    image = find_image(call.ctx.aws, call.args["image"], call.ctx.policy.digest.family_tag)
    call.acting_in(image.account)
    return image


def _owner(call, image: Image):
    """The owning account's handle, once its operators are checked (acting_in)."""
    return call.acting_in(image.account)


def _done(call, image: Image, what: str, undo: str | None = None, note: str | None = None) -> None:
    call.audit_detail = {"image": image.id, "region": image.region, "family": image.family}
    if call.ctx.aws.many:
        call.audit_detail["account"] = image.account
    call.reply.post(stage_done(call.user, image, what, undo, note))


def run_deprecate(call):
    ctx, flags = call.ctx, call.flags
    in_text = flags["in"]
    if call.args["unit"]:
        if not in_text:
            raise UsageError(f"`deprecate` does not take `{escape(call.args['unit'][:30])}`; write `--in 30 days`.",
                             usage=usage_of(DEPRECATE))
        in_text = f"{in_text} {call.args['unit']}"
    at = stages.deprecation_time(ctx.clock(), in_text, flags["at"])  # bad dates fail before any AWS call
    image = _image(call)
    stages.check_state(image, ("available", "disabled"), "deprecate")
    stages.deprecate(_owner(call, image), image, at)
    note = ("It stays launchable by id; accounts it is shared with stop finding it in searches, and "
            "`/ami launch <family>` skips it."
            + (" It is the family's current version: promote another one." if is_promoted(ctx, image) else ""))
    if is_promoted(ctx, image):  # what keeps launching the deprecated current version (every kind of reference)
        usage = scan(_owner(call, image), image.region, [image.id]).of(image.id)
        if usage.in_use or usage.unknown:
            note += "\nStill in use by:\n" + usage_lines(usage) + (
                "\nCould not be checked:\n" + unknown_lines(usage) if usage.unknown else "")
    _done(call, image, f"set deprecation at {when(at)} for", f"/ami undeprecate {image.id}", note)
    call.audit_detail["deprecate_at"] = at.isoformat()


def run_undeprecate(call):
    image = _image(call)
    stages.undeprecate(_owner(call, image), image)
    _done(call, image, "cancelled the deprecation of")


def run_disable(call):
    ctx = call.ctx
    image = _image(call)
    if image.state == "disabled":
        return blocks.info(f"{code(image.id)} is already disabled; `/ami enable {image.id}` brings it back.")
    stages.check_state(image, ("available",), "disable")
    if is_promoted(ctx, image):
        return _ask_approval(call, image, "disable",
                             "The image is disabled: hidden from launches (new instances cannot start from it) but "
                             "kept; `/ami enable` undoes it.")
    stages.disable(_owner(call, image), image)
    _done(call, image, "disabled", f"/ami enable {image.id}",
          "Hidden from launches but kept (its snapshots still cost money); the digest lists it as "
          "“disabled, ready to deregister”.")


def run_enable(call):
    image = _image(call)
    if image.state != "disabled":
        return blocks.info(f"{code(image.id)} is {image.state}, not disabled; nothing to enable.")
    stages.enable(_owner(call, image), image)
    _done(call, image, "enabled", f"/ami disable {image.id}")


def run_protect(call):
    image = _image(call)
    if stages.is_protected(image):
        return blocks.info(f"{code(image.id)} is already protected ({stages.protection(image)}).")
    cooldown = call.flags["cooldown"]
    stages.protect(_owner(call, image), image, cooldown)
    note = "Removing the protection takes effect after a 24-hour cooldown." if cooldown else None
    _done(call, image, "protected from deregistration", f"/ami unprotect {image.id}", note)


def run_unprotect(call):
    ctx = call.ctx
    image = _image(call)
    if stages.protection(image) == "disabled":
        return blocks.info(f"{code(image.id)} is not protected from deregistration.")
    if is_promoted(ctx, image):
        return _ask_approval(call, image, "unprotect",
                             "Deregistration protection is removed: the image can then be deregistered.")
    stages.unprotect(_owner(call, image), image)
    _done(call, image, "removed deregistration protection from", f"/ami protect {image.id}")


def _ask_approval(call, image: Image, kind: str, consequence: str):
    ctx = call.ctx
    if not call.channel:
        raise AmibotError("Approval requests are posted in a channel; run this command in one.")
    usage = scan(_owner(call, image), image.region, [image.id]).of(image.id)
    verb = {"disable": "Disable", "unprotect": "Remove deregistration protection from"}[kind]
    request = approvals.create_request(
        ctx, kind=kind, params={"image_id": image.id, "region": image.region, "family": image.family,
                                "account": image.account, "name": image.name},
        requester=call.user, channel=call.channel,
        title=f"{verb} {image.id} ({image.name}), current version of {image.family}",
        details=stages.approval_details(image, usage, consequence, parameter_name(image.family)),
        reason=f"{image.id} is the promoted (current) version of {image.family} in {image.region}",
        danger=kind == "unprotect")
    call.audit_detail = {"request": request.id, "image": image.id, "region": image.region, "family": image.family,
                         "account": image.account}
    return blocks.info(f"{code(image.id)} is the current version of *{escape(image.family)}*, so this needs "
                       f"approval: request `{request.id}` is posted for the approvers.")


RUNNERS = [(DEPRECATE, run_deprecate), (UNDEPRECATE, run_undeprecate), (DISABLE, run_disable),
           (ENABLE, run_enable), (PROTECT, run_protect), (UNPROTECT, run_unprotect)]
