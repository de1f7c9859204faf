"""`/ami copy` end to end: the copy in the destination region with its tags, the message updated in place."""

from __future__ import annotations

import dataclasses
import json
import time

from tests.support import seed


def posts(harness, containing=""):
    return [c for c in harness.fake.calls_to("chat.postMessage") if containing in c.text]


def updates(harness, ts):
    return [c for c in harness.fake.calls_to("chat.update") if c.params.get("ts") == ts]


def own_images(aws, region, name=None):
    filters = [{"Name": "name", "Values": [name]}] if name else []
    return aws.client("ec2", region).describe_images(Owners=["self"], Filters=filters)["Images"]


def tags_of(resource):
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def record_params(harness, region, operation):
    """What amibot sent to AWS (moto accepts Encrypted/KmsKeyId and ignores them)."""
    sent = []
    harness.ctx.aws.home.ec2(region).meta.events.register(
        f"provide-client-params.ec2.{operation}", lambda params, **_: sent.append(dict(params)))
    return sent


def test_copy_into_another_region_carries_the_tags_and_updates_the_message(harness, aws):
    image_id = seed.image(aws, "web-v7", tags={"Family": "web", "Team": "platform", "amibot:current": "true"})
    sent = record_params(harness, "ap-southeast-2", "CopyImage")  # a region outside [aws].regions
    harness.command(f"copy {image_id} ap-southeast-2 --encrypt --kms-key alias/images")

    [copy] = own_images(aws, "ap-southeast-2")
    new_id = copy["ImageId"]
    assert copy["Name"] == "web-v7" and copy["State"] == "available"
    tags = tags_of(copy)
    assert tags["Family"] == "web" and tags["Team"] == "platform"
    assert tags["amibot:copied-from"] == f"{image_id}@us-east-1" and tags["amibot:requested-by"] == "U0OPS"
    assert "amibot:current" not in tags  # being current in us-east-1 says nothing about Sydney
    assert sent[0]["SourceImageId"] == image_id and sent[0]["SourceRegion"] == "us-east-1"
    assert sent[0]["Encrypted"] is True and sent[0]["KmsKeyId"] == "alias/images"

    started = posts(harness, "is making AMI")[-1]
    assert started.params["channel"] == "C0OPS"
    assert f"*web-v7* `{new_id}` in ap-southeast-2 from a copy of web-v7 ({image_id}, us-east-1) — *pending*" in \
        started.text
    assert "encrypted with KMS key `alias/images`" in started.text
    [final] = updates(harness, started.ts)
    assert f"`{new_id}` in ap-southeast-2" in final.text and "— *available*" in final.text
    assert "Launch" in final.text  # the new image's Launch / Share buttons
    row = harness.ctx.store.query("SELECT * FROM audit WHERE action = 'command.copy'")[-1]
    detail = json.loads(row["detail"])
    assert row["outcome"] == "ok" and detail["copy"] == new_id and detail["image"] == image_id
    assert detail["destination"] == "ap-southeast-2" and detail["kms_key"] == "alias/images"
    watched = harness.ctx.store.query("SELECT * FROM audit WHERE action = 'image.watch'")[-1]
    assert watched["target"] == new_id and watched["outcome"] == "available"

    harness.command(f"copy {image_id} us-east-1 --name web-v7-encrypted --encrypt")  # within the region, renamed
    assert own_images(aws, "us-east-1", "web-v7-encrypted")


def test_a_failed_copy_says_why_and_the_wait_is_bounded(harness, aws):
    harness.ctx.waits = dataclasses.replace(harness.ctx.waits, create_wait_seconds=0.2, create_poll_seconds=0.05)
    image_id = seed.image(aws, "db-v2")
    state = {}

    def pretend(parsed, **_):  # moto's copies are available at once; AWS's take minutes and may fail
        for image in parsed.get("Images", []):
            image["State"] = state["now"]
            image["StateReason"] = {"Code": "Client.InvalidKMSKey.InvalidState", "Message": "The KMS key is disabled"}

    harness.ctx.aws.home.ec2("eu-west-1").meta.events.register("after-call.ec2.DescribeImages", pretend)
    state["now"] = "failed"
    harness.command(f"copy {image_id} eu-west-1 --name db-v2-a")
    final = updates(harness, posts(harness, "is making AMI *db-v2-a*")[-1].ts)[-1]
    assert "AWS reports the image *failed*: The KMS key is disabled" in final.text
    assert harness.ctx.store.query("SELECT * FROM audit WHERE action = 'image.watch'")[-1]["outcome"] == "failed"

    state["now"] = "pending"
    started_at = time.monotonic()
    harness.command(f"copy {image_id} eu-west-1 --name db-v2-b")
    assert time.monotonic() - started_at < 5
    final = updates(harness, posts(harness, "is making AMI *db-v2-b*")[-1].ts)[-1]
    assert "Still pending after the bot's wait" in final.text and "`/ami show" in final.text


MALFORMED = [
    ("copy {image} mars-1", "mars-1 is not an AWS region (e.g. eu-west-1)"),
    ("copy {image} eu-west-9", "eu-west-9 is not an AWS region — did you mean eu-west-3?"),
    ("copy {image}", "`copy` needs a region"),
    ("copy ami-12 eu-west-1", "`ami-12` is not a valid ami-id"),
    ("copy {image} eu-west-1 --kms-key alias/x", "`--kms-key` only goes with `--encrypt`"),
    ("copy {image} eu-west-1 --encrypt --kms-key not-a-key", "`not-a-key` is not a KMS key id"),
    ("copy {image} eu-west-1 --name x", "An image name has 3 to 128 characters"),
    ("copy {image} eu-west-1 --source-region nowhere", "nowhere is not an AWS region"),
    ("copy {image} us-east-1", "is already in us-east-1. Copy it within the region only to encrypt it"),
    ("copy {disabled} eu-west-1", "is disabled; only an available image can be copied"),
    ("copy ami-0123456789abcdef0 eu-west-1", "AMI ami-0123456789abcdef0 not found"),
]


def test_malformed_copies_get_a_clear_message_and_copy_nothing(harness, aws):
    image_id = seed.image(aws, "web-v1")
    disabled = seed.image(aws, "web-v0")
    aws.client("ec2").disable_image(ImageId=disabled)
    for text, message in MALFORMED:
        harness.command(text.format(image=image_id, disabled=disabled))
        assert message in harness.last_reply().text, text
    assert own_images(aws, "eu-west-1") == []
    assert harness.fake.calls_to("chat.postMessage") == []
