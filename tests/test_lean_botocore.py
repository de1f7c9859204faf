"""bot/aws/lean_botocore.py: the process-wide botocore adjustments keep what clients send and what callers receive,
and use less memory and time: plain-dict models without documentation, one model per service however many
threads make their first clients at once, one copy of the endpoint data for every account, and timestamps read
fast, with one AWS cannot have meant kept as text (so one bad snapshot does not fail a page of hundreds).

A DescribeSnapshots answer is handed to the real client's parser through botocore's before-send event (moto
cannot send a malformed timestamp); everything else is moto."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import UTC, datetime

import boto3
import botocore.session
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from bot.aws.clients import Aws, assumed_session
from bot.aws.lean_botocore import _SHARED_MODELS, lighten
from bot.core.accounts import Account
from bot.services.inventory import describe_ami_snapshots
from tests.support.seed import PROD, STAGING, role_arn

REGION = "us-east-1"
OWNER = "123456789012"

SNAPSHOTS_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
  <snapshotSet>
    <item>
      <snapshotId>snap-0000000000000good</snapshotId><volumeId>vol-1</volumeId><status>completed</status>
      <startTime>2024-05-01T10:00:00.000Z</startTime><progress>100%</progress><ownerId>{OWNER}</ownerId>
      <volumeSize>8</volumeSize>
      <description>Created by CreateImage(i-1) for ami-00000000000000001</description>
    </item>
    <item>
      <snapshotId>snap-00000000000000bad</snapshotId><volumeId>vol-2</volumeId><status>completed</status>
      <startTime>2020-09-24T13:31:456.000Z</startTime><progress>100%</progress><ownerId>{OWNER}</ownerId>
      <volumeSize>20</volumeSize>
      <description>Created by CreateImage(i-2) for ami-00000000000000002</description>
    </item>
    <item>
      <snapshotId>snap-000000000000epoch</snapshotId><volumeId>vol-3</volumeId><status>completed</status>
      <startTime>Wed, 01 May 2024 10:00:00 GMT</startTime><progress>100%</progress><ownerId>{OWNER}</ownerId>
      <volumeSize>30</volumeSize>
      <description>Created by CreateImage(i-3) for ami-00000000000000003</description>
    </item>
  </snapshotSet>
</DescribeSnapshotsResponse>"""


def answer_with(client, body: str) -> None:
    """Every request of `client` gets this HTTP 200 body, parsed by the client's own parser."""

    def respond(request, **_kwargs):
        return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, _Raw(body.encode()))

    client.meta.events.register_first("before-send", respond)  # ahead of moto's own before-send


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kwargs):
        yield self._data

    def read(self, *_args, **_kwargs):
        return self._data


def test_a_malformed_timestamp_keeps_its_snapshot_and_the_others_parse_as_botocore_would(caplog):
    with mock_aws():
        aws = Aws([REGION])
        answer_with(aws.ec2(REGION), SNAPSHOTS_XML)
        with caplog.at_level(logging.WARNING):
            snapshots = {snapshot.id: snapshot for snapshot in describe_ami_snapshots(aws, REGION, OWNER)}
    assert set(snapshots) == {"snap-0000000000000good", "snap-00000000000000bad", "snap-000000000000epoch"}
    assert snapshots["snap-0000000000000good"].started == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert snapshots["snap-0000000000000good"].started.utcoffset().total_seconds() == 0
    assert snapshots["snap-000000000000epoch"].started == datetime(2024, 5, 1, 10, tzinfo=UTC)  # RFC 822: botocore's
    bad = snapshots["snap-00000000000000bad"]
    assert bad.started is None and bad.size_gb == 20 and bad.ami_id == "ami-00000000000000002"
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "snap-00000000000000bad" in warnings and "StartTime" in warnings


