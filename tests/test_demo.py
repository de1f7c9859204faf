"""`amibot demo`: the lifecycle script end to end in a real subprocess, the console against the real app
(signed HTTP in, fake Slack out, moto behind), and the pure parts — rendering Block Kit as text, parsing
console lines, picking options, building a modal's state."""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.devtools import render
from bot.devtools.console import (
    CONSOLE_COMMANDS,
    Console,
    Person,
    ScriptSource,
    StepFailed,
    help_lines,
    normalized,
    parse_line,
    pick_option,
)
from bot.devtools.slackclient import form_state
from tests.support import seed

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE = ROOT / "bot" / "devtools" / "scripts" / "lifecycle.txt"  # shipped in the wheel
DEMO_TIMEOUT = 240
PEOPLE = [Person("U0OPS", "ops", "operator"), Person("U0LEAD", "lead", "approver")]


# --- the demo as a person runs it: a separate process -------------------------------------------------------

def demo_env(**extra: str) -> dict:
    """The parent's environment plus settings that would break the demo if it used them: it must not."""
    env = dict(os.environ)
    env.update({"AWS_PROFILE": "no-such-profile-amibot-demo", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                "SLACK_BOT_TOKEN": "xoxb-a-real-looking-token", "SLACK_API_URL": "http://127.0.0.1:9/api/",
                "AMIBOT_CONFIG": "/nonexistent/amibot.toml", "HTTPS_PROXY": "http://127.0.0.1:9",
                "HTTP_PROXY": "http://127.0.0.1:9", "PYTHONUNBUFFERED": "1", **extra})
    return env


