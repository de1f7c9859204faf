"""The demo console: talk to the real app as a Slack user would, from a terminal or a script.

A line is one of:
    /ami …            a slash command, signed and sent to the app as the current user
    :as bob           act as another user (:users lists them)
    :click 3          press button [3] (or ``:click Approve``: the button with that label in the latest
                      message showing one, the first from the top); a confirm dialog asks y/n, a menu
                      asks which option
    :form / :close    fill in the open modal again / close it
    :digest           run the scheduled daily digest now
    :home             open the bot's App Home tab as the current user
    :expect TEXT      fail unless the last output contains TEXT (``:expect-not`` the opposite)
    :help, :users, :quit
    # comment

Everything the bot does in Slack — messages posted or edited, ephemeral answers, response_url
posts, modals, App Home, file uploads — is rendered from its Block Kit as it arrives at the fake
Slack (bot.devtools.render), buttons numbered ``[N]``. When a modal with inputs opens, the console
asks for each field (Enter keeps the value shown) and then whether to submit it.

After every line the console waits until the app is idle (listeners returned, background jobs done),
so a script reads deterministically. ``{name}`` in a line is replaced by the id of the image or
instance of that name (``{web-1.4.0}``, ``{web-1.4.0@eu-west-1}``, ``{web-builder}``).

A script step fails — and ``run`` returns 1 at once — when: an ``:expect`` does not hold, a console
command is unknown or malformed, a button to click does not exist (any more), the app answers a
request with an HTTP error, the bot's background work does not finish in time, a ``{name}`` does not
resolve, or a prompt gets an answer it cannot use. A message from the bot saying something went
wrong is *not* a failure by itself; ``:expect`` it when it matters.
"""

from __future__ import annotations

import itertools
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from bot.devtools import render
from bot.devtools.fakeslack import Call
from bot.devtools.local import LocalApp
from bot.devtools.slackclient import block_key, form_state, initial_value

STEP_TIMEOUT_SECONDS = 120
RULE_WIDTH = 78
FILE_PREVIEW_LINES = 8
FIRST_SYNTHETIC_TS = 1_800_000_000  # ephemeral answers have no ts in the fake; the console gives them one
CANCEL_ANSWERS = (":close", ":cancel")

# name -> (argument, what it does); the order is :help's order
CONSOLE_COMMANDS = {
    "as": ("NAME", "act as another user: a name from :users or any Slack user id U…"),
    "users": ("", "who is who in this workspace"),
    "click": ("N|LABEL", "press button [N], or the button labelled LABEL in the latest message with one"),
    "form": ("", "fill in the open modal again (after the bot pointed out errors)"),
    "close": ("", "close the open modal without submitting it"),
    "digest": ("", "run the scheduled daily digest now, as the scheduler would"),
    "home": ("", "open amibot's Home tab as the current user (after its background refresh)"),
    "expect": ("TEXT", "fail unless the output of the last step contains TEXT (for scripts)"),
    "expect-not": ("TEXT", "fail if the output of the last step contains TEXT (for scripts)"),
    "help": ("", "this list"),
    "quit": ("", "stop the demo (Ctrl-D or Ctrl-C too)"),
}
ALIASES = {"exit": "quit", "q": "quit", "?": "help", "user": "as", "who": "users"}
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9][\w.:/@+-]*)\}")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class StepFailed(Exception):
    """A step of a script did not do what it should; the message says what and why."""


class Quit(Exception):
    """The person asked to stop."""


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    role: str


@dataclass(frozen=True)
class Step:
    """One parsed console line. kind: "slash", "console", "comment", "blank" or "bad" (arg says why)."""

    kind: str
    name: str = ""
    arg: str = ""


def parse_line(line: str) -> Step:
    """Classify a console line; never raises (a malformed line is a "bad" step naming the problem)."""
    text = line.strip()
    if not text:
        return Step("blank")
    if text.startswith("#"):
        return Step("comment", arg=text)
    if text.startswith("/"):
        command, _, rest = text.partition(" ")
        if command != "/ami":
            return Step("bad", arg=f"{command} is not installed here; amibot's command is /ami")
        return Step("slash", command, rest.strip())
    if text.startswith(":"):
        word, _, rest = text[1:].partition(" ")
        name = ALIASES.get(word.lower(), word.lower())
        if name not in CONSOLE_COMMANDS:
            return Step("bad", arg=f"unknown console command :{word}; :help lists them")
        needs = CONSOLE_COMMANDS[name][0]
        if needs and not rest.strip():
            return Step("bad", arg=f":{name} needs {needs}")
        if not needs and rest.strip():
            return Step("bad", arg=f":{name} takes no argument")
        return Step("console", name, rest.strip())
    return Step("bad", arg="type /ami … to talk to the bot, or :help for the console's commands")


