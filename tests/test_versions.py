"""`/ami versions`, `promote` and `rollback` end to end, and the `current_image` helper `/ami launch` uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.services.versions import current_image
from tests.support import seed

NOW = datetime.now(UTC)
PARAMETER = "/amibot/web/current"


@pytest.fixture
def policy_data():
    return {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "access": {"operators": ["U0OPS"]}}


def tags_of(aws, image_id, region="us-east-1"):
    image = aws.client("ec2", region).describe_images(ImageIds=[image_id])["Images"][0]
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


def parameter(aws, region="us-east-1", name=PARAMETER):
    return aws.client("ssm", region).get_parameter(Name=name)["Parameter"]


def rows_of(text, *image_ids):
    """The versions message's rows for these images, in the order shown."""
    return sorted(image_ids, key=text.index)


def family(aws, versions, region="us-east-1", name="web", days_apart=10):
    """Images of one family created days apart, oldest first; versions: tag values or None."""
    source = seed.instance(aws, region)
    ids = []
    for number, version in enumerate(versions):
        tags = {"Family": name} | ({"Version": version} if version else {})
        ids.append(seed.image(aws, f"{name}-build-{number}", region, tags=tags, from_instance=source,
                              created=NOW - timedelta(days=days_apart * (len(versions) - number))))
    return ids


# --- versions -----------------------------------------------------------------------------------

def test_versions_orders_by_version_tag_when_every_image_has_one(harness, aws):
    # created in this order, but 1.10 is newer than 1.9 and 2.0-rc1 comes before 2.0
    v110, v19, v20, v20rc = family(aws, ["1.10", "1.9", "2.0", "2.0-rc1"])
    harness.command("versions web")
    text = harness.last_reply().text
    assert "Family *web*: 4 versions, newest first" in text
    assert rows_of(text, v110, v19, v20, v20rc) == [v20, v20rc, v110, v19]
    assert "*2.0-rc1*" in text and "*1.10*" in text
    assert "No version is promoted" in text


def test_versions_without_tags_uses_creation_order_and_names(harness, aws):
    ec2 = aws.client("ec2")
    source = seed.instance(aws)
    oldest = seed.image(aws, "api-2024-01-05", from_instance=source, created=NOW - timedelta(days=300))
    newest = seed.image(aws, "api-2024-03-01", from_instance=source, created=NOW - timedelta(days=2))
    middle = seed.image(aws, "api-2024-02-01", from_instance=source, created=NOW - timedelta(days=100))
    seed.image(aws, "other-2024-02-01", from_instance=source)
    ec2.disable_image(ImageId=oldest)
    harness.command("versions api")
    text = harness.last_reply().text
    assert rows_of(text, oldest, middle, newest) == [newest, middle, oldest]
    assert f"*#3* `{newest}`" in text and f"*#1* `{oldest}`" in text
    assert "disabled" in text.split(oldest)[1].split("\n")[0]
    assert "other-" not in text and "3 versions" in text


def test_versions_with_some_tags_missing_falls_back_to_creation_order_and_unknown_family(harness, aws):
    first, second, third = family(aws, ["9", None, "1"])
    harness.command("versions web")
    text = harness.last_reply().text
    assert rows_of(text, first, second, third) == [third, second, first]
    assert f"*#2* `{second}`" in text and f"*9* `{first}`" in text
    harness.command("versions nosuch")
    assert "No images of family “nosuch” in us-east-1, eu-west-1" in harness.last_reply().text


def test_versions_shows_what_uses_each_and_current_and_previous(harness, aws):
    old, new = family(aws, ["1", "2"])
    seed.instance(aws, image_id=old, name="legacy")
    seed.launch_template(aws, "web-lt", new)
    harness.command(f"promote {old}")
    harness.command(f"promote {new}")
    harness.command("versions web")
    text = harness.last_reply().text
    new_row = text.split(new)[1].split("\n")[0]
    old_row = text.split(old)[1].split("\n")[0]
    assert "*current*" in new_row and "template web-lt" in new_row
    assert "previous" in old_row and "1 instance" in old_row and "current" not in old_row
    assert "resolve:ssm:/amibot/web/current" in text


# --- promote ------------------------------------------------------------------------------------

def test_promote_tags_the_image_and_writes_the_parameter_then_moves_both(harness, aws):
    old, new = family(aws, ["1", "2"])
    harness.command(f"promote {old}")
    post = harness.fake.calls_to("chat.postMessage")[-1]
    assert f"promoted `{old}`" in post.text and "its first promoted version" in post.text
    assert tags_of(aws, old)["amibot:current"] == "true"
    stored = parameter(aws)
    assert stored["Value"] == old and stored["DataType"] == "aws:ec2:image"

    harness.command(f"promote {new}")
    post = harness.fake.calls_to("chat.postMessage")[-1]
    assert f"promoted `{new}`" in post.text and f"was `{old}`" in post.text and "/ami rollback web" in post.text
    assert tags_of(aws, new)["amibot:current"] == "true" and "amibot:current" not in tags_of(aws, old)
    assert parameter(aws)["Value"] == new
    history = harness.ctx.store.query("SELECT family, region, image_id, promoted_by, previous_image_id "
                                      "FROM promotions ORDER BY id")
    assert history == [{"family": "web", "region": "us-east-1", "image_id": old, "promoted_by": "U0OPS",
                        "previous_image_id": None},
                       {"family": "web", "region": "us-east-1", "image_id": new, "promoted_by": "U0OPS",
                        "previous_image_id": old}]
    audit = harness.ctx.store.query("SELECT action, target, outcome FROM audit WHERE action = 'command.promote'")
    assert [(row["target"], row["outcome"]) for row in audit] == [(old, "ok"), (new, "ok")]


