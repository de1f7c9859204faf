"""`/ami drift` and the drift lines after promote/rollback, through the real app over HTTP.

moto: instances on older versions and on a deregistered image (DescribeInstances + DescribeImages, since moto
lacks DescribeInstanceImageMetadata). The metadata path — which names an instance's image even after it is
gone — is covered with botocore's Stubber and a response shaped as AWS's API reference documents it.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tests.support import seed
from tests.support.emulation import REGION, EmulatedHarness
from tests.support.home import open_home, view_text
from tests.support.probes import route_probes
from tests.support.seed import family

POLICY = {"aws": {"regions": ["us-east-1"]}}


@pytest.fixture
def policy_data():
    return POLICY


def test_drift_groups_instances_by_family_and_image_with_how_far_behind(harness, aws):
    v1, v2, v3, v4 = family(aws, ["1.1.0", "1.2.0", "1.3.0", "1.4.0"])
    harness.command(f"promote {v4}")
    old = [seed.instance(aws, image_id=v1) for _ in range(3)]
    current = seed.instance(aws, image_id=v4)
    gone_image = seed.image(aws, "web-1.0.0", tags={"Family": "web", "Version": "1.0.0"})
    on_gone = seed.instance(aws, image_id=gone_image)
    # retired through amibot (in use, so --force): its record keeps the name, hence the family
    harness.command(f"deregister {gone_image} --force")
    request_id = harness.ctx.store.one("SELECT id FROM requests WHERE kind = 'deregister'")["id"]
    harness.click("approval.approve", request_id, user="U0LEAD")
    assert aws.client("ec2").describe_images(ImageIds=[gone_image])["Images"] == []
    harness.command("drift web")
    text = harness.last_reply().text
    assert "Drift of web: 4 instances behind" in text
    assert "*web* (us-east-1): 1 instance on current web-1.4.0" in text
    assert f"3 instances on *web-1.1.0* `{v1}` (3 versions behind current web-1.4.0, 90 days older)" in text
    assert f"1 instance on a *deregistered* image *web-1.0.0* `{gone_image}`" in text
    assert "it may only be no longer visible" in text  # the fallback path says what it cannot know
    assert old and current and on_gone and v2 and v3


def test_instances_on_a_gone_image_amibot_never_knew_are_counted_apart(harness, aws):
    (v1,) = family(aws, ["1"])
    stranger = seed.image(aws, "built-elsewhere-7")
    seed.instance(aws, image_id=stranger)
    seed.instance(aws, image_id=v1)
    aws.client("ec2").deregister_image(ImageId=stranger)  # gone, and not by amibot: nothing tells its family
    harness.command("drift")
    text = harness.last_reply().text
    assert "1 instance runs an image whose family amibot cannot tell" in text
    assert "Every instance runs its family's current version." in text


def test_promote_and_rollback_end_with_the_drift_they_create(harness, aws):
    v1, v2 = family(aws, ["1", "2"])
    harness.command(f"promote {v1}")
    for _ in range(2):
        seed.instance(aws, image_id=v1)
    harness.command(f"promote {v2}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "After this promotion, 2 instances of web in us-east-1 run another version (2 on web-1)" in posted
    harness.command("rollback web")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "After this rollback, every instance of web in us-east-1 runs the current version." in posted


def in_group(aws, instance_id: str, group: str) -> str:
    """Tag an instance as an Auto Scaling group's, as AWS does for the instances a group launches."""
    aws.client("ec2").create_tags(Resources=[instance_id], Tags=[{"Key": "aws:autoscaling:groupName",
                                                                  "Value": group}])
    return instance_id


