"""What `/ami copy` says about a copy; the message itself is the new-image announcement
(bot.render.lifecycle.new_image), updated by the image.watch job."""

from __future__ import annotations

from bot.render.blocks import escape
from bot.services.copy import CopyOrder


def copy_source(order: CopyOrder) -> str:
    return f"a copy of {order.image.name or order.image.id} ({order.image.id}, {order.image.region})"


def copy_note(order: CopyOrder, same_name: list | None = None) -> str:
    if not order.encrypt:
        encryption = "encrypted as the source (or as the region's EBS encryption by default says)"
    elif order.kms_key:
        encryption = f"encrypted with KMS key `{escape(order.kms_key)}`"
    else:
        encryption = "encrypted with the region's default EBS key"
    note = f":inbox_tray: Copied across regions, {encryption}; the source's tags are carried over."
    if same_name:
        ids = ", ".join(f"`{image.id}`" for image in same_name[:3])
        note += f"\n:warning: {order.destination} already had an image of this name ({ids}); copied anyway (--force)."
    return note
