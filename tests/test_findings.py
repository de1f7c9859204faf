"""Amazon Inspector findings for images: `/ami show` counts and worst titles, a column in `/ami versions`,
and `/ami promote` refused for a critical image without --force. moto lacks GetImageFindings, so the
one-attempt EC2 client amibot uses for it is stubbed (response shapes from AWS's API reference)."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from tests.support import seed
from tests.support.probes import route_probes

POLICY = {"aws": {"regions": ["us-east-1"]}}


@pytest.fixture
def policy_data():
    return POLICY


@pytest.fixture
def probe(harness, monkeypatch):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    route_probes(harness, monkeypatch, ec2=ec2)
    with Stubber(ec2) as stub:
        yield stub
        stub.assert_no_pending_responses()


def finding(title, severity, score=None, fix=True):
    item = {"Title": title, "SeverityLabel": severity, "FixAvailable": fix}
    if score is not None:
        item["Score"] = score
    return item


CRITICAL_PAGE = [finding("CVE-2024-6387 - openssh", "CRITICAL", 9.8), finding("CVE-2023-38545 - curl", "HIGH", 8.1),
                 finding("CVE-2024-0001 - zlib", "MEDIUM", 5.0), finding("CVE-2024-0002 - bash", "HIGH", 7.0),
                 finding("CVE-2024-0003 - glibc", "CRITICAL", 9.1, fix=False)]


def test_show_counts_findings_by_severity_and_lists_the_worst_across_pages(harness, aws, probe):
    image_id = seed.image(aws, "web-1")
    probe.add_response("get_image_findings", {"ImageFindings": CRITICAL_PAGE[:3], "NextToken": "p2"},
                       {"ImageId": image_id})
    probe.add_response("get_image_findings", {"ImageFindings": CRITICAL_PAGE[3:] + [{"Score": 3.0}]},
                       {"ImageId": image_id, "NextToken": "p2"})
    harness.command(f"show {image_id}")
    text = harness.last_reply().text
    assert "*Vulnerabilities* (Amazon Inspector): 2 critical · 2 high · 1 medium · 1 untriaged" in text
    order = [text.index(title) for title in ("openssh", "glibc", "curl", "bash")]
    assert order == sorted(order)  # critical first, then by score
    assert "zlib" not in text  # only critical and high titles are listed
    assert "CVE-2024-6387 - openssh (9.8) · fix available" in text


def test_show_without_inspector_says_unknown_not_clean(harness, aws):
    image_id = seed.image(aws, "web-2")
    harness.command(f"show {image_id}")
    text = harness.last_reply().text
    assert "Vulnerabilities: unknown — this AWS endpoint does not support ec2:GetImageFindings" in text
    assert "no findings" not in text


class FindingsByImage:
    """Answers GetImageFindings per image id on a real client (versions asks for several images in parallel,
    which a Stubber's fixed order cannot follow)."""

    def __init__(self, client, answers):
        self.answers, self.local = answers, threading.local()
        client.meta.events.register("before-parameter-build.ec2.GetImageFindings", self.remember)
        client.meta.events.register("before-call.ec2.GetImageFindings", self.answer)

    def remember(self, params, **_):
        self.local.image_id = params["ImageId"]

    def answer(self, **_):
        return AWSResponse("https://ec2", 200, {}, None), {"ImageFindings": self.answers[self.local.image_id]}


def test_versions_has_a_findings_count_per_version(harness, aws, monkeypatch):
    source = seed.instance(aws)
    old = seed.image(aws, "web-1.0", tags={"Family": "web", "Version": "1.0"}, from_instance=source)
    new = seed.image(aws, "web-1.1", tags={"Family": "web", "Version": "1.1"}, from_instance=source)
    probe = boto3.client("ec2", region_name="us-east-1")
    FindingsByImage(probe, {new: CRITICAL_PAGE[:2], old: []})
    route_probes(harness, monkeypatch, ec2=probe)
    harness.command("versions web")
    text = harness.last_reply().text
    rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("*1.")}
    assert rows[new].endswith("1 critical · 1 high") and rows[old].endswith("no findings reported")


def test_promote_of_an_image_with_critical_findings_needs_force_and_says_why(harness, aws, probe):
    image_id = seed.image(aws, "web-3", tags={"Family": "web"})
    probe.add_response("get_image_findings", {"ImageFindings": CRITICAL_PAGE}, {"ImageId": image_id})
    harness.command(f"promote {image_id}")
    reply = harness.last_reply().text
    assert f"{image_id} has 2 critical vulnerability finding(s)" in reply and "openssh" in reply
    assert "`--force`" in reply
    tags = aws.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [image_id]}])["Tags"]
    assert {"Key": "amibot:current", "Value": "true"} not in [{"Key": t["Key"], "Value": t["Value"]} for t in tags]
    row = harness.ctx.store.one("SELECT outcome FROM audit WHERE action = 'command.promote'")
    assert row["outcome"] == "refused: 2 critical finding(s)"

    probe.add_response("get_image_findings", {"ImageFindings": CRITICAL_PAGE}, {"ImageId": image_id})
    probe.add_response("get_allowed_images_settings", {"State": "disabled"}, {})
    harness.command(f"promote {image_id} --force")
    posted = harness.fake.calls_to("chat.postMessage")[-1].text
    assert "Promoted with 2 critical finding(s) (--force)" in posted
    parameter = aws.client("ssm").get_parameter(Name="/amibot/web/current")["Parameter"]
    assert parameter["Value"] == image_id
