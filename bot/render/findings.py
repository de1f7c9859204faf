"""Vulnerability findings in messages: counts by severity, the worst critical/high titles (pure builders)."""

from __future__ import annotations

from bot.render.blocks import context, escape, section
from bot.services.findings import ImageFindings

ICONS = {"CRITICAL": ":red_circle:", "HIGH": ":large_orange_circle:", "MEDIUM": ":large_yellow_circle:",
         "LOW": ":white_circle:"}


def counts_text(found: ImageFindings) -> str:
    """"2 critical · 5 high · 1 medium", "no findings reported", or "vulnerabilities unknown"."""
    if not found.known:
        return "vulnerabilities unknown"
    counts = {severity: n for severity, n in found.counts.items() if n}
    if not counts:
        return "no findings reported"
    return " · ".join(f"{n} {severity.lower()}" for severity, n in counts.items())


def findings_blocks(found: ImageFindings) -> list[dict]:
    """For `/ami show`: the counts and the top five critical/high findings with their titles."""
    if not found.known:
        return [context(f":grey_question: Vulnerabilities: unknown — {escape(found.error or 'not read')}")]
    lines = [f"*Vulnerabilities* (Amazon Inspector): {counts_text(found)}"]
    for finding in found.worst(5):
        score = f" ({finding.score:.1f})" if finding.score is not None else ""
        fix = " · fix available" if finding.fix_available else ""
        lines.append(f"{ICONS.get(finding.severity, '')} {escape(finding.title[:200])}{score}{fix}")
    blocks = [section("\n".join(lines))]
    if not found.findings:
        blocks.append(context("Inspector reports findings only for images it has scanned."))
    return blocks


def promotion_refused_text(found: ImageFindings, image_id: str) -> str:
    worst = "; ".join(escape(finding.title[:80]) for finding in found.worst(3))
    return (f"{image_id} has {found.critical} critical vulnerability finding(s) ({worst}), so it was not promoted: "
            "new launches of the family would get it. Promote a patched version, or ask again with `--force`.")