def test_a_lightened_session_loads_plain_dict_models_with_their_documentation_emptied():
    core = botocore.session.Session()
    lighten(core)
    model = core.get_component("data_loader").load_service_model("ec2", "service-2")
    shapes = model["shapes"]
    assert type(model) is dict and type(shapes) is dict and not isinstance(shapes, OrderedDict)
    request = shapes["DescribeImagesRequest"]
    assert request.get("documentation", "") == "" and set(request["members"]) >= {"Owners", "ImageIds"}
    assert all(member.get("documentation", "") == "" for member in request["members"].values())
    assert model["operations"]["DescribeImages"]["output"] == {"shape": "DescribeImagesResult"}


def test_clients_of_a_lightened_session_send_and_receive_as_before():
    with mock_aws():
        ec2 = Aws([REGION]).ec2(REGION)
        image = ec2.register_image(Name="web-1", RootDeviceName="/dev/xvda", BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}])["ImageId"]
        found = ec2.get_paginator("describe_images").paginate(Owners=["self"]).build_full_result()["Images"]
        started = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"][0]["StartTime"]
        s3 = Aws([REGION]).client("s3")  # botocore requires the documentation keys of S3's clientContextParams
        s3.create_bucket(Bucket="amibot-anchors")
        buckets = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    assert [item["ImageId"] for item in found] == [image] and found[0]["Name"] == "web-1"
    assert isinstance(started, datetime) and started.utcoffset().total_seconds() == 0
    assert buckets == ["amibot-anchors"]


def test_threads_making_their_first_clients_together_share_one_model_per_service():
    with mock_aws():
        aws = Aws([REGION, "eu-west-1"])
        aws.manage([Account(id=PROD, name="prod", role_arn=role_arn(PROD)),
                    Account(id=STAGING, name="staging", role_arn=role_arn(STAGING))])
        start = threading.Barrier(8)
        made = []

        def make(handle, region):
            start.wait()
            made.append(handle.client("ssm", region))

        threads = [threading.Thread(target=make, args=(handle, region))
                   for handle in aws.handles() for region in (REGION, "eu-west-1") for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(made) == 8 and len({id(client) for client in made}) == 4  # one per (account, region)
    assert len({id(client.meta.service_model) for client in made}) == 1
    assert len({type(client) for client in made}) == 1
    assert len([key for key in _SHARED_MODELS if key[:2] == ("model", "ssm")]) == 1


def test_assumed_accounts_share_the_endpoint_data_and_search_boto3s_data_once():
    with mock_aws():
        home = boto3.session.Session(region_name=REGION)
        sessions = [assumed_session(home, Account(id=account, name=name, role_arn=role_arn(account)))
                    for account, name in ((PROD, "prod"), (STAGING, "staging"))]
        cores = [home._session] + [session._session for session in sessions]
        resolvers = {id(core._get_internal_component("endpoint_resolver")) for core in cores}
        loaders = [core.get_component("data_loader") for core in cores]
        assert len(resolvers) == 1 and len({id(loader) for loader in loaders}) == 1
        paths = loaders[0].search_paths
        assert len(paths) == len(set(paths))
        # and each account's calls still go out with its own credentials (moto maps them to the account)
        identities = [session.client("sts").get_caller_identity()["Account"] for session in sessions]
    assert identities == [PROD, STAGING]


def test_event_names_are_aliased_once_for_every_client_and_handlers_still_fire():
    with mock_aws():
        aws = Aws([REGION])
        first, second = aws.client("ec2", REGION), aws.client("ec2", REGION, max_attempts=1)
        heard = []
        # "autoscaling" events reach handlers registered under botocore's renamed id ("auto-scaling")
        scaling = aws.client("autoscaling", REGION)
        scaling.meta.events.register("before-call.auto-scaling.DescribeAutoScalingGroups",
                                     lambda **kwargs: heard.append("renamed"))
        first.meta.events.register("after-call.ec2.DescribeImages", lambda **kwargs: heard.append("first"))
        second.meta.events.register("after-call.ec2.DescribeImages", lambda **kwargs: heard.append("second"))
        first.describe_images(Owners=["self"])
        second.describe_images(Owners=["self"])
        scaling.describe_auto_scaling_groups()
    assert heard == ["first", "second", "renamed"]
    assert first.meta.events._alias_event_name("before-call.autoscaling.X") == "before-call.auto-scaling.X"
