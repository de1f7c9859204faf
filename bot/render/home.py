"""The App Home tab: the dashboard a lead starts the day with (pure builder: data in, a Home view out).

Fleet health per family, the approval requests waiting for this user (with their buttons), the requests
they made, what the digest would retire and its 30-day trend as sparklines. Within Slack's 100 blocks,
with "and N more" pointing at the command that shows the rest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from bot.render.approvals import APPROVE, REJECT, accounts_needed, needs_line, stakes_text
from bot.render.blocks import actions, button, confirm_dialog, context, divider, escape, header, section
from bot.render.trend import trend_lines
from bot.render.unchecked import unchecked_lines

if TYPE_CHECKING:  # annotations only: the digest renders trend lines without loading the dashboard service
    from bot.services.dashboard import Dashboard, FamilyHealth, RolloutProgress

MAX_BLOCKS = 100
SHOWN_FAMILIES = 15
SHOWN_WAITING = 8
SHOWN_MINE = 8


def _age(days: float | None) -> str:
    if days is None:
        return "age unknown"
    return f"{int(days)} days old" if days >= 1 else "made today"


def family_line(family: FamilyHealth) -> str:
    if family.current_id is None:
        head = f"*{escape(family.family)}* ({family.region}): no current version"
    else:
        head = (f"*{escape(family.family)}* ({family.region}): current *{escape(family.current_name)}* · "
                f"{_age(family.current_age_days)}")
    total = family.on_current + family.on_older
    use = f"{family.on_current} of {total} instances on current" if total else "no instances"
    if family.on_older:
        use += f", :warning: {family.on_older} on older"
    vulns = ("vulnerabilities unknown" if family.critical is None else
             f":red_circle: {family.critical} critical" if family.critical else "no critical findings")
    return f"{head} · {use} · {vulns}"


def _fleet_blocks(board: Dashboard) -> list[dict]:
    blocks = [header("Fleet")]
    fleet = board.fleet
    if fleet is None:
        return blocks + [section(":hourglass_flowing_sand: Reading the fleet from AWS… this tab updates itself "
                                 "in a moment.")]
    if fleet.failures:  # first: what follows is only where the fleet could be read
        blocks.append(section("\n".join(unchecked_lines(fleet.failures, shown=8))[:2900]))
    if not fleet.families and not fleet.failures:
        blocks.append(section("No image families with instances or versions in the configured regions."))
    elif not fleet.families and fleet.checked:
        blocks.append(section("No image families with instances or versions where the fleet could be read."))
    lines = [family_line(family) for family in fleet.families[:SHOWN_FAMILIES]]
    for start in range(0, len(lines), 8):
        blocks.append(section("\n".join(lines[start:start + 8])))
    if len(fleet.families) > SHOWN_FAMILIES:
        blocks.append(context(f"…and {len(fleet.families) - SHOWN_FAMILIES} more families: `/ami drift` and "
                              "`/ami versions <family>` show them."))
    notes = []
    if fleet.unknown_family:
        notes.append(f"{fleet.unknown_family} instance(s) on images of unknown family")
    minutes = int(board.fleet_age.total_seconds() // 60) if board.fleet_age is not None else None
    fresh = "just now" if minutes is not None and minutes < 1 else f"{minutes} min ago"
    notes.append(f"Fleet as of {fresh}" + (" — refreshing" if board.fleet_age is not None
                                           and board.fleet_age >= timedelta(minutes=5) else ""))
    blocks.append(context(" · ".join(notes)[:2900]))
    return blocks


def _request_blocks(request, link: str | None) -> list[dict]:
    """One request waiting for this user: what is at stake as its message shows it (whatever its kind), a link to
    that message, and Approve (with the same confirmation as there) / Reject. A request that stored nothing to
    show sends the approver to its message: no Approve here without the stakes beside it."""
    danger = ":warning: " if request.danger else ""
    text = (f"{danger}*{escape(request.title)}* · `{request.id}` · by <@{request.requester}> · "
            f"{request.created_at[:10]}")
    several = accounts_needed(request)
    if getattr(request, "account_label", ""):
        text += f"\n*{'Accounts' if several else 'Account'}:* {escape(request.account_label)}"
    if several:  # which accounts still wait for an approval, and from whom
        text += "\n" + "\n".join(needs_line(need) for need in several)
    if request.reason:
        text += f"\n_{escape(request.reason)[:300]}_"
    message = f"<{link}|the request's message>" if link else "its message (`/ami requests` links it)"
    stakes = stakes_text(request.details)
    reject = button("Reject", REJECT, request.id)
    if not stakes:
        return [section(text[:2900]), section(f":mag: This request stored no summary of what is at stake: open the "
                                              f"request to see what is at stake — {message} — and approve it there."),
                actions(reject)]
    stakes += f"\n:link: Everything at stake is in {message}."
    approve = button("Approve", APPROVE, request.id, style="danger" if request.danger else "primary",
                     confirm=confirm_dialog("Approve?", request.confirm_text(), "Approve",
                                            style="danger" if request.danger else "primary"))
    return [section(text[:2900]), section(stakes[:2900]), actions(approve, reject)]


def _waiting_blocks(board: Dashboard, links: dict[str, str]) -> list[dict]:
    blocks = [header(f"Waiting for you ({len(board.waiting)})")]
    if not board.waiting:
        return blocks + [section("Nothing waits for your approval.")]
    for request in board.waiting[:SHOWN_WAITING]:
        blocks += _request_blocks(request, links.get(request.id))
    if len(board.waiting) > SHOWN_WAITING:
        blocks.append(context(f"…and {len(board.waiting) - SHOWN_WAITING} more: `/ami requests`."))
    return blocks


def _mine_blocks(board: Dashboard) -> list[dict]:
    blocks = [header("Your requests")]
    if not board.mine:
        return blocks + [section("You have not asked for anything yet.")]
    icons = {"pending": ":hourglass:", "succeeded": ":white_check_mark:", "failed": ":x:", "rejected": ":no_entry:",
             "cancelled": ":leftwards_arrow_with_hook:", "expired": ":hourglass:", "approved": ":gear:",
             "executing": ":gear:"}
    lines = [f"{icons.get(r.state, '•')} `{r.id}` {escape(r.title)[:120]} — *{r.state}*"
             for r in board.mine[:SHOWN_MINE]]
    blocks.append(section("\n".join(lines)))
    blocks.append(context("`/ami requests` lists every open request; `/ami audit <request-id>` its history."))
    return blocks


def _bake_blocks(board: Dashboard) -> list[dict]:
    """Bakes running now (their promotion requests wait above, with the others); nothing when none runs."""
    if not board.bakes:
        return []
    lines = [f":gear: `{escape(run['id'])}` {escape(run['family'])} {escape(run.get('version') or '')} · "
             f"{escape(run.get('what') or '')} · {escape(run['state'])}" for run in board.bakes[:5]]
    more = f"\n…and {len(board.bakes) - 5} more." if len(board.bakes) > 5 else ""
    return [header(f"Bakes running ({len(board.bakes)})"), section("\n".join(lines) + more),
            context("`/ami bakes` lists them with the recent ones; each bake's message follows it."), divider()]


SHOWN_ROLLOUTS = 5


def rollout_line(item: RolloutProgress, link: str | None) -> str:
    """ "*web* → 1.5.0 · 1 of 3 groups done · *40 %* · the request's message", and the groups that failed."""
    where = f"<{link}|the request's message>" if link else f"`{item.id}`"
    line = (f":arrows_counterclockwise: *{escape(item.family)}* → {escape(item.version)} · {item.done} of "
            f"{item.groups} group{'s' if item.groups != 1 else ''} done · *{item.percent} %* · {where}")
    for group, why in list(item.failed.items())[:3]:
        line += f"\n      :x: {escape(group)}: {escape(why)[:200]}"
    if len(item.failed) > 3:
        line += f"\n      …and {len(item.failed) - 3} more groups that did not finish"
    return line


def _rollout_blocks(board: Dashboard, links: dict[str, str]) -> list[dict]:
    """Rollouts still running, with how far each is (as its watch last read AWS); nothing when none runs."""
    if not board.rollouts:
        return []
    lines = [rollout_line(item, links.get(item.id)) for item in board.rollouts[:SHOWN_ROLLOUTS]]
    more = f"\n…and {len(board.rollouts) - SHOWN_ROLLOUTS} more." if len(board.rollouts) > SHOWN_ROLLOUTS else ""
    return [header(f"Rollouts in progress ({len(board.rollouts)})"), section(("\n".join(lines) + more)[:2900]),
            context("Each group's progress as last read from AWS (percent of instances replaced): "
                    "`/ami rollout status` reads it now; `/ami rollout cancel &lt;request-id&gt;` stops one."),
            divider()]


def _revoked_blocks(board: Dashboard) -> list[dict]:
    """Images revoked (`/ami revoke`), the latest first, with their reason; nothing when none is."""
    if not board.revoked:
        return []
    lines = [f"`{escape(row['image_id'])}` {escape(row.get('name') or '')} ({escape(row.get('region') or '')}) · "
             f"{escape(row.get('family') or '')} · {escape((row.get('revoked_at') or '')[:10])} — "
             f"{escape(row.get('reason') or '')}" for row in board.revoked[:5]]
    return [header(f"Revoked images ({len(board.revoked)})"), section(":no_entry: " + "\n:no_entry: ".join(lines)),
            context("Deprecated and disabled, kept: `/ami show &lt;ami-id&gt;` says why; `/ami enable` brings one "
                    "back."),
            divider()]


def _digest_blocks(board: Dashboard) -> list[dict]:
    blocks = [header("What the digest would retire")]
    last = board.last_digest
    if last is None:
        return blocks + [section("No digest yet: `/ami digest` makes one now.")]
    where = f"<{last.permalink}|the {last.date} digest>" if last.permalink else (
        f"the {last.date} digest" + (f" in <#{last.channel}>" if last.channel else ""))
    blocks.append(section(f"*${last.monthly_waste:,.2f}/month* in {last.stale_images} stale image(s) and "
                          f"{last.orphaned_snapshots} orphaned snapshot(s) — from {where}."))
    lines = trend_lines(board.trend)
    if lines:
        blocks.append(section("\n".join(lines)))
    return blocks


def home_view(board: Dashboard, notice: str | None = None, links: dict[str, str] | None = None) -> dict:
    """`notice`: what just happened on the tab (a decision's outcome), shown first; `links`: request id → the
    permalink of its message (asked of Slack by the caller): the requests waiting, and the rollouts running."""
    blocks = [section(notice[:2900]), divider()] if notice else []  # amibot's own words (AmibotError: safe)
    blocks += [*_fleet_blocks(board), divider(), *_bake_blocks(board), *_rollout_blocks(board, links or {}),
               *_revoked_blocks(board),
               *_waiting_blocks(board, links or {}),
               divider(), *_mine_blocks(board),
              divider(), *_digest_blocks(board),
              context(f"Updated {board.now:%Y-%m-%d %H:%M} UTC · `/ami help` lists every command")]
    if len(blocks) > MAX_BLOCKS:  # the budget above keeps within it; never let Slack refuse the view
        blocks = blocks[:MAX_BLOCKS - 1] + [context("…more than fits here: `/ami requests`, `/ami drift`.")]
    return {"type": "home", "blocks": blocks}
