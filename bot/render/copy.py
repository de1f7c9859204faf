"""What `/ami copy` says about a copy; the message itself is the new-image announcement
(bot.render.lifecycle.new_image), updated by the image.watch job."""

from __future__ import annotations

from bot.blocks import escape
from bot.services.copy import CopyOrder


def copy_source(order: CopyOrder) -> str:
    return f"a copy of {order.image.name or order.image.id} ({order.image.id}, {order.image.region})"


def copy_note(order: CopyOrder) -> str:
    if not order.encrypt:
        encryption = "encrypted as the source (or as the region's EBS encryption by default says)"
    elif order.kms_key:
        encryption = f"encrypted with KMS key `{escape(order.kms_key)}`"
    else:
        encryption = "encrypted with the region's default EBS key"
    return f":inbox_tray: Copied across regions, {encryption}; the source's tags are carried over."