def help_lines() -> list[str]:
    lines = ["/ami …  a slash command, as the current user (/ami help lists them)"]
    for name, (argument, summary) in CONSOLE_COMMANDS.items():
        lines.append(f":{name} {argument}".ljust(18) + summary)
    lines += ["{name}   in a line: the id of the image or instance called name ({web-1.4.0@eu-west-1})",
              "# …     a comment"]
    return lines


def normalized(text: str) -> str:
    """For :expect: case and runs of whitespace do not matter."""
    return " ".join(text.split()).lower()


# --- what the console tracks ----------------------------------------------------------------------------

@dataclass
class Shown:
    """A message as the people in the demo see it now."""

    key: str
    channel: str | None
    ts: str | None
    message: dict
    visible_to: str | None = None  # the one user who sees an ephemeral message
    thread_ts: str | None = None
    deleted: bool = False


@dataclass
class Button:
    """A clickable element, numbered once; ``owner`` is the message key, "view:<id>" or "home:<user>"."""

    number: int
    owner: str
    block_id: str | None
    element: dict
    seen: int  # the render that last showed it: the most recent wins a label match
    position: int = 0  # its place in that render, top to bottom: the first wins within one message


@dataclass
class Origin:
    """Where a response_url leads back to: who asked, in which channel, from which message."""

    user: str
    channel: str | None
    message_key: str | None = None
    last_key: str | None = None  # the latest message posted through it


@dataclass
class Modal:
    id: str
    user: str
    view: dict
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    fresh: bool = True  # opened or replaced since the person last filled it in

    @property
    def fillable(self) -> bool:
        return bool(self.view.get("submit")) and bool(render.inputs_of(self.view))


class Source(Protocol):
    """Where lines come from: a terminal (interactive) or a script file."""

    interactive: bool
    line_number: int

    def read(self, prompt: str) -> str | None: ...


class ScriptSource:
    """Lines of a script, one by one; prompts (y/n, form fields) take the next line too."""

    interactive = False

    def __init__(self, lines: list[str]):
        self._lines = iter(lines)
        self.line_number = 0

    def read(self, prompt: str) -> str | None:
        line = next(self._lines, None)
        if line is None:
            return None
        self.line_number += 1
        return line.rstrip("\r\n")


class TerminalSource:
    """A person at a terminal, with line editing and history when readline is available."""

    interactive = True
    line_number = 0

    def __init__(self):
        try:
            import readline  # noqa: F401  (importing it is what turns on editing for input())
        except ImportError:  # pragma: no cover - not on every platform
            pass

    def read(self, prompt: str) -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None


# --- the console ------------------------------------------------------------------------------------------

