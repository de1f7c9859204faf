"""What is at stake, before the click: the Home tab's "Waiting for you" shows each request's facts as its message
shows them (whatever its kind) with a link to that message, and every Approve's confirmation names the image and
says truthfully whether it can be undone — through the real app over HTTP."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tests.support import seed
from tests.support.approvals import approval_message
from tests.support.home import open_home
from tests.support.probes import route_probes

STRANGER = "444455556666"
POLICY = {"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS"]},
          "approvals": {"approvers": ["U0LEAD"]}, "sharing": {"allowed_accounts": []}}
DAYS = {"RetentionPeriodValue": 14, "RetentionPeriodUnit": "DAYS"}


@pytest.fixture
def policy_data():
    return POLICY


def waiting_entry(call, request_id: str) -> tuple[str, list[dict]]:
    """Every text of the Home tab's entry for one request (sections, fields, context), and its buttons."""
    blocks = call.params["view"]["blocks"]
    start = next(i for i, block in enumerate(blocks) if request_id in (block.get("text") or {}).get("text", ""))
    texts, buttons = [], []
    for block in blocks[start:]:
        if block is not blocks[start] and block["type"] in ("header", "divider"):
            break
        if block["type"] == "section" and request_id in (block.get("text") or {}).get("text", "") \
                and block is not blocks[start]:
            break  # the next request's entry
        texts.append((block.get("text") or {}).get("text", ""))
        texts += [field.get("text", "") for field in block.get("fields") or []]
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                buttons.append(element)
            elif isinstance(element.get("text"), str):
                texts.append(element["text"])
        if block["type"] == "actions":
            break
    return "\n".join(texts), buttons


def approve_confirm(buttons: list[dict]) -> str:
    [approve] = [button for button in buttons if button["action_id"] == "approval.approve"]
    return approve["confirm"]["text"]["text"]


def message_of(harness, request_id: str):
    return next(call for call in harness.fake.calls_to("chat.postMessage") if request_id in call.text
                and not call.params.get("thread_ts"))


def latest_request(harness) -> str:
    return harness.ctx.store.one("SELECT id FROM requests ORDER BY created_at DESC")["id"]


def link_to(harness, request_id: str) -> str:
    message = message_of(harness, request_id)
    return f"/archives/{message.params['channel']}/p{message.ts.replace('.', '')}"


def test_a_deregistration_waiting_on_the_home_tab_shows_its_blast_radius_and_links_its_message(harness, aws):
    image_id = seed.image(aws, "old-web", tags={"Family": "web"})
    seed.instance(aws, image_id=seed.image(aws, "other"))  # not this one: nothing uses old-web
    harness.command(f"deregister {image_id}", user="U0OPS")
    request_id = latest_request(harness)
    snapshot = aws.client("ec2").describe_images(ImageIds=[image_id])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    text, buttons = waiting_entry(open_home(harness, "U0LEAD")[0], request_id)
    for fact in ("In use by", "Snapshots to delete", snapshot, "/month", "Deregistration protection",
                 "the Recycle Bin could not be read", link_to(harness, request_id)):
        assert fact in text, fact
    assert "cannot be undone (recoverable" not in text  # one undo story, not two that contradict each other
    assert approve_confirm(buttons)


