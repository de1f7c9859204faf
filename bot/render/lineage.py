"""`/ami lineage`'s message, and `/ami show`'s line of where an image came from (issue 22 §6). Pure."""

from __future__ import annotations

from datetime import datetime

from bot.render.blocks import Message, code, context, escape, header, message, section
from bot.services.images import Image
from bot.services.lineage import Ancestor, Bake, Lineage, Origin

HOW = {"tag": "its amibot:source-image tag", "SourceImageId": "its SourceImageId",
       "GetImageAncestry": "GetImageAncestry"}
DESCENDANTS_SHOWN = 30


def by(bake: Bake | None) -> str:
    """" by pipeline web", " by runbook AWS-UpdateLinuxAmi", " by instance i-…" — or nothing."""
    if bake is None:
        return ""
    if bake.mechanism == "bake":
        return f" by bake {escape(bake.name)}"
    name = code(bake.name) if bake.mechanism == "instance" else escape(bake.name)
    return f" by {escape(bake.mechanism)} {name}"


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "an unknown date"


def _named(image: Image | None, image_id: str) -> str:
    if image is None:
        return f"{code(image_id)} (not readable here)"
    return f"*{escape(image.name or '(no name)')}* ({code(image_id)})"


def origin_line(image: Image, origin: Origin) -> str | None:
    """`/ami show`'s lines: "baked from web-1.4.2 (ami-…) by pipeline web on 2026-12-07" and how many were baked
    from it; None when nothing is known either way (an image nothing says anything about)."""
    lines = []
    if origin.source_id:
        verb = "baked from" if origin.how == "tag" else "made from"
        lines.append(f"{verb} {_named(origin.source, origin.source_id)}{by(origin.bake)} on {_day(image.created)}")
    if origin.children:
        plural = "s" if origin.children != 1 else ""
        lines.append(f"{origin.children} known descendant{plural} baked from it in {escape(image.region)} "
                     f"(`/ami lineage {escape(image.id)}` lists them)")
    elif origin.children is None and origin.source_id:
        lines.append(f"descendants: unknown (images in {escape(image.region)} could not be read)")
    return "\n".join(lines) if lines else None


def _ancestor_line(number: int, ancestor: Ancestor) -> str:
    parts = [f"{number}. {_named(ancestor.image, ancestor.image_id)}"]
    if ancestor.version:
        parts.append(f"v{escape(ancestor.version)}")
    parts.append(escape(ancestor.region))
    if ancestor.created:
        parts.append(f"created {_day(ancestor.created)}")
    if ancestor.owner_alias:
        parts.append(f"owner {escape(ancestor.owner_alias)}")
    line = " · ".join(parts)
    return line + f"{by(ancestor.bake)} · known from {escape(HOW.get(ancestor.how, ancestor.how))}"


def _end(lineage: Lineage) -> str:
    last = lineage.ancestors[-1].image_id if lineage.ancestors else lineage.image.id
    if lineage.end == "base":
        return f"{code(last)} is an AWS base image: the chain ends there."
    if lineage.end == "root":
        return f"{code(last)} is the root of its ancestry as GetImageAncestry reports it."
    if lineage.end == "cut":
        return f"…the chain goes on beyond {code(last)} (not followed further: too long, or it loops)."
    sources = "no lineage tags, no SourceImageId"
    if lineage.ancestry_api is False:
        sources += ", and this endpoint has no GetImageAncestry"
    elif lineage.ancestry_problem:
        sources += f", and GetImageAncestry failed: {escape(lineage.ancestry_problem)}"
    return f"What {code(last)} was made from: *unknown* ({sources})."


def lineage_message(lineage: Lineage) -> Message:
    image = lineage.image
    title = image.name or image.id
    blocks = [header(f"Lineage of {title}")]
    made = f"{_named(image, image.id)} · {escape(image.region)}"
    if image.version:
        made += f" · v{escape(image.version)}"
    made += f" · created {_day(image.created)}{by(lineage.bake)}"
    blocks.append(section(made))
    if lineage.ancestors:
        lines = [_ancestor_line(number, ancestor) for number, ancestor in enumerate(lineage.ancestors, 1)]
        blocks.append(section("*Ancestors, nearest first*\n" + "\n".join(lines)))
    blocks.append(section(_end(lineage)))
    blocks.append(section(_descendants(lineage)))
    if lineage.unread:
        blocks.append(context("Not read (descendants there are not known): " + "; ".join(
            f"{escape(where)}: {escape(reason)}" for where, reason in list(lineage.unread.items())[:10])))
    ancestors = len(lineage.ancestors)
    summary = (f"Lineage of {title} ({image.id}): {ancestors} known ancestor{'s' if ancestors != 1 else ''}, "
               f"{'then unknown' if lineage.end == 'unknown' else 'to the ' + lineage.end}; "
               f"{len(lineage.descendants)} known descendant{'s' if len(lineage.descendants) != 1 else ''}")
    return message(summary, blocks)


def _descendants(lineage: Lineage) -> str:
    where = " where read" if lineage.unread else ""
    if not lineage.descendants:
        return f"*Known descendants*{where}: none found in the images amibot reads"
    lines = []
    for depth, image in lineage.descendants[:DESCENDANTS_SHOWN]:
        version = f" · v{escape(image.version)}" if image.version else ""
        lines.append(f"{'    ' * (depth - 1)}• {_named(image, image.id)} · {escape(image.region)}{version} · "
                     f"created {_day(image.created)}")
    more = len(lineage.descendants) - DESCENDANTS_SHOWN
    if more > 0:
        lines.append(f"…and {more} more")
    return f"*Known descendants{where}* ({len(lineage.descendants)})\n" + "\n".join(lines)


def origin_section(image: Image, origin: Origin) -> list[dict]:
    """`/ami show`'s lineage, as blocks (none when nothing is known)."""
    line = origin_line(image, origin)
    return [section(f"*Lineage*\n{line}")] if line else []
