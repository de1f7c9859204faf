"""Every message `/ami list`, `/ami versions`, `/ami drift` and the digest post is one Slack accepts (issue 21 §8):
each block parses with slack_sdk's models and passes their validation, at most 50 blocks, sections within 3,000
characters, and at most one table block (Slack refuses a second). Through the real app, on a realistic fleet."""

from __future__ import annotations

import pytest
from slack_sdk.models.blocks import Block

from bot.render.blocks import fit, message, section, table
from tests.support import seed
from tests.support.harness import REGIONS
from tests.support.org import registered
from tests.support.seed import family

POLICY = {"aws": {"regions": ["us-east-1"]}, "digest": {"channel": "C0OPS"}}


@pytest.fixture
def policy_data():
    return POLICY


def assert_slack_accepts(payload: dict) -> None:
    blocks = payload.get("blocks") or []
    assert len(blocks) <= 50
    assert sum(block["type"] == "table" for block in blocks) <= 1
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None and parsed.type == block["type"], block
        parsed.validate_json()  # raises SlackObjectFormationError on anything Slack would refuse
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "table":
            assert len(block["rows"]) <= 100 and all(len(row) <= 20 for row in block["rows"])
            assert sum(len(cell["text"]) for row in block["rows"] for cell in row) <= 10000


def test_list_versions_drift_and_the_digest_are_messages_slack_accepts(harness, aws):
    web = family(aws, [f"1.{minor}.0" for minor in range(6)])
    api = family(aws, ["2.0", "2.1"], name="api")
    harness.command(f"promote {web[-1]}")
    harness.command(f"promote {api[-1]}")
    for number, image_id in enumerate(web * 3 + api):
        seed.instance(aws, image_id=image_id, name=f"<@U0EVIL> node-{number} " + "x" * 80)
    for command in ("list", "list web", "versions web", "versions api", "drift", "drift web", "digest"):
        harness.command(command)
    sent = harness.replies() + harness.fake.calls_to("chat.postMessage")
    assert any(block["type"] == "table" for call in sent for block in call.params.get("blocks") or [])
    for call in sent:
        assert_slack_accepts(call.params)


def test_a_second_table_in_one_message_becomes_text():
    first = table(["Image", "Age"], [["web-1", "3d"]])
    second = table(["Instance", "Name"], [["i-1", "<!here>"]])
    built = fit(message("two tables", [section("a"), first, second]))
    assert [block["type"] for block in built["blocks"]] == ["section", "table", "section"]
    assert built["blocks"][2]["text"]["text"] == "Instance · Name\ni-1 · &lt;!here&gt;"
    assert_slack_accepts(built)


def test_a_table_is_cut_to_slacks_limits():
    rows = [[f"i-{number}", "n" * 600] for number in range(300)]
    block = table(["Instance", "Name"], rows)
    assert len(block["rows"]) <= 100
    assert all(len(cell["text"]) <= 500 for row in block["rows"] for cell in row)
    assert_slack_accepts({"blocks": [block]})


def test_the_organisations_digest_and_drift_are_messages_slack_accepts(make_harness, aws):
    prod = seed.account_session(aws, seed.PROD)
    for session, account in ((aws, seed.BAKE), (prod, seed.PROD)):
        old, new = (registered(session, account, f"svc-{n}", age) for n, age in ((1, 300), (2, 3)))
        session.client("ec2").create_tags(Resources=[old, new], Tags=[{"Key": "Family", "Value": "svc"}])
        seed.instance(session, image_id=old, name="<!here> svc-old")
        registered(session, account, "unused-v1", 400)  # stale: the digest has totals to tabulate
    harness = make_harness(seed.three_accounts(REGIONS, digest={"stale_after_days": 90, "keep_latest": 0}))
    harness.command("digest", channel="C0OPS")
    harness.command("drift")
    sent = harness.replies() + harness.fake.calls_to("chat.postMessage")
    tables = [block for call in sent for block in call.params.get("blocks") or [] if block["type"] == "table"]
    assert len(tables) == 2 and "Account" in [cell["text"] for cell in tables[1]["rows"][0]]
    for call in sent:
        assert_slack_accepts(call.params)