class Console:
    """Drives a LocalApp as the people in ``people`` (the first one starts), in ``channel``; see the module
    docstring. ``digest()`` runs the daily digest and says what happened; ``resolve(name)`` gives an id."""

    def __init__(self, local: LocalApp, people: list[Person], channel: str, channel_name: str, out: TextIO,
                 digest: Callable[[], str], resolve: Callable[[str], str] | None = None):
        self.local = local
        self.people = people
        self.user = people[0].id
        self.channel = channel
        self.out = out
        self.digest = digest
        self.resolve = resolve
        self.names = {person.id: person.name for person in people} | {channel: channel_name}
        self.source: Source = ScriptSource([])
        self.output: list[str] = []  # what the bot showed during the last step
        self.messages: dict[str, Shown] = {}
        self.modals: list[Modal] = []  # a stack, as Slack's views.push makes it
        self.buttons: dict[int, Button] = {}
        self._numbers: dict[tuple, int] = {}
        self._live: dict[str, set[int]] = {}
        self._renders = itertools.count(1)
        self._synthetic = itertools.count(1)
        self._origins: dict[str, Origin] = {}
        self._triggers: dict[str, str] = {}  # trigger_id -> user, so a modal is shown to whoever opened it
        self._uploads: dict[str, dict] = {}
        self._homes: dict[str, dict] = {}  # user -> their App Home view
        self._seen = 0

    @property
    def sim(self):
        return self.local.sim

    @property
    def prompt(self) -> str:
        return f"{self.names.get(self.user, self.user)}> "

    # --- running -------------------------------------------------------------------------------------------
    def run(self, source: Source) -> int:
        """Read and run lines until the source ends or :quit. A script stops at its first failed step
        and returns 1; a person is told what failed and carries on."""
        self.source = source
        steps = 0
        while True:
            self._drain()
            line = source.read(self.prompt)
            if line is None:
                break
            if not source.interactive:  # echo the script: comments as narration, steps after the prompt
                self._print(line if parse_line(line).kind in ("blank", "comment") else f"{self.prompt}{line}")
            try:
                steps += self._guarded(line)
            except Quit:
                break
            except StepFailed as failure:
                where = f"line {source.line_number}: " if not source.interactive else ""
                self._print(f"✗ {where}{failure}")
                if not source.interactive:
                    self._print(f"✗ the script failed at line {source.line_number}")
                    return 1
        if not source.interactive:
            self._print(f"✓ the script ran {steps} step(s) without a failure")
        return 0

    def _guarded(self, line: str) -> int:
        try:
            return self.run_line(line)
        except OSError as error:  # the app's server went away (or never answered): a failed step, not a crash
            raise StepFailed(f"could not reach the app: {error}") from error

    def run_line(self, line: str) -> int:
        """Run one line; returns 1 if it was a step (not blank or a comment). Raises StepFailed, Quit."""
        step = parse_line(line)
        if step.kind in ("blank", "comment"):
            return 0
        if step.kind == "bad":
            raise StepFailed(step.arg)
        if step.kind == "slash":
            self._slash(self._expand(step.arg))
        else:
            getattr(self, "_do_" + step.name.replace("-", "_"))(step.arg)
        return 1

    # --- console commands ------------------------------------------------------------------------------------
    def _do_as(self, who: str) -> None:
        wanted = who.lstrip("@")
        person = next((p for p in self.people if wanted.lower() in (p.name.lower(), p.id.lower())), None)
        if person is None and not USER_ID.match(wanted):
            known = ", ".join(p.name for p in self.people)
            raise StepFailed(f"no user {who!r}: use one of {known} or a Slack user id such as U0DAVE")
        self.user = person.id if person else wanted
        role = person.role if person else "not in the policy: a stranger"
        self._note(f"you are now @{self.names.get(self.user, self.user)} ({self.user}, {role})")

    def _do_users(self, _: str) -> None:
        for person in self.people:
            marker = "→" if person.id == self.user else " "
            self._note(f"{marker} {person.name:<8} {person.id:<10} {person.role}")

    def _do_help(self, _: str) -> None:
        for line in help_lines():
            self._print("  " + line)

    def _do_quit(self, _: str) -> None:
        raise Quit()

    def _do_expect(self, text: str) -> None:
        wanted = self._expand(text)
        if normalized(wanted) not in normalized("\n".join(self.output)):
            raise StepFailed(f"expected the last output to contain {wanted!r}")
        self._note(f"ok: found {wanted!r}")

    def _do_expect_not(self, text: str) -> None:
        unwanted = self._expand(text)
        if normalized(unwanted) in normalized("\n".join(self.output)):
            raise StepFailed(f"expected the last output not to contain {unwanted!r}")
        self._note(f"ok: no {unwanted!r}")

    def _do_digest(self, _: str) -> None:
        self.output = []
        try:
            outcome = self.digest()
        except Exception as error:  # the scheduler would only log it; a person wants to see it
            raise StepFailed(f"the daily digest crashed: {error!r}") from error
        self._settle()
        self._note(f"daily digest: {outcome}")
        if outcome == "already posted":
            self._note("it runs once a day per channel; `/ami digest` posts a fresh one here any time")

    def _do_home(self, _: str) -> None:
        """Open the Home tab as Slack does (an app_home_opened event), let the app finish — it publishes the
        tab from its cache at once and again when its background refresh has fresh numbers — and show the
        latest view this user got (the earlier ones are superseded, as in Slack)."""
        self.output = []
        self._drain()
        event = {"type": "app_home_opened", "user": self.user, "channel": f"D{self.user[1:]}", "tab": "home",
                 "event_ts": f"{time.time():.6f}"}
        response = self.sim.event(event)
        if response.status != 200:
            raise StepFailed(f"the app answered HTTP {response.status}: {response.body[:200]!r}")
        busy = self.local.wait_idle(STEP_TIMEOUT_SECONDS)
        calls = self.local.fake.calls_since(self._seen)
        self._seen += len(calls)
        mine = [call for call in calls if call.method == "views.publish" and call.params.get("user_id") == self.user]
        for call in calls:
            lines = self._apply(call)
            if call not in mine or call is mine[-1]:  # earlier views of this tab are superseded
                self._emit(lines)
        if busy:
            raise StepFailed(f"{busy} within {STEP_TIMEOUT_SECONDS} s")
        if not mine:
            raise StepFailed(f"amibot published no Home tab for @{self.names.get(self.user, self.user)}")
        if len(mine) > 1:
            self._note(f"the tab was published {len(mine)} times (from the cache, then refreshed); the latest is shown")

    def _do_form(self, _: str) -> None:
        modal = self._open_modal()
        self.output = []
        self._fill(modal)

    def _do_close(self, _: str) -> None:
        self._close(self._open_modal(), "closed without submitting")

    def _do_click(self, which: str) -> None:
        button = self._find_button(which)
        self.output = []
        element = button.element
        self._note(f"@{self.names.get(self.user, self.user)} clicks [{button.number}] "
                   f"{render.plain(element.get('text')) or render.element_label(element)}")
        action = {key: element.get(key) for key in ("type", "action_id", "value", "text")}
        action["block_id"] = button.block_id
        if element.get("confirm") and not self._confirm(element["confirm"]):
            self._note("cancelled: nothing was sent")
            return
        if render.options_of(element):
            option = self._choose(render.element_label(element), render.options_of(element), None, optional=False)
            if option is _CLOSED:
                self._note("cancelled: nothing was sent")
                return
            action["selected_option"] = option
        elif element.get("type") != "button":
            raise StepFailed(f"the console cannot operate a {element.get('type')} here")
        self._send_click(button, action)

    # --- talking to the app ----------------------------------------------------------------------------------
    def _slash(self, text: str) -> None:
        self.output = []
        body = self.sim.command_body(text, self.user, self.channel)
        fields = dict(urllib.parse.parse_qsl(body))
        self._origins[_key_of(fields["response_url"])] = Origin(self.user, self.channel)
        self._triggers[fields["trigger_id"]] = self.user
        self._acked(self.sim.post(body))
        self._settle()

    def _send_click(self, button: Button, action: dict) -> None:
        owner = button.owner
        if owner.startswith(("view:", "home:")):
            view = self._view_of(owner)
            payload = self.sim.block_actions_payload(action, self.user, None, view=view)
        else:
            shown = self.messages[owner]
            payload = self.sim.block_actions_payload(
                action, self.user, shown.channel, message_ts=shown.ts, ephemeral=shown.visible_to is not None,
                message={"type": "message", "user": "U0BOT", "bot_id": "B0BOT", "ts": shown.ts,
                         "text": shown.message.get("text") or "", "blocks": shown.message.get("blocks") or [],
                         **({"thread_ts": shown.thread_ts} if shown.thread_ts else {})})
            self._origins[_key_of(payload["response_url"])] = Origin(self.user, shown.channel, owner)
        self._triggers[payload["trigger_id"]] = self.user
        self._acked(self.sim.interact(payload))
        self._settle()

    def _view_of(self, owner: str) -> dict:
        kind, _, ident = owner.partition(":")
        if kind == "home":
            return {**self._homes[ident], "type": "home"}
        modal = next(m for m in self.modals if m.id == ident)
        return {**modal.view, "id": modal.id, "state": {"values": form_state(modal.view, modal.values)}}

    def _acked(self, response) -> dict:
        """Check the app's HTTP answer; show what an ack carried (help, an immediate answer)."""
        if response.status != 200:
            raise StepFailed(f"the app answered HTTP {response.status}: {response.body[:200]!r}")
        if not response.body:
            return {}
        try:
            ack = response.json()
        except ValueError:
            ack = {"text": response.body}
        if isinstance(ack, dict) and (ack.get("text") or ack.get("blocks")):
            shown = Shown(f"ack/{next(self._synthetic)}", self.channel, self._synthetic_ts(), ack,
                          visible_to=None if ack.get("response_type") == "in_channel" else self.user)
            self.messages[shown.key] = shown
            self._emit(self._render_message(shown, self._where(shown)))
        return ack if isinstance(ack, dict) else {}

    def _settle(self) -> None:
        """Wait for the app to finish what the step started, show what it did, then fill in a new form."""
        busy = self.local.wait_idle(STEP_TIMEOUT_SECONDS)
        self._drain()
        if busy:
            raise StepFailed(f"{busy} within {STEP_TIMEOUT_SECONDS} s")
        modal = self.modals[-1] if self.modals else None
        if modal and modal.fresh and modal.fillable and modal.user == self.user:
            self._fill(modal)

    # --- what the bot did in Slack ------------------------------------------------------------------------------
    def _drain(self) -> None:
        calls = self.local.fake.calls_since(self._seen)
        self._seen += len(calls)
        for call in calls:
            self._emit(self._apply(call))

    def _apply(self, call: Call) -> list[str]:
        handler = {
            "chat.postMessage": self._posted, "chat.update": self._updated, "chat.postEphemeral": self._ephemeral,
            "chat.delete": self._deleted, "response_url": self._responded, "views.open": self._view_opened,
            "views.push": self._view_opened, "views.update": self._view_updated, "views.publish": self._home,
            "file_upload": self._uploaded, "files.completeUploadExternal": self._file_shared,
        }.get(call.method)
        return handler(call) if handler else []

    def _posted(self, call: Call) -> list[str]:
        params = call.params
        shown = Shown(f"{params.get('channel')}/{call.ts}", params.get("channel"), call.ts, _message_of(params),
                      thread_ts=params.get("thread_ts") or None)
        self.messages[shown.key] = shown
        return self._render_message(shown, self._where(shown))

    def _updated(self, call: Call) -> list[str]:
        params = call.params
        key = f"{params.get('channel')}/{params.get('ts')}"
        shown = self.messages.setdefault(key, Shown(key, params.get("channel"), params.get("ts"), {}))
        shown.message = _message_of(params)
        return self._render_message(shown, f"amibot edited its message in {self._channel(shown.channel)}")

    def _ephemeral(self, call: Call) -> list[str]:
        params = call.params
        shown = Shown(f"eph/{call.ts}", params.get("channel"), call.ts, _message_of(params),
                      visible_to=params.get("user"), thread_ts=params.get("thread_ts") or None)
        self.messages[shown.key] = shown
        return self._render_message(shown, self._where(shown))

    def _deleted(self, call: Call) -> list[str]:
        key = f"{call.params.get('channel')}/{call.params.get('ts')}"
        return self._delete(key, f"amibot deleted a message in {self._channel(call.params.get('channel'))}")

    def _delete(self, key: str | None, what: str) -> list[str]:
        if key in self.messages:
            self.messages[key].deleted = True
        self._live.pop(key, None)
        return [self._rule(what)]

    def _responded(self, call: Call) -> list[str]:
        """A response_url post: a new (ephemeral by default) message, or a replacement or deletion of the
        message the interaction came from."""
        params = call.params
        origin = self._origins.setdefault(params.get("_key", ""), Origin(self.user, self.channel))
        if _true(params.get("delete_original")):
            return self._delete(origin.message_key or origin.last_key, "amibot deleted the message")
        target = self.messages.get(origin.message_key or origin.last_key or "")
        message = _message_of(params)
        if _true(params.get("replace_original")) and target is not None:
            target.message = message
            return self._render_message(target, "amibot replaced the message" + self._audience(target))
        in_channel = params.get("response_type") == "in_channel"
        shown = Shown(f"resp/{next(self._synthetic)}", origin.channel, self._synthetic_ts(), message,
                      visible_to=None if in_channel else origin.user, thread_ts=params.get("thread_ts") or None)
        self.messages[shown.key] = shown
        origin.last_key = shown.key
        return self._render_message(shown, self._where(shown))

    def _view_opened(self, call: Call) -> list[str]:
        view = call.params.get("view") if isinstance(call.params.get("view"), dict) else {}
        view_id = ((call.response or {}).get("view") or {}).get("id") or f"V{next(self._synthetic)}"
        modal = Modal(view_id, self._triggers.get(call.params.get("trigger_id", ""), self.user), view)
        if call.method == "views.open":
            for closed in self.modals:
                self._live.pop(f"view:{closed.id}", None)
            self.modals = []
        self.modals.append(modal)
        return self._render_modal(modal, f"a modal opened for @{self.names.get(modal.user, modal.user)}")

    def _view_updated(self, call: Call) -> list[str]:
        params = call.params
        modal = next((m for m in self.modals if m.id == params.get("view_id")
                      or (params.get("external_id") and m.view.get("external_id") == params.get("external_id"))), None)
        if modal is None:  # Slack refuses updates of closed views; the bot's code cannot tell, so show it
            return [self._rule("amibot updated a modal that is no longer open")]
        modal.view = params.get("view") if isinstance(params.get("view"), dict) else modal.view
        modal.values, modal.errors, modal.fresh = {}, {}, True
        return self._render_modal(modal, "the modal changed")

    def _home(self, call: Call) -> list[str]:
        user = call.params.get("user_id", "")
        view = call.params.get("view") if isinstance(call.params.get("view"), dict) else {}
        self._homes[user] = view
        owner = f"home:{user}"
        lines = render.render_blocks(view.get("blocks") or [], self._numberer(owner), self.names)
        return [self._rule(f"amibot's App Home, as @{self.names.get(user, user)} sees it"), *lines]

    def _uploaded(self, call: Call) -> list[str]:
        self._uploads[call.params.get("file_id", "")] = call.params
        return []

    def _file_shared(self, call: Call) -> list[str]:
        params = call.params
        where = self._channel(params.get("channel_id")) + (" (thread reply)" if params.get("thread_ts") else "")
        lines = [self._rule(f"amibot uploaded a file to {where}")]
        if params.get("initial_comment"):
            lines += _indented(render.mrkdwn(params["initial_comment"], self.names))
        for item in params.get("files") if isinstance(params.get("files"), list) else []:
            upload = self._uploads.get(item.get("id"), {})
            content = str(upload.get("content", "")).splitlines()
            lines.append(f"  📎 {upload.get('filename') or item.get('title') or item.get('id')} "
                         f"({len(content)} lines)")
            lines += [f"    | {text}" for text in content[:FILE_PREVIEW_LINES]]
            if len(content) > FILE_PREVIEW_LINES:
                lines.append(f"    | … {len(content) - FILE_PREVIEW_LINES} more lines")
        return lines

    # --- rendering --------------------------------------------------------------------------------------------
    def _numberer(self, owner: str) -> render.Number:
        """Numbers for the clickable elements of one render of ``owner``; the same button keeps its number."""
        live = self._live[owner] = set()
        render_id = next(self._renders)

        def number(block: dict, element: dict) -> int | None:
            if element.get("type") not in render.CLICKABLE:
                return None
            identity = (owner, block.get("block_id"), element.get("action_id"), element.get("value"),
                        render.element_label(element))
            n = self._numbers.setdefault(identity, len(self._numbers) + 1)
            self.buttons[n] = Button(n, owner, block.get("block_id"), element, render_id, len(live))
            live.add(n)
            return n

        return number

    def _render_message(self, shown: Shown, where: str) -> list[str]:
        return [self._rule(where), *render.render_message(shown.message, self._numberer(shown.key), self.names)]

    def _render_modal(self, modal: Modal, title: str) -> list[str]:
        lines = render.render_view(modal.view, modal.values, self._numberer(f"view:{modal.id}"), self.names,
                                   modal.errors)
        return [self._rule(title), *lines]

    def _where(self, shown: Shown) -> str:
        where = f"amibot in {self._channel(shown.channel)}"
        if shown.thread_ts:
            where += " (thread reply)"
        return where + self._audience(shown)

    def _audience(self, shown: Shown) -> str:
        if shown.visible_to is None:
            return ""
        return f", only visible to @{self.names.get(shown.visible_to, shown.visible_to)}"

    def _channel(self, channel: str | None) -> str:
        return f"#{self.names.get(channel, channel)}" if channel else "a direct message"

    @staticmethod
    def _rule(title: str) -> str:
        return f"--- {title} " + "-" * max(3, RULE_WIDTH - len(title) - 5)

    def _synthetic_ts(self) -> str:
        return f"{FIRST_SYNTHETIC_TS + next(self._synthetic)}.000000"

    # --- buttons -----------------------------------------------------------------------------------------------
    def _find_button(self, which: str) -> Button:
        live = {n for numbers in self._live.values() for n in numbers}
        if which.isdigit():
            button = self.buttons.get(int(which))
            if button is None:
                raise StepFailed(f"there is no button [{which}]")
            if button.number not in live:
                raise StepFailed(f"button [{which}] is gone: its message or modal changed since")
        else:
            candidates = [self.buttons[n] for n in live]
            matches = _label_matches(candidates, which)
            if not matches:
                raise StepFailed(f"no button labelled {which!r} on screen")
            latest = max(button.seen for button in matches)
            button = min((b for b in matches if b.seen == latest), key=lambda b: b.position)
        shown = self.messages.get(button.owner)
        if shown is not None and shown.visible_to not in (None, self.user):
            raise StepFailed(f"button [{button.number}] is in a message only "
                             f"@{self.names.get(shown.visible_to, shown.visible_to)} can see")
        return button

    def _confirm(self, dialog: dict) -> bool:
        confirm = render.plain(dialog.get("confirm")) or "Yes"
        deny = render.plain(dialog.get("deny")) or "Cancel"
        self._emit([self._rule(f"confirm: {render.plain(dialog.get('title'), self.names)}"),
                    *_indented(render.plain(dialog.get("text"), self.names)), f"  <{confirm}>  <{deny}>"])
        return self._yes_no(f"{confirm}? [y/n] ")

    # --- modals -------------------------------------------------------------------------------------------------
    def _open_modal(self) -> Modal:
        if not self.modals:
            raise StepFailed("no modal is open")
        return self.modals[-1]

    def _fill(self, modal: Modal) -> None:
        """Ask for every input of the modal, then whether to submit it."""
        modal.fresh = False
        if not modal.fillable:
            raise StepFailed("this modal has nothing to fill in")
        self._note("fill in the form: Enter keeps the value in (…), :close closes the modal")
        for index, block in enumerate(modal.view.get("blocks") or []):
            if block.get("type") != "input":
                continue
            key = block_key(block, index)
            current = modal.values.get(key, initial_value(block.get("element") or {}))
            value = self._ask_field(block, current)
            if value is _CLOSED:
                self._close(modal, "closed without submitting")
                return
            modal.values[key] = value
        submit = render.plain(modal.view.get("submit")) or "Submit"
        if self._yes_no(f"{submit}? [y/n] "):
            self._submit(modal)
        else:
            self._close(modal, "closed without submitting")

    def _ask_field(self, block: dict, current: Any) -> Any:
        element = block.get("element") or {}
        label = render.plain(block.get("label"), self.names) or "value"
        optional = bool(block.get("optional"))
        options = render.options_of(element)
        if options:
            return self._choose(label, options, current, optional,
                                many=element.get("type") in ("multi_static_select", "checkboxes"))
        while True:
            shown = f" ({current})" if current not in (None, "") else ""
            answer = self._ask(f"{label}{'' if optional else '*'}{shown}: ")
            if answer is None or answer.strip() in CANCEL_ANSWERS:
                return _CLOSED
            value = answer.strip() or current or None
            if value is None and not optional:
                self._invalid(f"“{label}” is required")
                continue
            return value

    def _choose(self, label: str, options: list[dict], current: Any, optional: bool, many: bool = False) -> Any:
        """Show the options numbered and ask for one (or several, comma-separated), by number or text."""
        self._emit([f"    {n}) {render.option_label(option)}" for n, option in enumerate(options, 1)])
        while True:
            shown = f" ({render.describe_value(current)})" if current else ""
            answer = self._ask(f"{label}{'' if optional else '*'} [1-{len(options)}]{shown}: ")
            if answer is None or answer.strip() in CANCEL_ANSWERS:
                return _CLOSED
            if not answer.strip():
                if current or optional:
                    return current
                self._invalid(f"“{label}” is required")
                continue
            try:
                picked = [pick_option(options, part) for part in answer.split(",")] if many else \
                    pick_option(options, answer)
            except LookupError as problem:
                self._invalid(str(problem))
                continue
            return picked

    def _submit(self, modal: Modal) -> None:
        view = {**modal.view, "id": modal.id}
        payload = self.sim.view_submission_payload(view, modal.user, form_state(modal.view, modal.values))
        self._triggers[payload["trigger_id"]] = modal.user
        ack = self._acked(self.sim.interact(payload))
        action = ack.get("response_action")
        if action == "errors":
            modal.errors = dict(ack.get("errors") or {})
            self._emit(self._render_modal(modal, "the form has errors"))
            self._note("fix them with :form, or :close the modal")
        elif action in ("update", "push") and isinstance(ack.get("view"), dict):
            if action == "update":
                modal.view, modal.values, modal.errors, modal.fresh = ack["view"], {}, {}, True
            else:
                modal = Modal(f"V{next(self._synthetic)}", modal.user, ack["view"])
                self.modals.append(modal)
            self._emit(self._render_modal(modal, "the modal changed"))
        else:
            self._close(modal, "submitted", all_of_them=action == "clear")
        self._settle()

    def _close(self, modal: Modal, how: str, all_of_them: bool = False) -> None:
        closing = list(self.modals) if all_of_them else [modal]
        for closed in closing:
            self._live.pop(f"view:{closed.id}", None)
            if closed in self.modals:
                self.modals.remove(closed)
        self._note(f"modal {render.plain(modal.view.get('title')) or ''} {how}".replace("  ", " "))

    # --- asking the person (or reading the script's answer) ----------------------------------------------------
    def _ask(self, prompt: str) -> str | None:
        while True:
            answer = self.source.read("  ? " + prompt)
            if answer is None:
                if not self.source.interactive:
                    raise StepFailed(f"the script ended while the console asked: {prompt.strip()}")
                return None
            if not self.source.interactive:
                if answer.lstrip().startswith("#"):
                    continue
                self._print(f"  ? {prompt}{answer}")
            return answer

    def _yes_no(self, prompt: str) -> bool:
        while True:
            answer = self._ask(prompt)
            if answer is None:
                return False
            word = answer.strip().lower()
            if word in ("y", "yes"):
                return True
            if word in ("n", "no") or word in CANCEL_ANSWERS:
                return False
            self._invalid(f"answer y or n, not {answer!r}")

    def _invalid(self, problem: str) -> None:
        """A person is told and asked again; a script fails."""
        if not self.source.interactive:
            raise StepFailed(problem)
        self._print(f"  ✗ {problem}")

    # --- output ---------------------------------------------------------------------------------------------------
    def _emit(self, lines: list[str]) -> None:
        """Show what the bot did; it counts as the step's output for :expect."""
        self.output.extend(lines)
        for line in lines:
            self._print(line)

    def _note(self, text: str) -> None:
        """The console speaking, not the bot (not part of the output :expect reads)."""
        self._print(f"· {text}")

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _expand(self, text: str) -> str:
        """Replace each {name} by the id of the image or instance with that name."""
        def one(match: re.Match) -> str:
            if self.resolve is None:
                raise StepFailed(f"cannot look up {match.group(0)} here")
            try:
                return self.resolve(match.group(1))
            except LookupError as problem:
                raise StepFailed(str(problem)) from None

        return PLACEHOLDER.sub(one, text)


