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

from bot.core import regions
from bot.core.errors import UsageError
from bot.core.ids import ACCOUNT_ID, AMI_ID, INSTANCE_ID, REGION_NAME, SNAPSHOT_ID  # noqa: F401 (the parser's, too)
from bot.core.stages import STAGES, by_stage  # noqa: F401 (declared here, grouped there)

MAX_TEXT = 2000  # a slash command's text is capped by Slack at a few KB; real commands are short

# Slack clients "smarten" what people type: quotes become curly, "--" becomes an em or en dash.
SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
DASHED_FLAG = re.compile(r"(^|\s)[\u2014\u2013](?=[a-z])")
SINGLE_DASH = re.compile(r"-[a-z][a-z-]*$")


# Flag values checked by the parser itself, by metavar: every `--region R` is validated in one place, against
# botocore's region data (bot.core.regions), with a suggestion for a typo. Each check returns the problem or None.
FLAG_VALUES: dict[str, Callable[[str], str | None]] = {
    "R": regions.problem,
}


# What each flag means, for `/ami help <subcommand>`; (subcommand, flag) entries override the general one.
FLAG_DOCS: dict[str, str] = {
    "--region": "the region to look in or act in (default: every configured region)",
    "--source-region": "the region the image is in (default: found in any configured region)",
    "--force": "go ahead despite the warning that stopped the command (shown as dangerous where it matters)",
    "--name": "the name to give (instances: their Name tag; images: the AMI name)",
    "--family": "the image family (tag `Family`) the new image belongs to",
    "--version": "the version within its family (tag `Version`, natural order: 1.10 after 1.9)",
    "--subnet": "the subnet to launch into (default: [launch].subnet_id)",
    "--encrypt": "encrypt the copy's snapshots",
    "--kms-key": "the KMS key for --encrypt (default: the region's EBS default key)",
    "--keep-snapshots": "keep the image's snapshots (they go on costing money)",
    "--reboot": "reboot the instance first for a file-system-consistent image",
    "--arch": "the architecture of the snapshot's operating system (default x86_64)",
    "--boot-mode": "how the image boots (default: the architecture's usual mode)",
    "--copy": "copy the base image into this account under this name, starting a family",
    "--in": "deprecate after N days, hours or weeks (default: now)",
    "--at": "deprecate at this date (YYYY-MM-DD or an ISO time)",
    "--cooldown": "removing protection later takes 24 hours",
    "--days": "how many days deregistered images (and their snapshots) stay in the Recycle Bin (default 14)",
    "--tag": "only images (and snapshots) with this tag, KEY=VALUE (default: every one in the region)",
    "--account": "only this managed account, by name or id (default: every configured account)",
}
SUBCOMMAND_FLAG_DOCS: dict[tuple[str, str], str] = {
    ("rollout", "--groups"): "only these Auto Scaling groups (comma-separated names)",
    ("rollout", "--min-healthy"): "MinHealthyPercentage: the share of a group kept in service while it is replaced "
                                  "(default [rollout].min_healthy_percentage)",
    ("rollout", "--warmup"): "InstanceWarmup: seconds before a new instance counts as healthy (default "
                             "[rollout].instance_warmup_seconds)",
    ("rollout", "--checkpoints"): "pause points, ascending percentages, e.g. 20,50 (default [rollout].checkpoints)",
    ("copy", "--force"): "copy even when the destination already has an image of that name",
    ("copy", "--name"): "the copy's AMI name (default: the source's name)",
    ("launch", "--force"): "launch a deprecated image",
    ("launch", "--name"): "the instances' Name tag",
    ("launch", "--account"): "the managed account (name or id) to launch into, e.g. a workload account the image "
                             "is shared with (default: the account that owns the image)",
    ("create", "--account"): "the managed account (name or id) the instance is in and the image is made in "
                             "(default: the bot's own account)",
    ("register", "--account"): "the managed account (name or id) the snapshot is in and the image is registered "
                               "in (default: the bot's own account)",
    ("base", "--account"): "the managed account (name or id) to copy the base image into (default: the bot's own "
                           "account)",
    ("rollback", "--account"): "the managed account (name or id) the family was promoted in, when it is promoted "
                               "in several",
    ("promote", "--force"): "promote even though Amazon Inspector reports critical findings for the image",
    ("deregister", "--force"): "ask even though something still uses the image (the request shows it as dangerous)",
    ("revoke", "--reason"): "why it must not run (quote it: --reason \"CVE-2024-6387\"); the request, the image's "
                            "amibot:revoked tag, `/ami show` and the Home tab say it",
    ("revoke", "--descendants"): "revoke every image lineage knows was baked or copied from it too, in every managed "
                                 "account and region",
}


def flag_doc(spec: Subcommand, flag: str) -> str:
    return SUBCOMMAND_FLAG_DOCS.get((spec.name, flag)) or FLAG_DOCS.get(flag, "")


@dataclass(frozen=True)
class Arg:
    name: str
    required: bool = True
    rest: bool = False  # takes all remaining words
    pattern: re.Pattern | None = None
    hint: str = ""  # what a valid value looks like, for the error message
    # What the argument names, when it is an AWS thing ("image", "instance"): such an argument takes an id or a
    # name (resolved later, by bot.services.images.find_image for images), so only a value that starts like an id
    # (`id_prefix`) is checked against `pattern` here.
    kind: str = ""
    id_prefix: str = ""

    def checks(self, value: str) -> bool:
        """Whether the parser checks this value against `pattern` (an id), or leaves it to be resolved (a name)."""
        return self.pattern is not None and (not self.id_prefix or value.lower().startswith(self.id_prefix))