def demo(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", "demo", *args], cwd=ROOT, env=demo_env(), input=input,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)


def assert_nothing_left_behind(output: str) -> None:
    """The app's port is closed and the temporary directory is gone."""
    port = int(re.search(r"app: http://127\.0\.0\.1:(\d+)/slack/events", output).group(1))
    state = re.search(r"state: (\S+) ", output).group(1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert not Path(state).exists()
    assert "demo stopped" in output


def test_the_lifecycle_script_walks_the_whole_life_of_an_image():
    result = demo("--script", "lifecycle")  # the README's command: the script shipped in bot/devtools/scripts
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "✓ the script ran" in out and "✗" not in out
    # the banner names who is who and the fleet
    assert "alice  U0ALICE  operator" in out and "bob    U0BOB    approver" in out and "carol  U0CAROL  member" in out
    assert "dave   U0DAVE   prod's operator" in out and "Account prod (222233334444)" in out
    assert "(current: web-1.3.0)" in out and "2 orphaned snapshots" in out
    assert "web by Image Builder pipeline web (on web-1.3.0)" in out and "/ami bake web" in out  # what there is to bake
    assert "Auto Scaling group web-edge (launch template web-edge resolving /amibot/web/current)" in out  # to roll out
    # every stage of the lifecycle happened, as the channel saw it
    for seen in ("16 AMIs, newest first", "is making AMI web-1.5.0", "promoted", "[ Launch instances ]",
                 "2 instance(s) running", "shared web-1.5.0", "Share web-1.5.0 with account 444455556666",
                 "eu-west-1 from a copy of web-1.5.0", "Deregister web-1.0.0", "You are not an approver",
                 "Deregistered", "Only amibot operators", "AMI digest for", "snoozed this", "Deleted snap-",
                 # what moto lacks, from the demo's emulation: findings, the Recycle Bin, drift, Allowed AMIs
                 "Vulnerabilities (Amazon Inspector): 1 critical", "so it was not promoted",
                 "recoverable from the Recycle Bin for 14 days", "web-0.8.0", "image restored",
                 "on a deregistered image web-0.9.0", "audit mode",
                 # and the Home tab, as the approver and as the requester see it
                 "amibot's App Home, as @bob sees it", "Waiting for you (1)", "amibot's App Home, as @alice sees it",
                 # a second account, prod: the blast radius reaches its group and instances, its own operators
                 # decide there, and the digest covers both accounts
                 "prod (222233334444): 2 instances, launch template storefront-web, ASG storefront",
                 "Auto Scaling group storefront", "prod 2",
                 "Only the operators of prod (222233334444) may run `/ami launch` there. Its operators: @dave",
                 "1 instance(s) running into prod (222233334444)",
                 "across 2 accounts",
                 # the next version baked by the (emulated) Image Builder pipeline: each stage as it came, the
                 # version joining the family in both regions, and its promotion request, approved by bob only
                 "Stages: PENDING → BUILDING", "Stages: PENDING → BUILDING → TESTING → DISTRIBUTING → AVAILABLE",
                 "Bake of web 1.5.1 — done", "📦 web 1.5.1:", "(eu-west-1)", "Promote web 1.5.1 (baked by bake-",
                 "Inspector: 0 critical, 0 high", "someone else has to approve it (four eyes)",
                 "web 1.5.1 is current in us-east-1", "web 1.5.1 is current in eu-west-1", "web succeeded",
                 # rolled out: platform's groups (a pinned template, one resolving the SSM parameter) refreshed to
                 # 100 % with bob's approval; then revoked, the channel moved back and the groups rolled again by a
                 # follow-up request; prod's group rolled by dave once the good version is shared with prod
                 "Roll web 1.5.1 out to 2 Auto Scaling groups", "its template resolves the SSM parameter",
                 "web-fleet: Successful (100 %)", "web-edge: Successful (100 %)", "Rollout succeeded.",
                 "⛔ Revoked: CVE-2024-6387 in the sshd it ships", "and 1 descendant(s)", "Deprecated and disabled",
                 "Rollout request `req-", "✅ storefront (prod (222233334444), us-east-1): Successful",
                 "web-edge: already-current, web-fleet: already-current, storefront: already-current"):
        assert seen in out, seen
    # the organisation digest's totals are a table: prod's row says it is all clean
    assert any(line.lstrip().startswith("prod (222233334444)") and "all clean" in line for line in out.splitlines())
    assert "? Approve? [y/n] y" in out  # the confirm dialog was asked and answered
    assert_nothing_left_behind(out)


def test_a_failing_expect_stops_the_script_with_a_non_zero_exit(tmp_path):
    script = tmp_path / "broken.txt"
    script.write_text("/ami versions web\n:expect no such version anywhere\n:as bob\n")
    result = demo("--script", str(script))
    assert result.returncode == 1
    assert "Family web" in result.stdout  # the step before ran
    assert "✗ line 2: expected the last output to contain 'no such version anywhere'" in result.stdout
    assert "you are now @bob" not in result.stdout  # the step after did not
    assert_nothing_left_behind(result.stdout)


def test_a_bare_name_finds_the_script_shipped_with_the_package(tmp_path, monkeypatch):
    from bot.devtools.demo import bundled_scripts, script_path

    monkeypatch.chdir(tmp_path)  # anywhere, not only in the checkout
    assert script_path("lifecycle") == LIFECYCLE and script_path("lifecycle.txt") == LIFECYCLE
    assert "lifecycle" in bundled_scripts()
    (tmp_path / "lifecycle").write_text(":users\n")  # a file of that name in the working directory wins
    assert script_path("lifecycle") == Path("lifecycle")
    assert script_path("./nope/lifecycle") == Path("./nope/lifecycle")  # a path is never looked up


def test_a_missing_script_is_a_usage_error():
    result = demo("--script", "/nonexistent/script.txt")
    assert result.returncode == 2
    assert "cannot read the script /nonexistent/script.txt" in result.stderr
    result = demo("--script", "no-such-script")
    assert result.returncode == 2
    assert "cannot read the script no-such-script" in result.stderr
    assert "scripts shipped with amibot: lifecycle" in result.stderr


def test_end_of_input_ends_an_interactive_demo_cleanly():
    result = demo(input="/ami versions api\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Family api" in result.stdout
    assert_nothing_left_behind(result.stdout)


def as_started_from_a_terminal() -> None:
    """In the child, before exec: Ctrl-C as a terminal delivers it. A test run started in the background by a
    non-interactive shell (`make test &`, nohup) has SIGINT ignored, the demo would inherit that, and Python
    installs no KeyboardInterrupt handler for an ignored SIGINT: the test would wait for an exit that never comes."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_ends_the_demo_cleanly():
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "demo"], cwd=ROOT, env=demo_env(),
                               # stderr into the drained stdout: an unread pipe that fills up blocks the process
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=as_started_from_a_terminal)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + DEMO_TIMEOUT
    try:
        while not any("You are @alice" in line for line in seen):
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=60) == 130
        except subprocess.TimeoutExpired:
            process.kill()
            time.sleep(0.2)
            while not lines.empty():
                seen.append(lines.get())
            printed = "".join(seen[-40:])
            raise AssertionError(f"the demo did not stop within 60 s of Ctrl-C; it printed:\n{printed}") from None
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(0.2)  # the reader thread drains the last lines
    while not lines.empty():
        seen.append(lines.get())
    assert_nothing_left_behind("".join(seen))


# --- the console driving the real app in this process ---------------------------------------------------------

class Driver:
    """A Console on the harness's app, a name → id table for {name}, and what it printed."""

    def __init__(self, harness):
        self.names: dict[str, str] = {}
        self.out = io.StringIO()
        self.console = Console(harness.local, PEOPLE, "C0OPS", "ops", self.out, digest=lambda: "posted: 0 stale",
                               resolve=self.resolve)

    def resolve(self, ref: str) -> str:
        if ref not in self.names:
            raise LookupError(f"no image or instance called {ref!r}")
        return self.names[ref]

    def run(self, script: str) -> tuple[int, str]:
        start = self.out.tell()
        code = self.console.run(ScriptSource(textwrap.dedent(script).strip().splitlines()))
        return code, self.out.getvalue()[start:]


@pytest.fixture
def driver(harness):
    return Driver(harness)


def old_image(aws, name: str = "web-1") -> str:
    return seed.image(aws, name, tags={"Family": "web", "Version": "1"},
                      created=datetime.now(UTC) - timedelta(days=400))


def test_deregister_is_asked_by_one_user_and_approved_by_another_with_a_confirm(driver, harness, aws):
    driver.names["web-1"] = image_id = old_image(aws)
    code, out = driver.run("""
        /ami deregister {web-1}
        :expect Deregister web-1
        :as lead
        :click Approve
        y
        :expect Approved by @lead
        :expect Deregistered
    """)
    assert code == 0, out
    assert "--- confirm: " in out and "? Approve? [y/n] y" in out
    assert aws.client("ec2").describe_images(ImageIds=[image_id])["Images"] == []
    approve = next(b for b in driver.console.buttons.values() if render.plain(b.element.get("text")) == "Approve")
    with pytest.raises(StepFailed, match=rf"button \[{approve.number}\] is gone"):
        driver.console.run_line(f":click {approve.number}")  # the decided request has no buttons any more


def test_answering_no_to_a_confirm_dialog_sends_nothing(driver, harness, aws):
    driver.names["web-1"] = image_id = old_image(aws)
    code, out = driver.run("""
        /ami deregister {web-1}
        :as lead
        :click Approve
        n
    """)
    assert code == 0, out
    assert "cancelled: nothing was sent" in out
    assert [row["state"] for row in harness.ctx.store.query("SELECT state FROM requests")] == ["pending"]
    assert aws.client("ec2").describe_images(ImageIds=[image_id])["Images"]


def test_the_launch_form_is_asked_field_by_field_and_submitted(driver, harness, aws):
    image_id = old_image(aws, "web-2")
    code, out = driver.run("""
        /ami launch
        web-2
        t3.small

        from-the-console
        y
        :expect running
    """)
    assert code == 0, out
    assert "(2) Instance type*: t3.micro" in out and "? Count* (1): " in out
    reservations = aws.client("ec2").describe_instances(
        Filters=[{"Name": "tag:Name", "Values": ["from-the-console"]}])["Reservations"]
    launched = [i for r in reservations for i in r["Instances"]]
    assert [(i["ImageId"], i["InstanceType"]) for i in launched] == [(image_id, "t3.small")]


def test_a_form_the_bot_rejects_shows_its_errors_and_can_be_closed(driver, harness, aws):
    old_image(aws, "web-3")
    code, out = driver.run("""
        /ami launch
        1
        not a type!
        1

        y
        :expect the form has errors
        :expect is not an instance type
        :close
    """)
    assert code == 0, out
    assert "modal Launch instances closed without submitting" in out
    assert driver.console.modals == []
    assert not aws.client("ec2").describe_instances(
        Filters=[{"Name": "instance-type", "Values": ["not a type!"]}])["Reservations"]


@pytest.mark.parametrize(("script", "problem"), [
    (":click 99", "there is no button [99]"),
    (":frobnicate", "unknown console command :frobnicate"),
    ("/ami show {nothing-by-that-name}", "no image or instance called 'nothing-by-that-name'"),
    ("hello bot", "type /ami … to talk to the bot"),
    ("/ami list\n:expect an image nobody made", "expected the last output to contain 'an image nobody made'"),
    ("/ami list\n:expect-not AMIs", "expected the last output not to contain 'AMIs'"),
    (":as nobody", "no user 'nobody'"),
    (":click Approve", "no button labelled 'Approve' on screen"),
    ("/deploy now", "/deploy is not installed here"),
])
def test_a_step_that_fails_stops_the_script(driver, script, problem):
    code, out = driver.run(script + "\n:as lead\n")
    assert code == 1
    assert f"✗ line {script.count(chr(10)) + 1}: {problem}" in out
    assert "you are now @lead" not in out


def test_the_script_ending_while_a_prompt_waits_is_a_failure(driver, harness, aws):
    driver.names["web-1"] = old_image(aws)
    code, out = driver.run("""
        /ami deregister {web-1}
        :as lead
        :click Approve
    """)
    assert code == 1
    assert "the script ended while the console asked: Approve? [y/n]" in out


def test_digest_runs_the_scheduled_digest_and_reports_its_outcome(driver):
    code, out = driver.run(":digest")
    assert code == 0
    assert "· daily digest: posted: 0 stale" in out


# --- pure parts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "kind", "name", "arg"), [
    ("/ami list web", "slash", "/ami", "list web"),
    ("  /ami   ", "slash", "/ami", ""),
    (":as bob", "console", "as", "bob"),
    (":CLICK  3", "console", "click", "3"),
    (":exit", "console", "quit", ""),
    (":expect-not Approved by", "console", "expect-not", "Approved by"),
    ("# a comment", "comment", "", "# a comment"),
    ("   ", "blank", "", ""),
])
def test_console_lines_are_parsed(line, kind, name, arg):
    step = parse_line(line)
    assert (step.kind, step.name, step.arg) == (kind, name, arg)


@pytest.mark.parametrize(("line", "problem"), [
    (":nope", "unknown console command :nope"),
    (":click", ":click needs N|LABEL"),
    (":help me", ":help takes no argument"),
    ("/other thing", "/other is not installed here"),
    ("list", "type /ami"),
])
def test_malformed_console_lines_say_what_is_wrong(line, problem):
    step = parse_line(line)
    assert step.kind == "bad" and problem in step.arg


def test_help_lists_every_console_command():
    text = "\n".join(help_lines())
    assert all(f":{name}" in text for name in CONSOLE_COMMANDS)
    assert "/ami" in text and "{name}" in text


def test_expect_ignores_case_and_spacing():
    assert normalized("Needs  1\n approval") == normalized("needs 1 APPROVAL")


OPTIONS = [{"text": {"type": "plain_text", "text": "web (current version)"}, "value": "family:web"},
           {"text": {"type": "plain_text", "text": "web-1.4.0 · us-east-1 · 6d"}, "value": "ami-1@us-east-1"},
           {"text": {"type": "plain_text", "text": "web-1.3.0 · us-east-1 · 40d"}, "value": "ami-2@us-east-1"}]


@pytest.mark.parametrize(("answer", "value"), [("2", "ami-1@us-east-1"), ("WEB (current version)", "family:web"),
                                               ("family:web", "family:web"), ("1.3.0", "ami-2@us-east-1")])
def test_an_option_is_picked_by_number_label_value_or_a_unique_part(answer, value):
    assert pick_option(OPTIONS, answer)["value"] == value


@pytest.mark.parametrize(("answer", "problem"), [("4", "from 1 to 3"), ("web-1", "matches 2 options"),
                                                 ("db", "no option matches")])
def test_an_unclear_option_is_refused(answer, problem):
    with pytest.raises(LookupError, match=problem):
        pick_option(OPTIONS, answer)


def test_form_state_has_slacks_shape_with_initial_values_kept():
    view = {"blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "intro"}},
        {"type": "input", "block_id": "image", "element": {"type": "static_select", "action_id": "v",
                                                           "options": OPTIONS}},
        {"type": "input", "block_id": "type", "element": {"type": "plain_text_input", "action_id": "v",
                                                          "initial_value": "t3.micro"}},
        {"type": "input", "element": {"type": "number_input", "action_id": "n"}},
    ]}
    state = form_state(view, {"image": OPTIONS[0], "block-3": "2"})
    assert state == {"image": {"v": {"type": "static_select", "selected_option": OPTIONS[0]}},
                     "type": {"v": {"type": "plain_text_input", "value": "t3.micro"}},
                     "block-3": {"n": {"type": "number_input", "value": "2"}}}


