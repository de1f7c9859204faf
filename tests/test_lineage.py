"""Lineage (issue 22 §6) through the real app: `/ami lineage` follows amibot's lineage tags, an image's
SourceImageId and GetImageAncestry (feature-detected: "unknown" where the endpoint lacks it) back to the base
image, and lists the known descendants; `/ami show` says what an image was baked from, by what, and how many
were baked from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from bot.aws.clients import Aws
from bot.devtools.bake_emulation import BakeEmulation
from tests.support import seed
from tests.support.harness import AppWithAws
from tests.support.stubs import route

PIPELINE_RUN = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/3"


def family_image(aws, version: str, source: str | None = None, bake: str | None = None, days_old: int = 10) -> str:
    tags = {"Family": "web", "Version": version}
    if source:
        tags["amibot:source-image"] = source
    if bake:
        tags["amibot:bake"] = bake
    return seed.image(aws, f"web-{version}", tags=tags, created=datetime.now(UTC) - timedelta(days=days_old))


@pytest.fixture
def chain(aws):
    base = seed.image(aws, "ubuntu-22.04-base", created=datetime.now(UTC) - timedelta(days=90))
    first = family_image(aws, "1.4.1", base, "instance:i-0123456789abcdef0", days_old=30)
    second = family_image(aws, "1.4.2", first, PIPELINE_RUN, days_old=20)
    third = family_image(aws, "1.4.3", second, "runbook:AWS-UpdateLinuxAmi", days_old=10)
    return base, first, second, third


def test_lineage_follows_the_lineage_tags_to_an_unknown_end_where_the_endpoint_has_no_ancestry(harness, chain):
    base, first, second, third = chain
    harness.command("lineage web-1.4.3")
    text = harness.last_reply().text
    assert text.index(second) < text.index(first) < text.index(base)  # nearest first
    assert "web-1.4.2" in text and "by pipeline web" in text  # web-1.4.2 was baked by the pipeline
    assert "by instance `i-0123456789abcdef0`" in text  # … and web-1.4.1 from a builder instance
    assert "by runbook AWS-UpdateLinuxAmi" in text  # web-1.4.3 itself
    assert "known from its amibot:source-image tag" in text
    # moto has no GetImageAncestry and the base has no tags nor SourceImageId: unknown, never "none"
    assert f"What `{base}` was made from: *unknown*" in text
    assert "this endpoint has no GetImageAncestry" in text
    assert "3 known ancestors, then unknown" in text
    assert "none" not in text.split("Known descendants")[0].lower()


def test_lineage_lists_the_known_descendants_in_tree_order(harness, chain):
    base, first, second, third = chain
    harness.command(f"lineage {first}")
    text = harness.last_reply().text
    descendants = text.split("Known descendants")[1]
    assert "(2)" in descendants
    assert descendants.index(second) < descendants.index(third)
    assert "    • *web-1.4.3*" in descendants  # a grandchild, under its parent
    assert base not in descendants


def test_show_says_what_an_image_was_baked_from_and_how_many_were_baked_from_it(harness, aws, chain):
    base, first, second, third = chain
    harness.command(f"show {third}")
    text = harness.last_reply().text
    created = seed_created(harness, third)
    assert f"baked from *web-1.4.2* (`{second}`) by runbook AWS-UpdateLinuxAmi on {created}" in text

    harness.command("show web-1.4.2")
    text = harness.last_reply().text
    assert f"baked from *web-1.4.1* (`{first}`) by pipeline web" in text
    assert f"1 known descendant baked from it in us-east-1 (`/ami lineage {second}` lists them)" in text

    harness.command(f"show {base}")  # made by hand: no lineage tags, but one image says it was baked from it
    text = harness.last_reply().text
    assert "baked from *" not in text and "1 known descendant baked from it" in text

    harness.command(f"show {seed.image(aws, 'plain')}")  # nothing known either way: no lineage at all
    assert "Lineage" not in harness.last_reply().text


def test_source_image_id_is_followed_when_the_tags_are_absent(aws, fake_slack, tmp_path):
    """On the playground's emulated SSM Automation: its image has no amibot tags, only the SourceImageId AWS
    reports for it."""
    now = [datetime.now(UTC)]
    session = boto3.session.Session(region_name="us-east-1")
    BakeEmulation(clock=lambda: now[0], stage_seconds=1).install(session)
    app = AppWithAws(fake_slack, str(tmp_path / "amibot.db"), {"aws": {"regions": ["us-east-1"]}},
                     aws_layer=Aws(["us-east-1"], session=session)).start()
    try:
        base = seed.image(session, "web-1.4.2", tags={"Family": "web", "Version": "1.4.2"})
        ssm = session.client("ssm", "us-east-1")
        run = ssm.start_automation_execution(DocumentName="AWS-UpdateLinuxAmi",
                                             Parameters={"SourceAmiId": [base]})["AutomationExecutionId"]
        now[0] += timedelta(seconds=30)
        baked = ssm.get_automation_execution(AutomationExecutionId=run)["AutomationExecution"]["Outputs"][
            "createImage.ImageId"][0]

        app.command(f"lineage {baked}")
        text = app.last_reply().text
        assert f"1. *web-1.4.2* (`{base}`)" in text and "known from its SourceImageId" in text

        app.command(f"show {baked}")
        assert f"made from *web-1.4.2* (`{base}`)" in app.last_reply().text

        app.command(f"lineage {base}")
        assert baked in app.last_reply().text.split("Known descendants")[1]
    finally:
        app.stop()


def test_get_image_ancestry_is_used_where_the_endpoint_has_it(harness, aws, monkeypatch):
    image_id = seed.image(aws, "web-2.0.0", tags={"Family": "web", "Version": "2.0.0"})
    parent, root = "ami-0a1b2c3d4e5f60718", "ami-0fedcba9876543210"
    stubbed = Aws(["us-east-1"]).ec2("us-east-1")
    stub = Stubber(stubbed)
    stub.add_response("get_image_ancestry", {"ImageAncestryEntries": [
        {"ImageId": image_id, "SourceImageId": parent, "SourceImageRegion": "us-east-1",
         "CreationDate": datetime(2026, 11, 30, tzinfo=UTC)},
        {"ImageId": parent, "SourceImageId": root, "SourceImageRegion": "us-west-2",
         "CreationDate": datetime(2026, 6, 1, tzinfo=UTC)},
        {"ImageId": root, "ImageOwnerAlias": "amazon", "CreationDate": datetime(2026, 1, 5, tzinfo=UTC)},
    ]}, {"ImageId": image_id})
    stub.activate()
    route(monkeypatch, harness, ec2_operations=["get_image_ancestry"], ec2_stubbed=stubbed)

    harness.command(f"lineage {image_id}")
    text = harness.last_reply().text
    stub.assert_no_pending_responses()
    assert f"1. `{parent}` (not readable here) · us-east-1 · created 2026-06-01 · known from GetImageAncestry" in text
    assert f"2. `{root}` (not readable here) · us-west-2 · created 2026-01-05 · owner amazon" in text
    assert f"`{root}` is an AWS base image: the chain ends there." in text
    assert "unknown" not in text


def seed_created(harness, image_id: str) -> str:
    """The day moto dates the image (seed.backdate set it)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    created = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].amis[image_id].creation_date
    return created.strftime("%Y-%m-%d")
