"""Posting the digest: the edge where the digest's findings (bot.services.digest) meet Block Kit
(bot.render.digest) and Slack. Services compute and claim; this renders and posts — so bot/services never
imports bot/render. The daily run reaches it through the publisher the digest's handlers register."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.render import digest as render
from bot.services.staleness import Findings

log = logging.getLogger(__name__)


def post(slack, channel: str, findings: Findings, day: str, send: Callable[[dict], str | None] | None = None
         ) -> str | None:
    """Post the digest (through `send` if given, e.g. a command's Reply.post); attach the full list as a CSV
    in the message's thread when not all of it is listed — and always for the organisation's digest (many
    accounts) with anything in it: its CSV, with an account column, is the list to share out. Returns the ts."""
    rendered = render.digest_message(findings, day)
    send = send or (lambda msg: slack.chat_postMessage(channel=channel, **msg)["ts"])
    ts = send(rendered.message)
    if rendered.more or (findings.many and not findings.clean):
        attach_csv(slack, channel, ts, findings, day)
    return ts


def attach_csv(slack, channel: str, ts: str | None, findings: Findings, day: str) -> None:
    thread = {"thread_ts": ts} if ts else {}
    try:
        slack.files_upload_v2(channel=channel, content=render.as_csv(findings), filename=f"amibot-digest-{day}.csv",
                              title=f"AMI digest {day}", initial_comment=render.csv_comment(findings, day), **thread)
    except Exception:  # the digest is out; a missing attachment must not fail the run
        log.exception("could not attach the digest CSV in %s", channel)


def permalink(slack, channel: str | None, ts: str | None) -> str | None:
    """A link to a posted digest for the Home tab, or None: the link is a convenience, the totals matter."""
    if not (channel and ts):
        return None
    try:
        return slack.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except Exception as error:
        log.info("no permalink for the digest message: %s", error)
        return None


class SlackPublisher:
    """What the daily run (bot.services.digest.run_daily) posts with."""

    def digest(self, ctx, channel: str, findings: Findings, day: str) -> str | None:
        return post(ctx.slack, channel, findings, day)

    def permalink(self, ctx, channel: str, ts: str | None) -> str | None:
        return permalink(ctx.slack, channel, ts)

    def failure(self, ctx, channel: str, day: str, reason: str) -> str | None:
        return ctx.slack.chat_postMessage(channel=channel, **render.digest_failed(day, reason))["ts"]
