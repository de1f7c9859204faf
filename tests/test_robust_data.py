"""Real AWS data never breaks a scan: one malformed field in one item (a date AWS cannot have meant, a missing
key, an odd type, an instance-store image, an ephemeral device) leaves that field unknown, logs a warning naming
the item and the field, and every other item is listed, shown and judged as usual. Items without an id are
skipped with a warning.

End to end, DescribeImages pages come from botocore's Stubber on a real ec2 client made by bot/aws/clients.py (moto
cannot return malformed items); everything else the app calls is moto."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.services.images import Image, images_from
from bot.services.inventory import Inventory, snapshot_from_messy
from bot.services.references import References
from bot.services.staleness import Rules, judge
from tests.support.digest import digest_posts
from tests.support.harness import AppWithAws
from tests.support.stubs import ACCOUNT, GOOD, StubbedImages, good_item

BAD_DATE = "ami-0000000000000bad1"
INSTANCE_STORE = "ami-0000000000000cafe"
NO_VALUE = "ami-0000000000000d001"
BARE = "ami-0000000000000e001"


def page() -> list[dict]:
    """One DescribeImages page as AWS could send it (every item valid for botocore's output shape)."""
    return [
        good_item(),
        good_item(BAD_DATE, "bad-date-1", CreationDate="2020-09-24T13:31:456.000Z"),
        {"Name": "ghost-without-id", "State": "available", "OwnerId": ACCOUNT},
        good_item(INSTANCE_STORE, "store-1", RootDeviceType="instance-store",
                  BlockDeviceMappings=[{"DeviceName": "/dev/sda1"},
                                       {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}]),
        good_item(NO_VALUE, "no-value-1", Tags=[{"Key": "Team"}, {"Key": "Family", "Value": "novalue"}]),
        {"ImageId": BARE, "OwnerId": ACCOUNT},  # nothing else at all
    ]


# --- each malformation on its own, at the parser -----------------------------------------------------------

@pytest.mark.parametrize("change, field, check", [
    ({"CreationDate": "2020-09-24T13:31:456.000Z"}, "CreationDate", lambda image: image.created is None),
    ({"DeprecationTime": "soon"}, "DeprecationTime", lambda image: image.deprecation_time is None),
    ({"Tags": {"Team": "web"}}, "Tags", lambda image: image.tags == {}),
    ({"Tags": [{"Key": "Team"}]}, "Tags[Team].Value", lambda image: image.tags == {"Team": ""}),
    ({"Tags": [{"Value": "orphan"}, {"Key": "Team", "Value": "web"}]}, "Tags[].Key",
     lambda image: image.tags == {"Team": "web"}),
    ({"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-1", "VolumeSize": "8"}}]},
     "VolumeSize", lambda image: image.devices[0].size_gb is None and image.devices[0].snapshot_id == "snap-1"),
    ({"BlockDeviceMappings": "none"}, "BlockDeviceMappings", lambda image: image.devices == []),
    ({"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": "gp3"}]}, "Ebs",
     lambda image: image.devices[0].snapshot_id is None),
    ({"Name": 42}, "Name", lambda image: image.name == "" and image.family == ""),
    ({"State": ["available"]}, "State", lambda image: image.state == "unknown"),
])
def test_a_malformed_field_is_unknown_and_named_in_a_warning(change, field, check, caplog):
    with caplog.at_level(logging.WARNING, logger="amibot.awsdata"):
        image = Image.from_aws({**good_item(), **change}, "eu-west-1", "Family")
    assert image.id == GOOD and check(image)
    assert any(f"image {GOOD} in eu-west-1" in record.getMessage() and field in record.getMessage()
               for record in caplog.records), [record.getMessage() for record in caplog.records]
    assert image.name in ("good-1.0.0", "")  # the rest of the item is read as usual
    assert image.created is None or image.created == datetime(2024, 1, 15, 10, tzinfo=UTC)


def test_instance_store_images_and_ephemeral_devices_are_read_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        [image] = images_from([page()[3]], "us-east-1", "Family")
    assert [(d.device, d.snapshot_id, d.virtual_name) for d in image.devices] == [
        ("/dev/sda1", None, None), ("/dev/sdb", None, "ephemeral0")]
    assert image.snapshot_ids == [] and image.size_gb == 0 and not caplog.records


