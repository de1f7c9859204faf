"""What an operator meets running `amibot`: its logs (human or JSON, libraries quiet, secrets never shown),
readable scheduler job names, one clear line and a non-zero exit for a bad token, an unreachable Slack or a
taken port, every flag's meaning and default in --help, and check-config's warnings."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from slack_sdk.signature import SignatureVerifier

from bot import cli, wiring
from bot.core import logs
from bot.devtools.fakeslack import FakeSlack, free_port

SECRET = "ops-test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-ops-test-bot-token-98765"
APP_TOKEN = "xapp-1-ops-test-app-token-4321"
START_TIMEOUT = 30


@pytest.fixture(autouse=True)
def restore_logging():
    """cli.main() configures the root logger in this process; give the next test the logging it had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in logs.QUIET_LIBRARIES + logs.NEVER_BELOW_INFO}
    hooks = (sys.excepthook, threading.excepthook)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in libraries.items():
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(False)
    sys.excepthook, threading.excepthook = hooks


def env_for(tmp_path, fake=None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AMIBOT_"))}
    env.update({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": APP_TOKEN,
                "AMIBOT_DB": str(tmp_path / "ops.db"), "PYTHONUNBUFFERED": "1"})
    if fake is not None:
        env["SLACK_API_URL"] = fake.url
    env.update(extra)
    return env


def amibot(*args: str, env: dict, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_clear_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert BOT_TOKEN not in result.stderr and APP_TOKEN not in result.stderr


@pytest.fixture
def fake():
    running = FakeSlack().start()
    yield running
    running.stop()


# --- errors an operator meets: one line, non-zero, never a traceback --------------------------------------------

@pytest.mark.parametrize("command", ["serve", "socket"])
def test_an_invalid_bot_token_is_one_line_and_a_non_zero_exit(tmp_path, fake, command):
    fake.fail_next["auth.test"] = {"ok": False, "error": "invalid_auth"}
    args = (command, "--port", "0") if command == "serve" else (command,)
    result = amibot(*args, env=env_for(tmp_path, fake), cwd=tmp_path)
    assert_one_clear_line(result, "Slack refused SLACK_BOT_TOKEN", "auth.test answered invalid_auth")
    assert [call.method for call in fake.calls] == ["auth.test"]  # nothing else was tried
    assert not (tmp_path / "ops.db").exists()  # nothing was started


@pytest.mark.parametrize("command", ["serve", "socket"])
def test_slack_unreachable_is_one_line_and_a_non_zero_exit(tmp_path, command):
    closed = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
    args = (command, "--port", "0") if command == "serve" else (command,)
    result = amibot(*args, env=env_for(tmp_path, SLACK_API_URL=closed), cwd=tmp_path)
    assert_one_clear_line(result, f"cannot reach Slack at {closed}", "Connection refused")


def test_socket_mode_with_an_app_token_slack_refuses_ends_with_one_clear_line(tmp_path, fake):
    fake.fail_next["apps.connections.open"] = {"ok": False, "error": "invalid_auth"}
    result = amibot("socket", env=env_for(tmp_path, fake), cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("amibot: Slack refused SLACK_APP_TOKEN (apps.connections.open "
                                                      "answered invalid_auth): check the token in the app's settings")
    assert " ERROR " not in result.stderr  # Bolt's own multi-line report of the same failure is not repeated
    assert APP_TOKEN not in result.stderr and BOT_TOKEN not in result.stderr


def test_in_json_mode_the_one_line_is_a_json_record(tmp_path, fake):
    fake.fail_next["auth.test"] = {"ok": False, "error": "invalid_auth"}
    result = amibot("serve", "--port", "0", env=env_for(tmp_path, fake, AMIBOT_LOG_FORMAT="json"), cwd=tmp_path)
    assert_one_clear_line(result, "Slack refused SLACK_BOT_TOKEN")
    record = json.loads(result.stderr)
    assert record["level"] == "ERROR" and record["logger"] == "amibot"
    assert record["message"].startswith("Slack refused SLACK_BOT_TOKEN (auth.test answered invalid_auth)")


def test_serve_on_a_port_already_in_use_is_one_line_and_a_non_zero_exit(tmp_path, fake):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = amibot("serve", "--host", "127.0.0.1", "--port", str(port), env=env_for(tmp_path, fake),
                        cwd=tmp_path)
    assert_one_clear_line(result, f"cannot listen on 127.0.0.1:{port}", "Address already in use")


# --- logs -------------------------------------------------------------------------------------------------------

def signed_command(port: int, fake, text: str) -> str:
    body = urllib.parse.urlencode({"command": "/ami", "text": text, "user_id": "U1", "channel_id": "C1",
                                   "trigger_id": "t.ops", "response_url": fake.response_url("ops")})
    stamp = str(int(time.time()))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers={
        "X-Slack-Request-Timestamp": stamp, "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def run_serve(tmp_path, fake, *args: str, **env: str) -> tuple[str, str]:
    """`amibot serve` as a process: wait for /healthz, send /ami help, stop with SIGTERM; (stdout, stderr)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", *args, "serve", "--host", "127.0.0.1",
                                "--port", str(port)], env=env_for(tmp_path, fake, **env), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
                time.sleep(0.2)
        assert "/ami list" in signed_command(port, fake, "help")
        assert "/ami list" in signed_command(port, fake, "help")  # a second one: the request path logs again
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-3000:]
    return out, err


def test_json_logs_are_one_object_per_line_and_never_show_a_secret(tmp_path, fake):
    out, err = run_serve(tmp_path, fake, "--log-level", "DEBUG", AMIBOT_LOG_FORMAT="json")
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) > 5
    records = [json.loads(line) for line in lines]  # every line parses: nothing else is mixed in
    for record in records:
        assert {"ts", "level", "logger", "message"} <= set(record)
        assert record["ts"].endswith("+00:00") and record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
    messages = [record["message"] for record in records]
    assert any("serving on http://127.0.0.1" in message for message in messages)
    assert any(record["logger"].startswith("slack_") and record["level"] == "DEBUG" for record in records)
    for secret in (BOT_TOKEN, SECRET, APP_TOKEN, BOT_TOKEN.removeprefix("xoxb-")):
        assert secret not in out + err


def test_human_logs_by_default_and_secrets_never_shown_even_at_debug(tmp_path, fake):
    out, err = run_serve(tmp_path, fake, "--log-level", "DEBUG")
    assert " INFO amibot: amibot serving on http://127.0.0.1" in err
    assert not err.lstrip().startswith("{")
    for secret in (BOT_TOKEN, SECRET, APP_TOKEN, BOT_TOKEN.removeprefix("xoxb-")):
        assert secret not in out + err


def test_a_json_log_line_carries_the_exception_text():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter(logs._Masking({"SLACK_BOT_TOKEN": BOT_TOKEN})))
    logger = logging.getLogger("amibot.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"boom with {BOT_TOKEN} inside\nand a second line")
        except RuntimeError:
            logger.exception("job %s failed", "j-1 (token xoxp-1234-5678-not-from-this-env)")
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "job j-1 (token xoxp-•••) failed" and record["level"] == "ERROR"
    assert record["logger"] == "amibot.test_json"
    assert "Traceback" in record["exception"] and "RuntimeError: boom with ••• inside" in record["exception"]
    assert BOT_TOKEN not in line


def test_an_unknown_log_format_is_one_line_and_exit_1(tmp_path):
    result = amibot("iam-policy", env=env_for(tmp_path, AMIBOT_LOG_FORMAT="xml"), cwd=tmp_path)
    assert_one_clear_line(result, "AMIBOT_LOG_FORMAT must be one of text, json, not 'xml'")


def test_botocore_info_lines_are_quiet_unless_debug(aws, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-config", "--aws"]) == 0
    quiet = capsys.readouterr()
    assert "AWS: account 123456789012" in quiet.out
    assert "botocore" not in quiet.err and "Found credentials" not in quiet.err
    assert cli.main(["--log-level", "DEBUG", "check-config", "--aws"]) == 0
    loud = capsys.readouterr()
    assert "INFO botocore.credentials: Found credentials in environment variables" in loud.err
    assert "DEBUG botocore" not in loud.err  # their DEBUG lines carry signed request headers


def test_scheduled_jobs_have_readable_names(make_harness):
    harness = make_harness({"aws": {"regions": ["us-east-1"]}, "digest": {"channel": "C0DIGEST"}})
    jobs = wiring.build_scheduler(harness.ctx).get_jobs()
    names = {job.id: job.name for job in jobs}
    assert {"store.prune", "approvals.sweep", "digest.daily"} <= set(names)
    for job_id, name in names.items():
        assert "<" not in name and "lambda" not in name, (job_id, name)
    assert names["digest.daily"] == "digest.daily: the daily digest"
    assert names["approvals.sweep"] == "approvals.sweep: reminders and expiry"


# --- --help: every flag with its meaning and its default -----------------------------------------------------

def every_parser(parser: argparse.ArgumentParser, path: str = "amibot"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from every_parser(subparser, f"{path} {name}")


def test_every_option_of_every_subcommand_has_help_and_states_its_default():
    parsers = list(every_parser(cli.build_parser()))
    assert len(parsers) >= 10
    for path, parser in parsers:
        assert parser.description, f"{path} --help has no description"
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            where = f"{path} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help is not argparse.SUPPRESS, f"{where} has no help text"
            shown = formatter._expand_help(action)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in shown.lower() and str(action.default) in shown, f"{where}: {shown!r}"


def test_serve_help_says_host_defaults_to_every_interface(tmp_path):
    result = amibot("serve", "--help", env=env_for(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--host HOST address to listen on: 0.0.0.0 is every interface" in text and "(default: 0.0.0.0)" in text
    assert "(default: 3000)" in text and "HTTP mode: POST /slack/events" in text


# --- check-config warnings --------------------------------------------------------------------------------------

def check_config(tmp_path, policy: str) -> subprocess.CompletedProcess:
    (tmp_path / "amibot.toml").write_text(policy)
    env = env_for(tmp_path, AMIBOT_CONFIG=str(tmp_path / "amibot.toml"))
    return amibot("check-config", env=env, cwd=tmp_path)


def test_check_config_warns_when_anyone_can_change_or_approve(tmp_path):
    result = check_config(tmp_path, '[aws]\nregions = ["us-east-1"]\n')
    assert result.returncode == 0  # a warning, not a failure
    assert "configuration OK (2 warning(s) above)" in result.stdout
    assert "warning: [access].operators is empty: anyone in the workspace can run changing commands" \
        in result.stderr
    assert "warning: [approvals].approvers is empty: anyone (no operators either) can approve" in result.stderr


def test_check_config_warns_that_any_operator_approves_without_approvers(tmp_path):
    result = check_config(tmp_path, '[aws]\nregions = ["us-east-1"]\n[access]\noperators = ["U0OPS"]\n')
    assert result.returncode == 0
    assert "[access].operators is empty" not in result.stderr
    assert "warning: [approvals].approvers is empty: any operator can approve another person's request" \
        in result.stderr


def test_check_config_is_silent_when_operators_and_approvers_are_set(tmp_path):
    result = check_config(tmp_path, '[aws]\nregions = ["us-east-1"]\n[access]\noperators = ["U0OPS"]\n'
                                    '[approvals]\napprovers = ["U0LEAD"]\n')
    assert result.returncode == 0
    assert "warning" not in result.stderr and result.stdout.rstrip().endswith("configuration OK")
    assert BOT_TOKEN not in result.stdout and SECRET not in result.stdout  # printed masked
