"""“Unknown” is never “none” (issue 19 §2), through the real app over HTTP with moto behind: an answer AWS sends
is altered on its way into botocore (a `before-parse` hook on the app's own client rewrites the body, as a real
endpoint could have sent it) or refused before it is sent (a `before-call` hook, as tests/support/seed.py refuses
AssumeRole). Each case reproduces what an adversarial run against `amibot serve` found:

- an item a reference source cannot read makes that source unknown, which refuses without `--force`;
- headlines never claim more than was checked: what could not be checked comes first;
- one malformed number is that item's size unknown, not the region's digest; repeated items count once;
- errors say what happened: an AWS 500 is an internal error, an empty or truncated body an unreadable answer.
"""

from __future__ import annotations

import re

import pytest
from botocore.awsrequest import AWSResponse

from bot.services import approvals
from tests.support import seed
from tests.support.approvals import POLICY
from tests.support.harness import REGIONS, AppWithAws
from tests.support.home import open_home, view_text
from tests.support.org import STAGING_LABEL, digest_post, registered
from tests.support.stubs import StubbedImages, good_item

ONE_REGION = {"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS"]},
              "approvals": {"approvers": ["U0LEAD"]}, "digest": {"stale_after_days": 90, "keep_latest": 0}}


@pytest.fixture
def policy_data():
    return POLICY


def rewrite(client, operation: str, change) -> None:
    """Let `change(body: bytes) -> bytes` alter every answer of `operation` the client receives, before botocore
    parses it."""
    service = client.meta.service_model.service_id.hyphenize()

    def hook(response_dict, **_):
        response_dict["body"] = change(response_dict["body"])

    client.meta.events.register(f"before-parse.{service}.{operation}", hook)


def answer(client, operation: str, status: int, code: str, message: str) -> None:
    """Make `operation` fail with AWS's error `code` and HTTP `status` before it is sent (no retry: as if every
    attempt had failed so)."""
    service = client.meta.service_model.service_id.hyphenize()

    def hook(**_):
        return (AWSResponse("https://ec2.amazonaws.com/", status, {}, None),
                {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}})

    client.meta.events.register(f"before-call.{service}.{operation}", hook)


def without(tag: str):
    return lambda body: re.sub(rf"<{tag}>[^<]*</{tag}>".encode(), b"", body)


def refused(harness, image_id) -> str:
    harness.command(f"deregister {image_id}", user="U0OPS")
    return harness.last_reply().text


# --- an item a reference source cannot read: that source is unknown ------------------------------------------

def test_an_instance_described_without_its_image_makes_instances_unknown_and_refuses(harness, aws):
    image_id = seed.image(aws, "web-1")
    seed.instance(aws, image_id=image_id, name="web-a")
    rewrite(harness.ctx.aws.home.ec2("us-east-1"), "DescribeInstances", without("imageId"))
    text = refused(harness, image_id)
    assert "Could not be checked, so it may be in use" in text and "--force" in text
    assert "instances:" in text
    assert approvals.pending(harness.ctx) == []
    assert not [call for call in harness.fake.calls_to("chat.postMessage") if "Deregister" in call.text]


def test_a_template_version_without_its_number_makes_its_images_templates_unknown(harness, aws):
    image_id = seed.image(aws, "api-1")
    other = seed.image(aws, "batch-1")
    seed.launch_template(aws, "api-lt", image_id)
    rewrite(harness.ctx.aws.home.ec2("us-east-1"), "DescribeLaunchTemplateVersions", without("versionNumber"))
    text = refused(harness, image_id)
    assert "Could not be checked, so it may be in use" in text
    assert "launch templates:" in text and "--force" in text
    assert approvals.pending(harness.ctx) == []
    # the version names its image: only that image's templates are unknown, not every image's
    harness.command(f"deregister {other}", user="U0OPS")
    assert len(approvals.pending(harness.ctx)) == 1


# --- headlines: what could not be checked, first ---------------------------------------------------------------

def test_an_all_clean_digest_says_first_which_account_was_not_checked(make_harness, aws):
    prod = seed.account_session(aws, seed.PROD)
    registered(aws, seed.BAKE, "bake-v1", 5)
    registered(prod, seed.PROD, "web-v1", 5)
    harness = make_harness(seed.three_accounts(REGIONS, digest={"stale_after_days": 90, "keep_latest": 0}))
    seed.deny_assume_role(harness.ctx.aws.home._session, seed.STAGING)
    harness.command("digest", channel="C0OPS")
    post = digest_post(harness)
    first = post.params["blocks"][0]["text"]["text"]
    assert STAGING_LABEL in first and "not checked" in first.lower()
    assert "clean" not in first.lower().split(STAGING_LABEL.lower())[0]  # nothing claimed before the warning
    assert "all clean" not in post.text.split(STAGING_LABEL)[0].lower()  # the notification text too


