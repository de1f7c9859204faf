"""Shared fixtures: a clean environment, moto for AWS, the fake Slack Web API, the running app."""

from __future__ import annotations

import os

# Before anything imports boto3 or moto: no developer credentials may leak into tests, moto's
# ~1,300 preloaded public images per region are not needed (and cost seconds), and run_instances
# must reject AMIs that do not exist, as AWS does.
for _name in list(os.environ):
    if _name.startswith(("SLACK_", "AWS_", "AMIBOT_")):
        del os.environ[_name]
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                   "MOTO_ENABLE_AMI_VALIDATION": "true"})
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

import boto3  # noqa: E402
import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from bot.devtools.fakeslack import FakeSlack  # noqa: E402
from tests.support.harness import REGIONS, Harness  # noqa: E402
from tests.support.processes import served  # noqa: E402, F401 (a fixture: `amibot serve` as a process)


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def fake_slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def policy_data():
    """Override in a test module (or parametrize) to change the policy the app starts with."""
    return {"aws": {"regions": REGIONS}}


@pytest.fixture
def harness(aws, fake_slack, tmp_path, policy_data):
    running = Harness(fake_slack, str(tmp_path / "amibot.db"), policy_data).start()
    yield running
    running.stop()


@pytest.fixture
def make_harness(aws, fake_slack, tmp_path):
    """For tests that need their own policy, clock, or a restart on the same database."""
    started: list[Harness] = []

    def make(policy_data=None, clock=None, db_name="amibot.db") -> Harness:
        data = {"aws": {"regions": REGIONS}} if policy_data is None else policy_data
        running = Harness(fake_slack, str(tmp_path / db_name), data, clock=clock).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


def pytest_unconfigure(config):
    """The run is over: freeze the heap so the interpreter's final collection skips it (nothing after this point
    needs it collected). It once took minutes, when stopped servers kept their idle workers and apps alive; they
    end with their server now (tests/test_cli_serve.py::test_a_stopped_server_ends_its_worker_threads)."""
    import gc

    gc.freeze()