_CLOSED = object()  # a prompt's answer that closes the modal


def pick_option(options: list[dict], answer: str) -> dict:
    """The option a person meant: its number, its exact label or value, or a unique part of its label."""
    text = answer.strip()
    if text.isdigit():
        index = int(text)
        if 1 <= index <= len(options):
            return options[index - 1]
        raise LookupError(f"pick a number from 1 to {len(options)}")
    lowered = text.lower()
    exact = [o for o in options if lowered in (render.option_label(o).lower(), str(o.get("value", "")).lower())]
    if len(exact) == 1:
        return exact[0]
    partial = [o for o in options if lowered in render.option_label(o).lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise LookupError(f"no option matches {text!r}")
    raise LookupError(f"{text!r} matches {len(partial)} options; use the number")


def _label_matches(buttons: list[Button], label: str) -> list[Button]:
    """Buttons whose label is ``label`` (any case); failing that, whose label starts with it."""
    wanted = label.strip().lower()
    labels = [(button, render.plain(button.element.get("text")).strip().lower()) for button in buttons]
    exact = [button for button, text in labels if text == wanted]
    return exact or [button for button, text in labels if text.startswith(wanted)]


def _message_of(params: dict) -> dict:
    return {"text": params.get("text") or "", "blocks": params.get("blocks") or [],
            "attachments": params.get("attachments") or []}


def _key_of(response_url: str) -> str:
    return response_url.rstrip("/").rsplit("/", 1)[-1]


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _indented(text: str) -> list[str]:
    return ["  " + line for line in text.split("\n")]
