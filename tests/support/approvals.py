"""The four-eyes flow as tests drive it: a policy with approvers, and the approval message in the fake Slack."""

from __future__ import annotations

POLICY = {"aws": {"regions": ["us-east-1", "eu-west-1"]},
          "approvals": {"approvers": ["U0LEAD", "S0LEADS"]}}


def approval_message(fake):
    """The approval message the bot posted, and its request id."""
    for call in fake.calls_to("chat.postMessage"):
        for block in call.params.get("blocks", []):
            if block.get("type") == "actions":
                for element in block["elements"]:
                    if element["action_id"] == "approval.approve":
                        return call, element["value"]
    raise AssertionError(f"no approval message; posts: {[c.text[:80] for c in fake.calls_to('chat.postMessage')]}")


def last_update(fake, ts):
    updates = [c for c in fake.calls_to("chat.update") if c.params.get("ts") == ts]
    assert updates, "the approval message was never updated"
    return updates[-1]
