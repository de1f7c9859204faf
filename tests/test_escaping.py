"""Nothing a user typed is echoed raw (issue 14 §6): mentions and group pings in an answer are escaped at the
source, so `/ami versions <@U123>` cannot make the bot ping anyone."""

from __future__ import annotations

import pytest

from tests import seed

MENTIONS = ["<@U123>", "<!subteam^S1>", "<!here>"]
COMMANDS = [  # the four first, then every other place a user's word comes back in an answer
    "versions {m}",
    "rollback {m}",
    "base {m}",
    "create {instance} image-x --family {m}",
    "versions {m} --region us-east-1",
    "promote {m}",
    "base al2023 --copy {m} --family {m}",
    "create {instance} {m}",
    "create {instance} image-y --version {m}",
    "register snap-0123456789abcdef0 {m}",
    "show {m}",
    "{m}",
]


@pytest.mark.parametrize("template", COMMANDS)
def test_no_raw_mention_is_echoed(harness, aws, template):
    instance = seed.instance(aws, name="builder") if "{instance}" in template else ""
    for mention in MENTIONS:
        before = len(harness.replies())
        harness.command(template.format(m=mention, instance=instance))
        texts = [call.text for call in harness.replies()[before:]]
        assert texts, f"the bot answered nothing to {template.format(m=mention, instance=instance)!r}"
        for text in texts:
            assert "<@" not in text and "<!" not in text, text
            assert mention.replace("<", "&lt;").replace(">", "&gt;") in text or "Unknown" in text or "usage" in \
                text.lower() or "not a valid" in text, text  # what was typed is shown, escaped
    for call in harness.fake.calls_to("chat.postMessage") + harness.fake.calls_to("chat.update"):
        assert all(mention not in call.text for mention in MENTIONS), call.text
