"""GET /metrics: a scrape after real commands and clicks over signed HTTP shows the counters moved, with the
right labels, in text Prometheus can parse; the Socket Mode listener; AWS errors, scheduler runs, the digest."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import boto3
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from bot import __version__, cli, wiring
from bot.aws.clients import Aws, call
from bot.core import metrics
from bot.core.errors import AwsDenied, AwsError
from bot.devtools.fakeslack import FakeSlack
from bot.devtools.fakesocket import FakeSocket
from bot.devtools.slackclient import SlackClientSim
from bot.services import digest
from bot.slack import metrics_server
from tests.support import seed
from tests.support.approvals import approval_message

POLICY = {"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS", "U0LEAD"]},
          "approvals": {"approvers": ["U0LEAD"]}}


@pytest.fixture
def policy_data():
    return POLICY


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} from a real scrape, parsed by prometheus_client's own parser."""
    status, content_type, text = get(f"{url}/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def test_a_scrape_after_commands_and_clicks_shows_the_counters_moved(harness, aws):
    before = scrape(harness.url)
    assert value(before, "amibot_commands_total", subcommand="list", outcome="ok") == 0
    image_id = seed.image(aws, "web-old", tags={"Family": "web"})

    harness.command("list", user="U0OPS")  # ok
    harness.command("show", user="U0OPS")  # usage: no image named
    harness.command("lsit", user="U0OPS")  # usage: not a subcommand
    harness.command(f"deregister {image_id}", user="U0RANDOM")  # refused: not an operator
    assert "Only amibot operators may run" in harness.last_reply().text
    harness.command(f"deregister {image_id}", user="U0OPS")  # ok: asks for approval
    message, request_id = approval_message(harness.fake)

    pending = scrape(harness.url)
    assert value(pending, "amibot_approval_requests", state="pending") == 1
    assert value(pending, "amibot_approval_requests", state="succeeded") == 0

    harness.click("approval.approve", request_id, user="U0RANDOM", message_ts=message.ts)  # refused
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)  # ok: deregistered
    assert not aws.client("ec2").describe_images(ImageIds=[image_id])["Images"]

    after = scrape(harness.url)
    assert value(after, "amibot_commands_total", subcommand="list", outcome="ok") == 1
    assert value(after, "amibot_commands_total", subcommand="show", outcome="usage") == 1
    assert value(after, "amibot_commands_total", subcommand="unknown", outcome="usage") == 1
    assert value(after, "amibot_commands_total", subcommand="deregister", outcome="refused") == 1
    assert value(after, "amibot_commands_total", subcommand="deregister", outcome="ok") == 1
    typed = [labels for name, labels in after if name == "amibot_commands_total" and ("subcommand", "lsit") in labels]
    assert not typed  # what users type never becomes a label
    assert value(after, "amibot_clicks_total", action="approve", outcome="refused") == 1
    assert value(after, "amibot_clicks_total", action="approve", outcome="ok") == 1

    # every request was timed to its ack, by kind, and well under Slack's 3 s
    assert value(after, "amibot_ack_seconds_count", kind="command") == 5
    assert value(after, "amibot_ack_seconds_count", kind="action") == 2
    assert value(after, "amibot_ack_seconds_bucket", kind="command", le="3.0") == 5
    # the jobs behind them, and an empty queue now that they are done
    assert value(after, "amibot_job_duration_seconds_count", kind="command", outcome="done") == 5
    assert value(after, "amibot_job_duration_seconds_count", kind="approval.click", outcome="done") == 2
    assert value(after, "amibot_job_duration_seconds_sum", kind="command", outcome="done") > 0
    assert value(after, "amibot_job_queue_depth", kind="command", state="queued") == 0
    assert ("amibot_job_queue_depth", frozenset({("kind", "command"), ("state", "running")})) in after
    # the request moved through its states in SQLite
    assert value(after, "amibot_approval_requests", state="pending") == 0
    assert value(after, "amibot_approval_requests", state="succeeded") == 1
    # AWS calls by service and operation
    assert value(after, "amibot_aws_calls_total", service="ec2", operation="DescribeImages", outcome="ok") >= 2
    assert value(after, "amibot_aws_calls_total", service="ec2", operation="DeregisterImage", outcome="ok") == 1
    assert value(after, "amibot_database_up") == 1
    assert ("amibot_build_info", frozenset({("version", __version__)})) in after
    assert all(name.startswith("amibot_") for name in names(after))


