"""bot/aws/lean_botocore.py: botocore shared between accounts through its public API (one loader, so one copy of
each model and of the endpoint data for every account), timestamps read fast, with one AWS cannot have meant kept
as text (so one bad snapshot does not fail a page of hundreds), and nothing else of botocore's behaviour changed:
each session makes its own client classes, so what a session registers on its events is honoured. The parser
tolerance that relies on botocore's private number handlers runs only on the botocore versions pinned here,
whose signatures are checked; another version logs one warning and runs stock.

A DescribeSnapshots answer is handed to the real client's parser through botocore's before-send event (moto
cannot send a malformed timestamp); everything else is moto."""

from __future__ import annotations

import inspect
import logging
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import boto3
import botocore
import botocore.session
from botocore import parsers
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from bot.aws import lean_botocore
from bot.aws.clients import Aws, AwsAccounts, assumed_session
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


def test_threads_making_their_first_clients_together_get_one_client_per_account_region_and_one_loader():
    with mock_aws():
        aws = AwsAccounts(Aws([REGION, "eu-west-1"]))
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
        loaders = {id(handle._session._session.get_component("data_loader")) for handle in aws.handles()}
    assert len(made) == 8 and len({id(client) for client in made}) == 4  # one per (account, region)
    assert len(loaders) == 1  # one parsed copy of SSM's model for every account


def test_assumed_accounts_read_each_model_and_the_endpoint_data_once_and_search_boto3s_data_once():
    with mock_aws():
        home = boto3.session.Session(region_name=REGION)
        loader = home._session.get_component("data_loader")
        read = []
        file_loader = loader.file_loader
        original = file_loader.load_file
        file_loader.load_file = lambda path: read.append(path) or original(path)  # counts reads from disk
        sessions = [assumed_session(home, Account(id=account, name=name, role_arn=role_arn(account)))
                    for account, name in ((PROD, "prod"), (STAGING, "staging"))]
        cores = [home._session] + [session._session for session in sessions]
        loaders = [core.get_component("data_loader") for core in cores]
        factories = {id(core.get_component("response_parser_factory")) for core in cores}
        clients = [session.client("ec2") for session in (home, *sessions)]
        assert len({id(loader) for loader in loaders}) == 1 and len(factories) == 1
        paths = loaders[0].search_paths
        assert len(paths) == len(set(paths))
        assert len([path for path in read if path.endswith("endpoints")]) == 1
        assert len([path for path in read if re.search(r"ec2/[\d-]+/service-2$", path)]) == 1
        # and each account's calls still go out with its own credentials (moto maps them to the account)
        identities = [session.client("sts").get_caller_identity()["Account"] for session in sessions]
        assert all(client.meta.region_name == REGION for client in clients)
    assert identities == [PROD, STAGING]


def test_a_creating_client_class_handler_on_a_second_session_is_honoured():
    """botocore lets a session shape its clients' classes; sharing classes between sessions would hand the second
    session the first one's class, without its handler."""

    class Marked:
        marked = True

    def add_base(class_attributes, base_classes, **_):
        base_classes.insert(0, Marked)

    with mock_aws():
        first = Aws([REGION], boto3.session.Session(region_name=REGION))
        first.ec2(REGION)
        session = boto3.session.Session(region_name=REGION)
        session.events.register("creating-client-class.ec2", add_base)
        second = Aws([REGION], session)
        assert getattr(second.ec2(REGION), "marked", False) is True
        assert not hasattr(first.ec2(REGION), "marked")
        assert second.ec2(REGION).describe_images(Owners=["self"])["Images"] == []


# --- the parser tolerance: pinned botocore versions, the private signatures they rely on -----------------------