def image_arg(name: str = "image", **kwargs: Any) -> Arg:
    """An image, by AMI id or by its unique name (as `/ami show` takes it): every image-taking subcommand declares
    its image this way, so names work everywhere (tests/test_names_everywhere.py holds each one to it)."""
    kwargs.setdefault("pattern", AMI_ID)
    kwargs.setdefault("hint", "an AMI id like ami-0abc1234def567890, or the image's unique name")
    return Arg(name, kind="image", id_prefix="ami-", **kwargs)


def instance_arg(name: str = "instance", **kwargs: Any) -> Arg:
    """An instance, by id or by its Name tag."""
    return Arg(name, pattern=INSTANCE_ID, hint="an instance id like i-0abc1234def567890, or its Name tag",
               kind="instance", id_prefix="i-", **kwargs)


@dataclass(frozen=True)
class Subcommand:
    name: str
    summary: str
    usage: str
    example: str
    args: tuple[Arg, ...] = ()
    flags: dict[str, str | None] = field(default_factory=dict)  # "--region": "R" takes a value, None: boolean
    stage: str = ""  # one of STAGES: where `/ami help` lists it (the first of a stage gives the stage's example)
    changing: bool = False  # changes AWS state: operators only, allowed channels only
    aws: bool = True  # False: needs no AWS at all, so it runs on the jobs' quick lane and answers at once
    aliases: tuple[str, ...] = ()
    # Changing only with some arguments (e.g. `base --copy`): the runner then authorizes the account it changes.
    changing_when: Callable[[Invocation], bool] | None = None
    changing_form: str = ""  # how refusals name the changing form, e.g. "base --copy" (default: the name)
    # A changing command whose every step looks AWS up first (so running it again finishes what a crash left
    # and repeats nothing): re-run after a restart instead of only being reported.
    resumable: bool = False

    def changes(self, invocation: Invocation) -> bool:
        """Whether this invocation may change something (AWS, or an approval request): operators only."""
        return self.changing or (self.changing_when is not None and bool(self.changing_when(invocation)))

    @property
    def changing_label(self) -> str:
        return f"/ami {self.changing_form or self.name}"


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

    def by_stage(self) -> list[tuple[str, list[Subcommand]]]:
        return by_stage(self.specs)

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
        raise unknown_subcommand(registry, words[0])
    return parse_words(spec, words[1:], text)


def unknown_subcommand(registry: Registry, word: str) -> UsageError:
    """A mistyped subcommand: the suggestion with *its* usage, not the whole help; without a close match,
    the names of every subcommand on one line."""
    suggestion = registry.suggest(word.lower())
    if suggestion:
        spec = registry.lookup(suggestion)
        return UsageError(f"Unknown subcommand `{_shorten(word)}`. Did you mean `{suggestion}`?",
                          usage=usage_of(spec) if spec else None)
    names = ", ".join(spec.name for spec in registry.specs)
    return UsageError(f"Unknown subcommand `{_shorten(word)}`. Subcommands: {names}.",
                      usage="`/ami help &lt;subcommand&gt;` explains one, with its options and an example.")


def help_topic(registry: Registry, text: str) -> Subcommand | None:
    """For `/ami help <subcommand>` (or `/ami <subcommand> --help`): the subcommand asked about. None for plain
    help. Raises UsageError for help about a subcommand that does not exist."""
    try:
        words = tokenize(clean(text))
    except UsageError:
        return None
    if len(words) >= 2 and words[0] in ("help", "-h", "--help", "?"):
        spec = registry.lookup(words[1].lower())
        if spec is None:
            raise unknown_subcommand(registry, words[1])
        return spec
    return None


def parse_words(spec: Subcommand, words: list[str], text: str = "") -> Invocation:
    if any(word in ("-h", "--help") for word in words):
        asked = UsageError(spec.summary, usage=usage_of(spec))
        asked.help_for = spec  # answered with the subcommand's whole help
        raise asked
    flags: dict[str, Any] = {name.lstrip("-").replace("-", "_"): (False if metavar is None else None)
                             for name, metavar in spec.flags.items()}
    positionals: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("--"):
            name, _, inline = word.partition("=")
            if name not in spec.flags:
                raise UsageError(f"`{spec.name}` has no option `{_shorten(name)}`.{_did_you_mean(spec, name)}",
                                 usage=usage_of(spec))
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
                problem = check(inline) if check else None
                if problem:
                    raise UsageError(problem if problem.endswith(("?", ".")) else f"{problem}.", usage=usage_of(spec))
                flags[key] = inline
        elif SINGLE_DASH.match(word) and _did_you_mean(spec, word):  # `-region`: a flag with one dash, not a value
            raise UsageError(f"`{spec.name}` has no option `{_shorten(word)}`.{_did_you_mean(spec, word)}",
                             usage=usage_of(spec))
        else:
            positionals.append(word)
        index += 1
    return Invocation(spec, _bind(spec, positionals), flags, text)


def _did_you_mean(spec: Subcommand, name: str) -> str:
    """" Did you mean `--keep-snapshots`?" for the closest flag *this* subcommand declares; "" when none is close.
    Compared without the dashes, which every flag shares and which would make anything look close."""
    declared = {flag.lstrip("-"): flag for flag in spec.flags}
    close = difflib.get_close_matches(name.lstrip("-").lower(), list(declared), n=1, cutoff=0.6)
    return f" Did you mean `{declared[close[0]]}`?" if close else ""


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
        if value is not None and arg.checks(value) and not arg.pattern.match(value):
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