def numbered():
    counter = iter(range(1, 100))
    return lambda block, element: next(counter)


def test_mrkdwn_reads_as_plain_text():
    names = {"U0BOB": "bob", "C0OPS": "ops"}
    text = ("*Approved* by <@U0BOB> in <#C0OPS> :white_check_mark: — see <https://x.example/r|the request> "
            "&lt;not a tag&gt; &amp; `keep_snapshots` _soon_ ~gone~ <!here> <@U0NEW>")
    assert render.mrkdwn(text, names) == ("Approved by @bob in #ops ✅ — see the request (https://x.example/r) "
                                          "<not a tag> & `keep_snapshots` soon gone @here @U0NEW")
    assert render.mrkdwn("snake_case_name and 09:00:00 :unknown_emoji:") == \
        "snake_case_name and 09:00:00 :unknown_emoji:"


def test_blocks_render_as_lines_with_numbered_buttons():
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Deregister web-1"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "Why: *cannot be undone*"},
         "fields": [{"type": "mrkdwn", "text": "*Region*\nus-east-1"}, {"type": "mrkdwn", "text": "15 GiB"}]},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "`req-1`"},
                                         {"type": "plain_text", "text": "0 of 1"}]},
        {"type": "actions", "block_id": "a", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "action_id": "approve",
             "style": "primary", "confirm": {"title": {"type": "plain_text", "text": "Sure?"}}},
            {"type": "button", "text": {"type": "plain_text", "text": "Reject"}, "action_id": "reject",
             "style": "danger"},
            {"type": "button", "text": {"type": "plain_text", "text": "Docs"}, "action_id": "docs",
             "url": "https://docs.example"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "Pick one"},
         "accessory": {"type": "static_select", "action_id": "pick", "options": OPTIONS,
                       "placeholder": {"type": "plain_text", "text": "an image"}}},
        {"type": "image", "image_url": "https://x.example/i.png", "alt_text": "a chart"},
        {"type": "video"},
    ]
    assert render.render_blocks(blocks, numbered()) == [
        "== Deregister web-1 ==",
        "  Why: cannot be undone",
        "  • Region: us-east-1",
        "  • 15 GiB",
        "  " + "-" * 40,
        "  › `req-1` · 0 of 1",
        "  [1] Approve…  [2] Reject (danger)  [3] Docs ↗ https://docs.example",
        "  Pick one   [4] ▾ an image",
        "  [image: a chart]",
        "  [video block]",
    ]