def test_with_the_only_region_throttled_list_drift_and_home_say_it_was_not_checked(make_harness, aws):
    seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"})
    harness = make_harness(ONE_REGION)
    answer(harness.ctx.aws.home.ec2("us-east-1"), "DescribeImages", 400, "RequestLimitExceeded",
           "Request limit exceeded.")
    harness.command("list", user="U0OPS")
    text = harness.last_reply().text
    assert "No AMIs" not in text
    assert text.index("us-east-1") < text.index("throttling")
    assert "could not" in text.lower().split("throttling")[0] or "not checked" in text.lower().split("throttling")[0]

    harness.command("drift", user="U0OPS")
    text = harness.last_reply().text
    assert "0 instances behind" not in text and "Every instance" not in text and "No instance runs" not in text
    assert "not checked" in text.lower().split("\n")[0] and "us-east-1" in text.split("\n")[0]

    published = open_home(harness, "U0LEAD")
    fleet = view_text(published[-1])
    assert "No image families" not in fleet
    assert "us-east-1" in fleet and "throttling" in fleet
    assert fleet.index("throttling") < fleet.index("Waiting for you")


# --- one malformed number, repeated items --------------------------------------------------------------------

def test_a_non_numeric_volume_size_is_that_snapshots_size_unknown_not_the_regions(make_harness, aws):
    ec2 = aws.client("ec2")
    image_id = ec2.register_image(Name="gone-v1", RootDeviceName="/dev/sda1")["ImageId"]
    [snapshot_id] = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image_id])["Images"][0]
                     ["BlockDeviceMappings"] if "Ebs" in m]
    ec2.deregister_image(ImageId=image_id)  # its snapshot is now orphaned
    stale = registered(aws, seed.BAKE, "old-v1", 300)
    harness = make_harness(ONE_REGION)
    nonsense = lambda body: re.sub(rb"<volumeSize>\d+</volumeSize>", b"<volumeSize>15 GiB</volumeSize>", body)  # noqa: E731
    rewrite(harness.ctx.aws.home.ec2("us-east-1"), "DescribeSnapshots", nonsense)
    rewrite(harness.ctx.aws.home.ec2("us-east-1"), "DescribeImages", nonsense)
    harness.command("digest", channel="C0OPS")
    post = digest_post(harness)
    assert "not checked" not in post.text and "could not be checked" not in post.text
    orphan_line = next(line for line in post.text.splitlines() if snapshot_id in line)
    assert "size unknown" in orphan_line and " 0 GiB" not in orphan_line
    stale_line = next(line for line in post.text.splitlines() if stale in line)
    assert "size unknown" in stale_line and " 0 GiB" not in stale_line


def test_a_listing_whose_pages_repeat_the_same_images_counts_each_once(stubbed):
    running, layer = stubbed
    items = [good_item(f"ami-{number:017x}", f"web-{number}") for number in range(30)]
    for page in range(4):  # four pages, each the same 30 images (an endpoint's paging going round)
        layer.stub.add_response("describe_images", {"Images": items, **({"NextToken": f"t{page}"} if page < 3 else {})})
    for _ in range(20):
        layer.stub.add_response("describe_image_attribute", {"LaunchPermissions": []})
    running.command("list")
    layer.stub.assert_no_pending_responses()
    reply = running.last_reply().text
    assert "30 AMIs" in reply and "120 AMIs" not in reply
    assert "…and 10 more" in reply


# --- errors say what happened ----------------------------------------------------------------------------------

def test_an_aws_500_is_an_internal_error_and_counts_as_unknown(make_harness, aws):
    seed.image(aws, "web-1")
    harness = make_harness(ONE_REGION)
    answer(harness.ctx.aws.home.ec2("us-east-1"), "DescribeImages", 500, "InternalError",
           "An internal error has occurred")
    harness.command("list", user="U0OPS")
    text = harness.last_reply().text
    assert "AWS had an internal error" in text and "refused" not in text
    assert "No AMIs" not in text


def test_an_empty_or_truncated_answer_is_unreadable_and_counts_as_unknown(harness, aws):
    image_id = seed.image(aws, "web-1")
    ec2 = harness.ctx.aws.home.ec2("us-east-1")
    rewrite(ec2, "DescribeInstances", lambda body: b"")
    text = refused(harness, image_id)
    assert "instances: AWS sent an unreadable answer" in text and "does not support" not in text
    assert approvals.pending(harness.ctx) == []
    harness.ctx.aws.home.release("us-east-1")  # a new client, without the hook
    rewrite(harness.ctx.aws.home.ec2("us-east-1"), "DescribeInstances", lambda body: body[:len(body) // 2])
    text = refused(harness, image_id)
    assert "instances: AWS sent an unreadable answer" in text and "does not support" not in text
    assert approvals.pending(harness.ctx) == []


@pytest.fixture
def stubbed(aws, fake_slack, tmp_path):
    """The app with DescribeImages answered by botocore's Stubber (tests/test_robust_data.py), moto for the rest."""
    layer = StubbedImages(["us-east-1"])
    running = AppWithAws(fake_slack, str(tmp_path / "amibot.db"),
                         {"aws": {"regions": ["us-east-1"]}}, aws_layer=layer).start()
    yield running, layer
    running.stop()
    layer.stub.deactivate()