def test_every_app_counts_only_its_own_traffic(make_harness, aws):
    first, second = make_harness(db_name="one.db"), make_harness(db_name="two.db")
    first.command("help")
    first.command("list")
    assert value(scrape(first.url), "amibot_commands_total", subcommand="list", outcome="ok") == 1
    assert value(scrape(second.url), "amibot_commands_total", subcommand="list", outcome="ok") == 0


def test_head_and_openmetrics_are_answered(harness):
    request = urllib.request.Request(f"{harness.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().rstrip().endswith("# EOF")
    head = urllib.request.Request(f"{harness.url}/metrics", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as response:
        assert response.status == 200 and response.read() == b""


def test_socket_mode_listener_serves_metrics_and_health_only(harness):
    """`amibot socket --metrics-port` runs exactly this (bot.cli._start_metrics → metrics_server.start_server)."""
    harness.command("list")
    server = metrics_server.start_server(harness.ctx, "127.0.0.1", 0)
    try:
        samples = scrape(server.url)
        assert value(samples, "amibot_commands_total", subcommand="list", outcome="ok") == 1
        status, content_type, body = get(f"{server.url}/healthz")
        assert status == 200 and content_type == "application/json" and '"status": "ok"' in body
        assert get(f"{server.url}/slack/events")[0] == 404  # no signing secret in Socket Mode: no Slack door
    finally:
        server.close()


def test_socket_flags_and_a_busy_metrics_port(harness):
    args = cli.build_parser().parse_args(["socket", "--metrics-port", "9102"])
    assert (args.metrics_port, args.metrics_host) == (9102, "127.0.0.1")
    assert cli.build_parser().parse_args(["socket"]).metrics_port is None  # off unless asked for
    busy = metrics_server.start_server(harness.ctx, "127.0.0.1", 0)
    try:
        with pytest.raises(SystemExit) as refused:
            cli._start_metrics(harness.amibot, "127.0.0.1", busy.port)
        assert f"cannot serve metrics on 127.0.0.1:{busy.port}" in str(refused.value)
    finally:
        busy.close()


def test_aws_errors_are_counted_by_class():
    seen: list[tuple] = []
    aws = Aws(["us-east-1"], session=boto3.session.Session(region_name="us-east-1"))
    aws.observers.append(lambda *observed: seen.append(observed))
    ec2 = aws.ec2("us-east-1")
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_images", "UnauthorizedOperation", http_status_code=403)
        stub.add_client_error("describe_images", "RequestLimitExceeded", http_status_code=503)
        stub.add_response("describe_images", {"Images": []})
        with pytest.raises(AwsDenied):
            call(ec2, "describe_images", Owners=["self"])
        with pytest.raises(AwsError, match="throttling"):
            call(ec2, "describe_images", Owners=["self"])
        call(ec2, "describe_images", Owners=["self"])
    assert seen == [("ec2", "DescribeImages", "denied"), ("ec2", "DescribeImages", "throttled"),
                    ("ec2", "DescribeImages", None)]


def test_unreachable_aws_is_counted(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    seen: list[tuple] = []
    aws = Aws(["us-east-1"], session=boto3.session.Session(region_name="us-east-1"))
    aws.observers.append(lambda *observed: seen.append(observed))
    with pytest.raises(AwsError, match="cannot reach AWS"):
        call(aws.client("sts", max_attempts=1), "get_caller_identity")
    assert seen == [("sts", "GetCallerIdentity", "unreachable")]


def test_scheduler_runs_are_counted_by_job_and_outcome(harness):
    def boom():
        raise RuntimeError("scheduled job failed")

    sched = wiring.build_scheduler(harness.ctx)
    sched.add_job(lambda: None, id="test.ok")
    sched.add_job(boom, id="test.boom")
    sched.add_job(lambda: None, "date", run_date=datetime.now(UTC) - timedelta(hours=2), id="test.late",
                  misfire_grace_time=1)
    sched.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            samples = scrape(harness.url)
            if all(value(samples, "amibot_scheduler_runs_total", job=job, outcome=outcome) == 1
                   for job, outcome in (("test.ok", "ok"), ("test.boom", "error"), ("test.late", "missed"))):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"scheduler runs not counted: {[k for k in samples if 'scheduler' in k[0]]}")
    finally:
        sched.shutdown(wait=False)


def test_digest_duration_and_findings(harness, aws):
    now = datetime.now(UTC)
    for number in range(3):
        image_id = aws.client("ec2").register_image(Name=f"old-{number}", RootDeviceName="/dev/sda1")["ImageId"]
        seed.backdate(image_id, now - timedelta(days=400 + number))
    findings = digest.compute_for(harness.ctx)
    samples = scrape(harness.url)
    assert value(samples, "amibot_digest_duration_seconds_count", outcome="ok") == 1
    assert value(samples, "amibot_digest_findings", finding="stale_images") == len(findings.stale) >= 1
    assert value(samples, "amibot_digest_findings", finding="orphaned_snapshots") == len(findings.orphans)
    assert value(samples, "amibot_digest_findings", finding="unchecked_regions") == 0
    assert value(samples, "amibot_digest_monthly_cost_usd") == pytest.approx(findings.monthly_cost)
    assert value(samples, "amibot_digest_last_success_timestamp_seconds") > now.timestamp() - 60
    assert value(samples, "amibot_aws_calls_total", service="ec2", operation="DescribeSnapshots", outcome="ok") >= 1


def test_labels_stay_bounded():
    assert metrics.outcome_label("refused: You are not an operator") == "refused"
    assert metrics.outcome_label("crashed: ref 1a2b3c4d") == "crashed"
    assert metrics.outcome_label("interrupted: the bot restarted") == "error"
    assert metrics.request_kind({"command": "/ami"}) == "command"
    assert metrics.request_kind({"type": "view_submission"}) == "view"
    assert metrics.request_kind("not a dict") == "other"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_amibot_socket_serves_metrics_on_its_metrics_port(tmp_path):
    """The real `amibot socket --metrics-port` process, Slack played by the Socket Mode stand-in, AWS by moto."""
    fake = FakeSlack().start()
    stand_in = FakeSocket(fake).start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, moto_port = moto.get_host_and_port()
    port = free_port()
    (tmp_path / "amibot.toml").write_text('[aws]\nregions = ["us-east-1"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_", "AWS_"))}
    env.update({"SLACK_BOT_TOKEN": "xoxb-metrics-test", "SLACK_APP_TOKEN": "xapp-1-metrics-test",
                "SLACK_API_URL": fake.url, "AMIBOT_DB": str(tmp_path / "amibot.db"),
                "AMIBOT_CONFIG": str(tmp_path / "amibot.toml"), "AWS_ENDPOINT_URL": f"http://{host}:{moto_port}",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "socket", "--metrics-port", str(port)], env=env,
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, failure = f"http://127.0.0.1:{port}", None
    try:
        stand_in.wait_for_connection(1, timeout=30)
        sim = SlackClientSim("http://127.0.0.1:9", "unused", fake)  # only builds Slack-shaped payloads
        listing = stand_in.slash_command(dict(parse_qsl(sim.command_body("list", "U0OPS", "C0OPS"))))
        listing.wait_ack(3.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            samples = scrape(url)
            if value(samples, "amibot_commands_total", subcommand="list", outcome="ok") == 1:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the socket process never counted /ami list")
        assert value(samples, "amibot_ack_seconds_count", kind="command") == 1
        assert value(samples, "amibot_ack_seconds_bucket", kind="command", le="3.0") == 1
        assert value(samples, "amibot_aws_calls_total", service="ec2", operation="DescribeImages", outcome="ok") >= 1
        assert get(f"{url}/healthz")[0] == 200
    except AssertionError as error:
        failure = error  # said below with what the process printed
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        stand_in.stop()
        fake.stop()
        moto.stop()
    assert failure is None, f"{failure}\n--- amibot socket printed:\n{output[-3000:]}"
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
