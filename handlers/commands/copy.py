"""`/ami copy <ami-id|name> <region> [--name N] [--encrypt [--kms-key K]]`: an image into another region.

The new id is announced at once; the image.watch job (handlers/actions/image_buttons.py) updates the
message when the copy is available or has failed, within its bounded wait.
"""

from __future__ import annotations

import uuid

from bot.render import copy as render
from bot.render.lifecycle import NewImage
from bot.services import copy as service
from bot.services.images import find_image
from bot.slack.subcommands import Arg, Subcommand, image_arg
from handlers.actions.image_buttons import announce

SPEC = Subcommand(
    name="copy", stage="create & bake", summary="copy an AMI into another region, tags carried, optionally encrypted",
    usage="/ami copy <ami-id|name> <region> [--name N] [--encrypt [--kms-key K]] [--source-region R] [--force]",
    example="/ami copy ami-0abc1234def567890 eu-west-2 --encrypt",
    args=(image_arg("ami-id"),
          Arg("region", hint="a region name such as eu-west-2")),
    flags={"--name": "N", "--encrypt": None, "--kms-key": "K", "--source-region": "R", "--force": None},
    changing=True)


def run(call):
    ctx, flags = call.ctx, call.flags
    destination = service.parse_region(call.args["region"])
    name = service.parse_name(flags["name"])
    kms_key = service.parse_kms_key(flags["kms_key"], bool(flags["encrypt"]))
    source = flags["source_region"]
    image = find_image(ctx.aws, call.args["ami-id"], ctx.policy.digest.family_tag, [source] if source else None)
    owner = call.acting_in(image.account)  # the copy lands in the account that owns the image: its operators
    order = service.plan(image, destination, name, bool(flags["encrypt"]), kms_key)
    existing = service.same_name_in(owner, order, ctx.policy.digest.family_tag)
    if not flags["force"]:
        service.refuse_duplicate_name(existing, order)
    call.audit_detail = {"image": image.id, "source_region": image.region, "destination": destination,
                         "name": order.name, "encrypt": order.encrypt, "kms_key": kms_key,
                         "same_name": [other.id for other in existing], "account": image.account}
    new_id = service.copy_image(owner, order, call.user, f"copy-{uuid.uuid4().hex[:12]}")
    call.audit_detail["copy"] = new_id
    announce(call, NewImage(new_id, order.name, destination, render.copy_source(order), call.user, image.family,
                            image.version, note=render.copy_note(order, existing), account=image.account,
                            account_label=owner.account.label if ctx.aws.many else ""))
    return None