def test_a_share_an_enable_and_a_cleanup_show_their_stakes_and_links_on_the_home_tab(harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness.command(f"share {image_id} {STRANGER}", user="U0OPS")
    share = latest_request(harness)
    harness.command("recycle-bin enable --days 10 --tag Team=web", user="U0OPS")
    enable = latest_request(harness)
    gone = seed.image(aws, "gone")
    orphan = aws.client("ec2").describe_images(ImageIds=[gone])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    aws.client("ec2").deregister_image(ImageId=gone)
    harness.click("digest.cleanup", f"us-east-1:{orphan}", user="U0OPS", channel="C0OPS")
    harness.wait_idle()
    cleanup = latest_request(harness)
    home = open_home(harness, "U0LEAD")[0]
    expected = {share: ("Snapshots it may copy", STRANGER), enable: ("10 days", "Team=web"),
                cleanup: (orphan, "GiB")}
    for request_id, facts in expected.items():
        text, buttons = waiting_entry(home, request_id)
        for fact in (*facts, link_to(harness, request_id)):
            assert fact in text, (request_id, fact, text)
        assert approve_confirm(buttons)


def test_a_request_that_stored_no_stakes_says_to_open_it_and_offers_no_bare_approve(harness, aws):
    image_id = seed.image(aws, "old-web")
    harness.command(f"deregister {image_id}", user="U0OPS")
    request_id = latest_request(harness)
    harness.ctx.store.execute("UPDATE requests SET details = '[]' WHERE id = ?", (request_id,))  # made long ago
    text, buttons = waiting_entry(open_home(harness, "U0LEAD")[0], request_id)
    assert "open the request to see what is at stake" in text.lower() and link_to(harness, request_id) in text
    assert [button["action_id"] for button in buttons] == ["approval.reject"]


# --- the confirmation: the image by name and id, and whether it can be undone --------------------------

@pytest.fixture
def rbin(harness, monkeypatch):
    client = boto3.client("rbin", region_name="us-east-1")
    route_probes(harness, monkeypatch, rbin=client)
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()  # the rules given were read: what is said came from them


def image_rules(stub, rules):
    stub.add_response("list_rules", {"Rules": [{"Identifier": rule["Identifier"], "RetentionPeriod": DAYS}
                                               for rule in rules]}, {"ResourceType": "EC2_IMAGE"})
    for rule in rules:
        stub.add_response("get_rule", {"ResourceType": "EC2_IMAGE", "Status": "available", "RetentionPeriod": DAYS,
                                       **rule}, {"Identifier": rule["Identifier"]})


def confirms(harness, request_id: str) -> tuple[str, str]:
    """The Approve confirmation in the request's message and on the Home tab."""
    message, _ = approval_message(harness.fake)
    [approve] = [element for block in message.params["blocks"] if block["type"] == "actions"
                 for element in block["elements"] if element["action_id"] == "approval.approve"]
    _, buttons = waiting_entry(open_home(harness, "U0LEAD")[0], request_id)
    return approve["confirm"]["text"]["text"], approve_confirm(buttons)


def test_the_confirmation_says_until_when_it_can_be_restored_when_a_bin_rule_covers_it(harness, aws, rbin):
    image_id = seed.image(aws, "web-<old>&", tags={"Team": "web"})
    image_rules(rbin, [{"Identifier": "r1", "ResourceTags": [{"ResourceTagKey": "Team", "ResourceTagValue": "web"}]}])
    snapshot_rules(rbin, [{"Identifier": "s1"}])  # its snapshots, deleted with it, are kept as long
    harness.command(f"deregister {image_id}", user="U0OPS")
    request_id = latest_request(harness)
    for text in confirms(harness, request_id):
        assert "web-<old>&" in text and image_id in text, text  # plain text: shown as typed, never a link
        assert "recoverable until" in text.lower() and f"/ami restore {image_id}" in text, text
        assert "cannot be undone" not in text, text
        assert len(text) <= 300
    reason = harness.ctx.store.one("SELECT reason FROM requests WHERE id = ?", (request_id,))["reason"]
    assert "cannot be undone" not in reason and "14 days" in reason


def test_the_confirmation_says_it_cannot_be_undone_when_no_bin_rule_covers_it(harness, aws, rbin):
    image_id = seed.image(aws, "web-old", tags={"Team": "web"})
    image_rules(rbin, [{"Identifier": "r1", "ResourceTags": [{"ResourceTagKey": "Team", "ResourceTagValue": "db"}]}])
    harness.command(f"deregister {image_id}", user="U0OPS")
    for text in confirms(harness, latest_request(harness)):
        assert "web-old" in text and image_id in text and "cannot be undone" in text, text
        assert "recoverable" not in text.lower() and "/ami restore" not in text, text


def test_the_confirmation_says_unknown_when_the_bin_could_not_be_read(harness, aws):
    image_id = seed.image(aws, "web-old")  # moto has no Recycle Bin: unreadable
    harness.command(f"deregister {image_id}", user="U0OPS")
    for text in confirms(harness, latest_request(harness)):
        assert "web-old" in text and image_id in text and "unknown" in text, text
        assert "recoverable until" not in text.lower(), text


# --- snapshot cleanup: the same story about the snapshots a bin rule keeps -------------------------------

def snapshot_rules(stub, rules):
    stub.add_response("list_rules", {"Rules": [{"Identifier": rule["Identifier"], "RetentionPeriod": DAYS}
                                               for rule in rules]}, {"ResourceType": "EBS_SNAPSHOT"})
    for rule in rules:
        stub.add_response("get_rule", {"ResourceType": "EBS_SNAPSHOT", "Status": "available", "RetentionPeriod": DAYS,
                                       **rule}, {"Identifier": rule["Identifier"]})


def cleanup_of_an_orphan(harness, aws) -> tuple[str, str]:
    """(request id, snapshot id) of a cleanup asked for one orphaned snapshot."""
    gone = seed.image(aws, "gone")
    orphan = aws.client("ec2").describe_images(ImageIds=[gone])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    aws.client("ec2").deregister_image(ImageId=gone)
    harness.click("digest.cleanup", f"us-east-1:{orphan}", user="U0OPS", channel="C0OPS")
    harness.wait_idle()
    return latest_request(harness), orphan


def test_a_cleanup_confirmation_says_until_when_the_snapshots_a_bin_rule_keeps_are_recoverable(harness, aws, rbin):
    snapshot_rules(rbin, [{"Identifier": "s1"}])  # no resource tags: every snapshot in the region
    request_id, _ = cleanup_of_an_orphan(harness, aws)
    for text in confirms(harness, request_id):
        assert "recoverable until" in text.lower() and "cannot be undone" not in text, text
    message = message_of(harness, request_id)
    assert "recoverable until" in message.text.lower() and "(14 days)" in message.text  # the message says it too


def test_a_cleanup_confirmation_says_it_cannot_be_undone_when_no_bin_rule_keeps_snapshots(harness, aws, rbin):
    snapshot_rules(rbin, [])
    request_id, _ = cleanup_of_an_orphan(harness, aws)
    for text in confirms(harness, request_id):
        assert "cannot be undone" in text and "recoverable" not in text.lower(), text


def test_a_cleanup_confirmation_says_unknown_when_the_bin_could_not_be_read(harness, aws):
    request_id, _ = cleanup_of_an_orphan(harness, aws)
    for text in confirms(harness, request_id):
        assert "unknown" in text and "recoverable until" not in text.lower(), text


def test_a_share_confirmation_names_the_image_and_how_to_take_it_back(harness, aws):
    image_id = seed.image(aws, "web-v1")
    harness.command(f"share {image_id} {STRANGER}", user="U0OPS")
    for text in confirms(harness, latest_request(harness)):
        assert "web-v1" in text and image_id in text and STRANGER in text, text
        assert f"/ami unshare {image_id} {STRANGER}" in text and len(text) <= 300, text