def test_promote_refuses_what_cannot_be_current(harness, aws):
    image, = family(aws, ["1"])
    harness.command(f"promote {image}")
    harness.command(f"promote {image}")
    assert "already is the current version of web in us-east-1" in harness.last_reply().text
    other, = family(aws, ["2"], name="db")
    aws.client("ec2").disable_image(ImageId=other)
    harness.command(f"promote {other}")
    assert f"{other} is disabled; only an available image can be promoted" in harness.last_reply().text
    harness.command("promote ami-0123456789abcdef0")
    assert "AMI ami-0123456789abcdef0 not found" in harness.last_reply().text
    harness.command(f"promote {image}", user="U0RANDOM")
    assert "Only amibot operators" in harness.last_reply().text


# --- rollback -----------------------------------------------------------------------------------

def test_rollback_chain_walks_back_through_promotions_and_names_instances_on_the_newer(harness, aws):
    first, second, third = family(aws, ["1", "2", "3"])
    for image in (first, second, third):
        harness.command(f"promote {image}")
    running = seed.instance(aws, image_id=third, name="canary")

    harness.command("rollback web")
    post = harness.fake.calls_to("chat.postMessage")[-1]
    assert f"current is `{second}`" in post.text and f"instead of `{third}`" in post.text
    assert "1 instance(s) still run the newer version" in post.text and running in post.text and "canary" in post.text
    assert parameter(aws)["Value"] == second
    assert tags_of(aws, second)["amibot:current"] == "true" and "amibot:current" not in tags_of(aws, third)

    harness.command("rollback web")
    post = harness.fake.calls_to("chat.postMessage")[-1]
    assert f"current is `{first}`" in post.text and f"No instances run `{second}`" in post.text
    assert parameter(aws)["Value"] == first

    harness.command("rollback web")
    assert f"{first} is the first promoted version of web in us-east-1; there is nothing to roll back to" in \
        harness.last_reply().text
    assert parameter(aws)["Value"] == first

    # promoting again after rollbacks: rollback returns to what was current before that promotion
    harness.command(f"promote {third}")
    harness.command("rollback web")
    assert parameter(aws)["Value"] == first
    audit = harness.ctx.store.query("SELECT outcome FROM audit WHERE action = 'command.rollback' ORDER BY id")
    assert [row["outcome"][:5] for row in audit] == ["ok", "ok", "error", "ok"]


def test_rollback_refuses_when_nothing_is_promoted_or_the_previous_is_disabled(harness, aws):
    harness.command("rollback web")
    assert "Nothing of family “web” has been promoted" in harness.last_reply().text
    old, new = family(aws, ["1", "2"])
    harness.command(f"promote {old}")
    harness.command(f"promote {new}")
    aws.client("ec2").disable_image(ImageId=old)
    harness.command("rollback web")
    assert f"The previous version {old} of web is disabled; `/ami enable {old}` first" in harness.last_reply().text
    assert parameter(aws)["Value"] == new
    aws.client("ec2").enable_image(ImageId=old)
    harness.command("rollback web")  # the refused rollback left the history as it was
    assert parameter(aws)["Value"] == old


def test_rollback_asks_for_a_region_when_promoted_in_several(harness, aws):
    east, = family(aws, ["1"])
    east2, = family(aws, ["2"])
    west, = family(aws, ["1"], region="eu-west-1")
    west2, = family(aws, ["2"], region="eu-west-1")
    for image in (east, east2, west, west2):
        harness.command(f"promote {image}")
    assert parameter(aws, "eu-west-1")["Value"] == west2 and parameter(aws)["Value"] == east2
    harness.command("rollback web")
    assert "web is promoted in eu-west-1, us-east-1; say which with `--region`" in harness.last_reply().text
    harness.command("rollback web --region eu-west-1")
    assert parameter(aws, "eu-west-1")["Value"] == west and parameter(aws)["Value"] == east2


# --- current_image (used by `/ami launch <family>`) ---------------------------------------------

def test_current_image_prefers_the_promoted_then_the_newest_available(harness, aws):
    ctx = harness.ctx
    old, middle, new = family(aws, ["1", "2", "3"])
    assert current_image(ctx, "web").id == new
    aws.client("ec2").disable_image(ImageId=new)
    assert current_image(ctx, "web").id == middle
    harness.command(f"promote {old}")
    assert current_image(ctx, "web").id == old
    assert current_image(ctx, "web", "eu-west-1") is None
    west, = family(aws, ["9"], region="eu-west-1")
    assert current_image(ctx, "web", "eu-west-1").id == west
    assert current_image(ctx, "web").id == old  # the promoted one wins over a newer one elsewhere
    assert current_image(ctx, "nosuch") is None
