"""`/ami allowed`: the account's Allowed AMIs state and criteria per region (pure builder)."""

from __future__ import annotations

from bot.render.blocks import Message, context, escape, header, message, section
from bot.services.allowed import AUDIT, DISABLED, ENABLED, AllowedSettings

STATE_LABELS = {ENABLED: ":shield: *enabled* — EC2 refuses images outside the criteria",
                AUDIT: ":mag: *audit mode* — images outside the criteria are flagged, not refused",
                DISABLED: ":white_circle: *disabled* — every image may be used"}


def criterion_line(number: int, criterion: dict) -> str:
    parts = []
    if criterion.get("ImageProviders"):
        parts.append("providers " + ", ".join(f"`{escape(p)}`" for p in criterion["ImageProviders"][:20]))
    if criterion.get("ImageNames"):
        parts.append("names " + ", ".join(f"`{escape(n)}`" for n in criterion["ImageNames"][:20]))
    if criterion.get("MarketplaceProductCodes"):
        parts.append("Marketplace products " + ", ".join(f"`{escape(c)}`"
                                                        for c in criterion["MarketplaceProductCodes"][:20]))
    created = (criterion.get("CreationDateCondition") or {}).get("MaximumDaysSinceCreated")
    if created is not None:
        parts.append(f"created within {created} days")
    deprecated = (criterion.get("DeprecationTimeCondition") or {}).get("MaximumDaysSinceDeprecated")
    if deprecated is not None:
        parts.append(f"deprecated at most {deprecated} days ago")
    if criterion.get("ImageWatermarks"):
        parts.append(f"{len(criterion['ImageWatermarks'])} watermark condition(s)")
    if criterion.get("ScanResultCondition"):
        parts.append("an Inspector scan-result condition")
    return f"{number}. " + (" and ".join(parts) if parts else "(an empty criterion)")


def allowed(found: list[AllowedSettings]) -> Message:
    blocks = [header("Allowed AMIs")]
    for settings in found[:20]:
        lines = [f"*{settings.region}*"]
        if settings.state is None:
            lines.append(f":grey_question: unknown: {escape(settings.error or 'not read')}")
        else:
            lines.append(STATE_LABELS.get(settings.state, f"state *{escape(settings.state)}*"))
            if settings.managed_by:
                lines.append(f"managed by {escape(settings.managed_by)}")
            if settings.state != DISABLED:
                lines += [criterion_line(n, c) for n, c in enumerate(settings.criteria[:10], start=1)] or [
                    ":warning: no criteria: no image passes"]
        blocks.append(section("\n".join(lines)))
    blocks.append(context("An image is allowed when it meets any one criterion (every condition in it). "
                          "`/ami promote` and `/ami launch` warn about images that would be blocked."))
    states = ", ".join(f"{s.region} {s.state or 'unknown'}" for s in found)
    return message(f"Allowed AMIs: {states}", blocks)