def test_the_locked_botocore_is_a_tested_version():
    root = Path(__file__).resolve().parents[1]
    for lock in ("requirements.lock", "requirements-dev.lock"):
        [version] = re.findall(r"^botocore==(\S+)$", (root / lock).read_text(), re.M)
        assert version.startswith(lean_botocore.TESTED_BOTOCORE), \
            f"{lock} has botocore {version}: check the contract below, then add its series to TESTED_BOTOCORE"
    assert botocore.__version__.startswith(lean_botocore.TESTED_BOTOCORE)


def test_the_botocore_internals_the_tolerance_relies_on_are_as_expected():
    """The contract: ResponseParserFactory.create_parser(protocol_name) and set_parser_defaults; every protocol's
    parser has parse(response, shape), and its number handlers (where it has them) take (shape, text or value)."""
    factory = parsers.ResponseParserFactory()
    assert list(inspect.signature(factory.create_parser).parameters) == ["protocol_name"]
    assert "timestamp_parser" in inspect.signature(parsers.ResponseParser.__init__).parameters
    handled = 0
    for protocol in ("ec2", "query", "json", "rest-json", "rest-xml"):
        parser_class = type(factory.create_parser(protocol))
        assert list(inspect.signature(parser_class.parse).parameters) == ["self", "response", "shape"]
        for name in lean_botocore._NUMBER_HANDLERS:
            handler = getattr(parser_class, name, None)
            if handler is not None:
                handled += 1
                assert len(inspect.signature(handler).parameters) == 3, (parser_class, name)
    assert handled >= 10  # XML and REST-JSON parsers read numbers with these
    assert issubclass(parsers.RestJSONParser, parsers.BaseJSONParser)
    assert issubclass(parsers.RestJSONParser, parsers.BaseRestParser)


def test_the_client_creator_methods_the_digest_replaces_are_as_expected():
    from botocore.client import ClientCreator

    load = inspect.signature(ClientCreator._load_service_model)
    assert list(load.parameters) == ["self", "service_name", "api_version"]
    assert load.parameters["api_version"].default is None
    assert list(inspect.signature(ClientCreator._create_client_class).parameters) == [
        "self", "service_name", "service_model"]


def test_the_digest_over_many_accounts_shares_client_classes_only_while_it_runs(aws):
    from botocore.client import ClientCreator

    before = ClientCreator._load_service_model, ClientCreator._create_client_class
    sessions = [boto3.session.Session(region_name=REGION) for _ in range(3)]
    with lean_botocore.client_classes_shared() as shared:
        first, second = (Aws([REGION], session).ec2(REGION) for session in sessions[:2])
        assert shared and type(first) is type(second) and first.meta.service_model is second.meta.service_model
        assert second.describe_images(Owners=["self"])["Images"] == []
    assert (ClientCreator._load_service_model, ClientCreator._create_client_class) == before
    after = Aws([REGION], sessions[2]).ec2(REGION)
    assert type(after) is not type(first) and lean_botocore._SHARED_MODELS == {}


def test_an_untested_botocore_warns_once_and_keeps_its_own_parsers(monkeypatch, caplog):
    monkeypatch.setattr(botocore, "__version__", "9.0.0")
    monkeypatch.setattr(lean_botocore, "_untested_warned", threading.Event())
    cores = [botocore.session.Session(), botocore.session.Session()]
    with caplog.at_level(logging.WARNING, logger="bot.aws.lean_botocore"):
        for core in cores:
            lean_botocore.lighten(core)
    warnings = [record for record in caplog.records if "botocore 9.0.0" in record.getMessage()]
    assert len(warnings) == 1
    parser = cores[0].get_component("response_parser_factory").create_parser("ec2")
    assert type(parser) is parsers.EC2QueryParser  # botocore's own, not the tolerant subclass
    assert parser._timestamp_parser is lean_botocore._PARSE_TIMESTAMP  # the public default still applies
    from botocore.client import ClientCreator

    before = ClientCreator._create_client_class
    with lean_botocore.client_classes_shared() as shared:
        assert shared is False and ClientCreator._create_client_class is before


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