def test_a_message_without_blocks_shows_its_text_and_buttons_are_unnumbered_without_a_numberer():
    assert render.render_message({"text": "*done* :tada:"}) == ["  done 🎉"]
    actions = [{"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Go"}}]}]
    assert render.render_blocks(actions) == ["  [Go]"]


def test_a_modal_renders_as_a_numbered_form_with_values_and_errors():
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Launch instances"},
            "submit": {"type": "plain_text", "text": "Launch"}, "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [{"type": "input", "block_id": "image", "label": {"type": "plain_text", "text": "Image"},
                        "element": {"type": "static_select", "options": OPTIONS}},
                       {"type": "input", "block_id": "type", "label": {"type": "plain_text", "text": "Type"},
                        "element": {"type": "plain_text_input", "initial_value": "t3.micro"}},
                       {"type": "input", "block_id": "name", "optional": True,
                        "label": {"type": "plain_text", "text": "Name"},
                        "hint": {"type": "plain_text", "text": "a tag"}, "element": {"type": "plain_text_input"}}]}
    lines = render.render_view(view, {"image": OPTIONS[1]}, errors={"type": "Not a type."})
    assert lines == ["[ Launch instances ]",
                     "  (1) Image*: web-1.4.0 · us-east-1 · 6d",
                     "  (2) Type*: t3.micro",
                     "      ⚠️ Not a type.",
                     "  (3) Name: —",
                     "      a tag",
                     "  <Launch>  <Cancel>"]
