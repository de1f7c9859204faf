"""Parsing `/ami …` text: pure functions, no Slack, no AWS.

Each subcommand is declared as a ``Subcommand`` (name, usage, example, positionals, flags) next to
its handler in handlers/commands/; the ``Registry`` collects them so that help, "did you mean" and
parsing all come from the same declarations.
"""

from __future__ import annotations

import difflib
import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.errors import UsageError

MAX_TEXT = 2000  # a slash command's text is capped by Slack at a few KB; real commands are short
AMI_ID = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$")
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8}([0-9a-f]{9})?$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION_NAME = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")

# Slack clients "smarten" what people type: quotes become curly, "--" becomes an em or en dash.
SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
DASHED_FLAG = re.compile(r"(^|\s)[\u2014\u2013](?=[a-z])")


# Flag values checked by the parser itself, by metavar: every `--region R` is validated in one place.
FLAG_VALUES: dict[str, tuple[re.Pattern, str]] = {
    "R": (REGION_NAME, "is not an AWS region name (e.g. eu-west-1)"),
}


@dataclass(frozen=True)
class Arg:
    name: str
    required: bool = True
    rest: bool = False  # takes all remaining words
    pattern: re.Pattern | None = None
    hint: str = ""  # what a valid value looks like, for the error message


@dataclass(frozen=True)
class Subcommand:
    name: str
    summary: str
    usage: str
    example: str
    args: tuple[Arg, ...] = ()
    flags: dict[str, str | None] = field(default_factory=dict)  # "--region": "R" takes a value, None: boolean
    changing: bool = False  # changes AWS state: operators only, allowed channels only
    aliases: tuple[str, ...] = ()


@dataclass
class Invocation:
    subcommand: Subcommand
    args: dict[str, Any]
    flags: dict[str, Any]
    text: str

    def __getitem__(self, name: str) -> Any:
        return self.args.get(name, self.flags.get(name))


Runner = Callable[..., Any]


class Registry:
    """Subcommands by name, in the order they were added (the order help lists them in)."""

    def __init__(self) -> None:
        self._specs: dict[str, Subcommand] = {}
        self._runners: dict[str, Runner] = {}
        self._aliases: dict[str, str] = {}

    def add(self, spec: Subcommand, runner: Runner) -> None:
        if spec.name in self._specs:
            raise ValueError(f"subcommand {spec.name} registered twice")
        self._specs[spec.name] = spec
        self._runners[spec.name] = runner
        for alias in spec.aliases:
            self._aliases[alias] = spec.name

    @property
    def specs(self) -> list[Subcommand]:
        return list(self._specs.values())

    def runner(self, name: str) -> Runner:
        return self._runners[name]

    def lookup(self, word: str) -> Subcommand | None:
        name = self._aliases.get(word, word)
        return self._specs.get(name)

    def suggest(self, word: str) -> str | None:
        names = list(self._specs) + list(self._aliases)
        close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
        if close:
            return self._aliases.get(close[0], close[0])
        prefixed = [name for name in self._specs if name.startswith(word[:3])] if len(word) >= 3 else []
        return prefixed[0] if prefixed else None


def clean(text: str) -> str:
    """Normalise what Slack hands us: smart quotes, dashed flags, control characters, odd spaces."""
    text = unicodedata.normalize("NFKC", text or "").translate(SMART)
    text = DASHED_FLAG.sub(lambda m: m.group(1) + "--", text)
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def tokenize(text: str) -> list[str]:
    if len(text) > MAX_TEXT:
        raise UsageError(f"That command is {len(text):,} characters long; amibot commands are short.")
    try:
        return shlex.split(text)
    except ValueError:
        raise UsageError("A quote is not closed. Put names with spaces in \"double quotes\".") from None


def parse(registry: Registry, text: str) -> Invocation | None:
    """Parse the text after `/ami`. Returns None for help; raises UsageError with usage attached."""
    words = tokenize(clean(text))
    if not words or words[0] in ("help", "-h", "--help", "?"):
        return None
    spec = registry.lookup(words[0].lower())
    if spec is None:
        suggestion = registry.suggest(words[0].lower())
        hint = f" Did you mean `{suggestion}`?" if suggestion else ""
        raise UsageError(f"Unknown subcommand `{_shorten(words[0])}`.{hint}", show_help=True)
    return parse_words(spec, words[1:], text)


def parse_words(spec: Subcommand, words: list[str], text: str = "") -> Invocation:
    if any(word in ("-h", "--help") for word in words):
        raise UsageError(spec.summary, usage=usage_of(spec))
    flags: dict[str, Any] = {name.lstrip("-").replace("-", "_"): (False if metavar is None else None)
                             for name, metavar in spec.flags.items()}
    positionals: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("--"):
            name, _, inline = word.partition("=")
            if name not in spec.flags:
                raise UsageError(f"`{spec.name}` has no option `{_shorten(name)}`.", usage=usage_of(spec))
            key = name.lstrip("-").replace("-", "_")
            if spec.flags[name] is None:
                flags[key] = True
            else:
                if not inline:
                    index += 1
                    if index >= len(words) or words[index].startswith("--"):
                        raise UsageError(f"`{name}` needs a value ({spec.flags[name]}).", usage=usage_of(spec))
                    inline = words[index]
                check = FLAG_VALUES.get(spec.flags[name])
                if check and not check[0].match(inline):
                    raise UsageError(f"`{_shorten(inline)}` {check[1]}.", usage=usage_of(spec))
                flags[key] = inline
        else:
            positionals.append(word)
        index += 1
    return Invocation(spec, _bind(spec, positionals), flags, text)


def _bind(spec: Subcommand, words: list[str]) -> dict[str, Any]:
    bound: dict[str, Any] = {}
    for arg in spec.args:
        if arg.rest:
            bound[arg.name] = " ".join(words) if words else None
            words = []
        elif words:
            bound[arg.name] = words.pop(0)
        else:
            bound[arg.name] = None
        value = bound[arg.name]
        if value is None and arg.required:
            raise UsageError(f"`{spec.name}` needs {_article(arg.name)}.", usage=usage_of(spec))
        if value is not None and arg.pattern and not arg.pattern.match(value):
            hint = f" ({arg.hint})" if arg.hint else ""
            raise UsageError(f"`{_shorten(value)}` is not a valid {arg.name}{hint}.", usage=usage_of(spec))
    if words:
        raise UsageError(f"`{spec.name}` does not take `{_shorten(' '.join(words))}`.", usage=usage_of(spec))
    return bound


def usage_of(spec: Subcommand) -> str:
    return f"Usage: `{_escape(spec.usage)}` — e.g. `{_escape(spec.example)}`"


def _escape(text: str) -> str:  # Slack reads <…> as a link or mention, even inside backticks
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _article(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _shorten(text: str, limit: int = 40) -> str:
    text = _escape(text.replace("`", "'"))
    return text if len(text) <= limit else text[: limit - 1] + "…"