def test_items_without_an_id_are_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        images = images_from([good_item(), {"Name": "ghost"}, {"ImageId": ""}, "not even a dict"], "us-east-1",
                             "Family")
    assert [image.id for image in images] == [GOOD]
    assert sum("image without a usable ImageId in us-east-1 skipped" in r.getMessage() for r in caplog.records) == 3


def test_a_time_without_a_zone_is_utc_and_an_image_of_unknown_age_is_never_stale():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    naive = Image.from_aws(good_item(CreationDate="2024-01-15T10:00:00"), "us-east-1")
    assert naive.created == datetime(2024, 1, 15, 10, tzinfo=UTC)
    unknown = Image.from_aws(good_item(BAD_DATE, CreationDate="2020-09-24T13:31:456.000Z"), "us-east-1")
    findings = judge(Inventory("us-east-1", [naive, unknown], [], References("us-east-1")), Rules(90, 0, 0.05), now)
    assert [item.image.id for item in findings.stale] == [GOOD]
    assert findings.kept["creation date unknown"] == 1


def test_snapshots_with_odd_fields_are_kept_and_without_an_id_skipped(caplog):
    with caplog.at_level(logging.WARNING):
        odd = snapshot_from_messy({"SnapshotId": "snap-0000000000000a001", "VolumeSize": "100",
                                   "Description": "Auto-created snapshot for AMI ami-0000000000000a001",
                                   "StartTime": "yesterday"}, "us-east-1")
        gone = snapshot_from_messy({"VolumeSize": 8}, "us-east-1")
    assert odd.id == "snap-0000000000000a001" and odd.size_gb is None and odd.started is None  # unknown, not 0
    assert odd.ami_id == "ami-0000000000000a001" and gone is None
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "snapshot snap-0000000000000a001 in us-east-1: field VolumeSize" in messages
    assert "field StartTime" in messages and "snapshot without a usable SnapshotId" in messages


# --- through the real app, DescribeImages from botocore's Stubber -----------------------------------------


@pytest.fixture
def stubbed(aws, fake_slack, tmp_path):
    layer = StubbedImages(["us-east-1"])
    running = AppWithAws(fake_slack, str(tmp_path / "amibot.db"),
                         {"aws": {"regions": ["us-east-1"]}, "digest": {"keep_latest": 0}}, aws_layer=layer).start()
    yield running, layer
    running.stop()
    layer.stub.deactivate()


def test_list_shows_every_image_of_a_page_with_a_malformed_item(stubbed, caplog):
    running, layer = stubbed
    layer.images(page(), shares=5)
    with caplog.at_level(logging.WARNING):
        running.command("list")
    layer.stub.assert_no_pending_responses()
    reply = running.last_reply().text
    assert "5 AMIs" in reply
    for image_id in (GOOD, BAD_DATE, INSTANCE_STORE, NO_VALUE, BARE):
        assert image_id in reply, image_id
    assert "ghost-without-id" not in reply
    bad_row = next(line for line in reply.splitlines() if BAD_DATE in line)
    assert "age unknown" in bad_row and "0d" not in bad_row
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"image {BAD_DATE} in us-east-1: field CreationDate is malformed" in m for m in messages), messages
    assert any(f"image {NO_VALUE} in us-east-1: field Tags[Team].Value" in m for m in messages)
    assert any("image without a usable ImageId in us-east-1 skipped" in m for m in messages)


def test_show_of_the_malformed_image_says_unknown(stubbed):
    running, layer = stubbed
    layer.images([page()[1]], shares=1)
    running.command(f"show {BAD_DATE}")
    reply = running.last_reply().text
    assert "bad-date-1" in reply and "*Created*\nunknown" in reply
    layer.images([page()[3]], shares=1)
    running.command(f"show {INSTANCE_STORE}")
    reply = running.last_reply().text
    assert "/dev/sdb → ephemeral" in reply and "size unknown" in reply


def test_the_digest_still_posts_and_an_image_of_unknown_age_is_not_stale(stubbed, caplog):
    running, layer = stubbed
    layer.images(page())
    with caplog.at_level(logging.WARNING):
        running.command("digest", channel="C0OPS")
    layer.stub.assert_no_pending_responses()
    [post] = digest_posts(running)
    assert GOOD in post.text and BAD_DATE not in post.text
    assert any(f"image {BAD_DATE} in us-east-1: field CreationDate" in r.getMessage() for r in caplog.records)
    now = datetime.now(UTC)
    assert now - datetime(2024, 1, 15, 10, tzinfo=UTC) > timedelta(days=90)  # GOOD really is old