def test_promote_and_rollback_say_to_roll_it_out_only_when_an_auto_scaling_group_runs_another_version(harness, aws):
    v1, v2, v3 = family(aws, ["1", "2", "3"])
    harness.command(f"promote {v1}")
    loose = seed.instance(aws, image_id=v1)  # not in a group: nothing a rollout would move
    harness.command(f"promote {v2}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "After this promotion, 1 instance of web in us-east-1 run another version" in posted
    assert "roll it out" not in posted
    in_group(aws, seed.instance(aws, image_id=v1), "web-asg")
    harness.command(f"promote {v3}")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "2 instances of web in us-east-1 run another version" in posted
    assert "roll it out: `/ami rollout web` (1 Auto Scaling group: web-asg)" in posted, posted
    aws.client("ec2").terminate_instances(InstanceIds=[loose])
    in_group(aws, seed.instance(aws, image_id=v3), "web-asg")  # a group's instance on the version rolled back from
    harness.command("rollback web")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "After this rollback" in posted and "roll it out: `/ami rollout web`" in posted, posted


def test_instance_image_metadata_names_a_deregistered_image_and_its_family(harness, aws, monkeypatch):
    v1, v2 = family(aws, ["1.0", "2.0"], name="api")
    probe = boto3.client("ec2", region_name="us-east-1")
    route_probes(harness, monkeypatch, ec2=probe)
    state = {"Code": 16, "Name": "running"}
    with Stubber(probe) as stub:
        stub.add_response("describe_instance_image_metadata", {"InstanceImageMetadata": [
            {"InstanceId": "i-0aaaaaaaaaaaaaaa1", "State": state,
             "ImageMetadata": {"ImageId": v2, "Name": "api-2.0", "State": "available"}},
            {"InstanceId": "i-0aaaaaaaaaaaaaaa2", "State": state,
             "ImageMetadata": {"ImageId": "ami-0ffffffffffffff01", "Name": "api-0.9", "State": "deregistered",
                               "OwnerId": "123456789012"}},
            {"InstanceId": "i-0aaaaaaaaaaaaaaa3", "State": state,
             "ImageMetadata": {"ImageId": v1, "Name": "api-1.0", "State": "available"}},
            {"InstanceId": "i-0aaaaaaaaaaaaaaa4", "State": state},  # no image metadata: counted apart
        ]}, {"Filters": [{"Name": "instance-state-name",
                          "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]}]})
        harness.command("drift")
        stub.assert_no_pending_responses()
    text = harness.last_reply().text
    assert "*api* (us-east-1): 1 instance on current api-2.0" in text
    assert "1 instance on a *deregistered* image *api-0.9* `ami-0ffffffffffffff01`" in text
    assert f"1 instance on *api-1.0* `{v1}` (1 version behind current api-2.0" in text
    assert "1 instance runs an image whose family amibot cannot tell" in text
    assert "From EC2 instance image metadata" in text


def _posted_text(call) -> str:
    return "\n".join((block.get("text") or {}).get("text", "") for block in call.params.get("blocks", []))


def test_the_digest_drift_and_the_home_tab_count_the_same_drift(aws, fake_slack, tmp_path):
    """One truth: on a fleet with an instance on a deregistered image (its family still known from the instance's
    image metadata) and one on an image of no known family, the three say the same number."""
    app = EmulatedHarness(fake_slack, str(tmp_path / "amibot.db"),
                          {"aws": {"regions": [REGION]}, "digest": {"channel": "C0OPS"}}).start()
    try:
        ec2 = app.session.client("ec2", REGION)
        old, current = family(app.session, ["1.0", "2.0"])
        gone = seed.image(app.session, "web-0.9", tags={"Family": "web", "Version": "0.9"})
        for image_id in (current, old, gone):
            seed.instance(app.session, image_id=image_id)
        seed.instance_on_shared_image(app.session, "ami-0123456789abcdef0")  # an image nobody can name
        ec2.deregister_image(ImageId=gone)  # not through amibot: only the instance's image metadata names it
        app.command(f"promote {current}")

        app.command("drift")
        assert "Drift: 2 instances behind" in app.last_reply().text
        assert "1 instance runs an image whose family amibot cannot tell" in app.last_reply().text
        app.command("digest")
        digest = [call for call in app.fake.calls_to("chat.postMessage") if "Drift:" in _posted_text(call)]
        assert digest and "*Drift:* 2 instance(s) not on their family's current version" in _posted_text(digest[-1])
        home = view_text(open_home(app, "U0OPS")[-1])
        assert "1 of 3 instances on current, :warning: 2 on older" in home
        assert "1 instance(s) on images of unknown family" in home
    finally:
        app.stop()


def _table_rows(reply) -> list[list[str]]:
    tables = [block for block in reply.params["blocks"] if block["type"] == "table"]
    assert len(tables) == 1, "a message holds one table at most"
    return [[cell["text"] for cell in row] for row in tables[0]["rows"]]


def test_drift_names_the_instances_behind_the_worst_first_then_and_n_more(harness, aws):
    v1, v2, v3 = family(aws, ["1", "2", "3"])
    harness.command(f"promote {v3}")
    ec2 = aws.client("ec2")
    worst = seed.instance(aws, image_id=v1, name="<!channel> web-a")
    ec2.create_tags(Resources=[worst], Tags=[{"Key": "aws:autoscaling:groupName", "Value": "web-asg"}])
    one_behind = [seed.instance(aws, image_id=v2, name=f"web-{n}") for n in range(11)]
    seed.instance(aws, image_id=v3)
    harness.command("drift")
    reply = harness.last_reply()
    rows = _table_rows(reply)
    assert rows[0] == ["Instance", "Name", "Auto Scaling group", "Region", "Image", "Behind"]
    assert rows[1] == [worst, "&lt;!channel&gt; web-a", "web-asg", "us-east-1", "web-1", "2 versions behind"]
    assert len(rows) == 1 + 10 and {row[0] for row in rows[2:]} <= set(one_behind)
    assert all(row[5] == "1 version behind" for row in rows[2:])
    assert "…and 2 more instances behind." in reply.text
    assert "the worst first (most versions behind" in reply.text
    assert "<!channel>" not in reply.text
