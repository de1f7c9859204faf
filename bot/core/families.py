"""Which family an image belongs to: its family tag, else a team's own naming pattern, else its name
without the version.

The built-in rule, on the name split into words at ``-``, ``_``, ``/`` and spaces:

1. **With a date in the name** (``20240801``, ``v20240729``, ``2024.07.10``, ``2024-05-01T10-00-00Z``, or a
   dotted version holding one such as ``2.0.20240719.0``): every date goes, and so does every number after
   the first date (times, build and release counters: ``debian-12-amd64-20240717-1811``, RHEL's ``-82-``)
   and a full version right before it (``myapp-1.4.2-20240501``). Other numbers *before* the date stay: they
   name what the image is built on, not its build (``debian-12``, ``ubuntu-noble-24.04``,
   ``Windows_Server-2022``, ``amazon-eks-node-1.30``, ``PyTorch 2.3.1``).
2. **Without a date**: the last run of version words goes (``1.2.3``, ``v12``, ``2.0-rc1``, ``build-42``, and a
   commit hash right after a version, as in Bottlerocket's ``-v1.20.5-a3e8bda1``) — when it ends the name, or is
   unmistakably a version (dotted or ``v…``) in the middle of it (``web-1.2.3-x86_64``).
3. Always kept: architectures (``x86_64``, ``arm64``, ``aarch64``, ``i386``, ``amd64``) — an x86_64 and an arm64
   image are different families for keep-latest — and kernel or Kubernetes versions (``kernel-6.1``,
   ``k8s-1.30``), which say what the image is for.

So ``al2023-ami-2023.5.20240730.0-kernel-6.1-x86_64`` → ``al2023-ami-kernel-6.1-x86_64``,
``amzn-ami-hvm-2016.09.0.20161028-x86_64-gp2`` → ``amzn-ami-hvm-x86_64-gp2`` (one family for all its versions),
``web-2024-05-01T10-00-00Z`` → ``web``, ``web-1.2.3`` → ``web``. A name that is nothing but a version is its own
family. Teams with other conventions set ``[families].patterns``: regular expressions with a named group
``family``, tried in order before the built-in rule (the first that matches wins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SEPARATORS = "-_/ "
# Words that contain a separator but are one word: architectures, kernel/Kubernetes versions, ISO dates.
_WORD = re.compile(
    r"x86[-_]64"
    r"|(?:kernel|k8s)-\d+(?:\.\d+)*"
    r"|\d{4}-\d{2}-\d{2}(?:[T_ ]?\d{2}[-:.]?\d{2}(?:[-:.]?\d{2})?(?:\.\d+)?Z?)?(?=$|[-_/ ])"
    r"|build[-_]?\d+"
    r"|[^-_/ ]+", re.IGNORECASE)
_YMD = r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_DATE = re.compile(
    rf"v?{_YMD}(?:[T.]?\d{{2,6}}Z?)?(?:\.\d+)?"  # 20240801, v20240729, 20240701.1, 20240501T1000Z
    r"|(?:19|20)\d{2}\.(?:0?[1-9]|1[0-2])\.(?:0?[1-9]|[12]\d|3[01])"  # 2024.07.10
    r"|\d{4}-\d{2}-\d{2}.*"  # an ISO date or timestamp (one word, see _WORD)
    rf"|v?(?:\d+\.)+{_YMD}(?:\.\d+)*|v?{_YMD}(?:\.\d+)+",  # 2.0.20240719.0, 2016.09.0.20161028
    re.IGNORECASE)
_NUMBER = re.compile(r"v?\d+(?:\.\d+)*(?:(?:rc|beta|alpha|pre|dev|post)\d*)?|build[-_]?\d+", re.IGNORECASE)
_QUALIFIER = re.compile(r"(?:rc|beta|alpha|pre|dev|post|final|release)\d*", re.IGNORECASE)
_HASH = re.compile(r"(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}")
_FULL_VERSION = re.compile(r"v\d+(?:\.\d+)*|\d+\.\d+\.\d+(?:\.\d+)*", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_KEPT = re.compile(r"x86[-_]64|(?:kernel|k8s)-\d+(?:\.\d+)*", re.IGNORECASE)
_UNMISTAKABLE = re.compile(r"v\d+|\d+\.\d+.*|.*(?:rc|beta|alpha|pre|dev|post)\d*|build.*", re.IGNORECASE)


def _words(name: str) -> list[tuple[str, str]]:
    """(separator before, word) pairs; joining them gives the name back."""
    words, end = [], 0
    for match in _WORD.finditer(name):
        words.append((name[end:match.start()], match.group()))
        end = match.end()
    return words


def _kind(word: str) -> str:
    """What a word is: kept (architecture, kernel-…), date, number (a version), qualifier (rc1), hash, or word."""
    if not _DIGIT.search(word):
        return "qualifier" if _QUALIFIER.fullmatch(word) else "word"
    if _KEPT.fullmatch(word):
        return "kept"
    if _DATE.fullmatch(word):
        return "date"
    if _NUMBER.fullmatch(word):
        return "number"
    if _QUALIFIER.fullmatch(word):
        return "qualifier"
    return "hash" if _HASH.fullmatch(word) else "word"


def _drop(words: list[str], kinds: list[str]) -> set[int]:
    """Indexes of the words that make up the version."""
    dates = [index for index, kind in enumerate(kinds) if kind == "date"]
    if dates:
        dropped = set(dates)
        before = dates[0] - 1  # a full version right before the date is part of it: myapp-1.4.2-20240501
        while before >= 0 and kinds[before] == "number" and _FULL_VERSION.fullmatch(words[before]):
            dropped.add(before)
            before -= 1
        dropped.update(index for index in range(dates[0] + 1, len(words))
                       if kinds[index] in ("number", "qualifier", "hash"))
        return dropped
    last = None  # the last run of version words: (start, end)
    index = 0
    while index < len(words):
        if kinds[index] != "number":
            index += 1
            continue
        end = index + 1
        while end < len(words) and kinds[end] in ("number", "qualifier", "hash"):
            end += 1
        if end == len(words) or _UNMISTAKABLE.fullmatch(words[index]):
            last = (index, end)
        index = end
    return set(range(*last)) if last else set()


def name_family(name: str) -> str:
    """The built-in rule (see the module's docstring): the name without its version, dates and build numbers."""
    if not _DIGIT.search(name):
        return name.strip(SEPARATORS) or name
    pairs = _words(name)
    words = [word for _, word in pairs]
    dropped = _drop(words, [_kind(word) for word in words])
    if not dropped or len(dropped) == len(words):
        return name.strip(SEPARATORS) or name
    kept = [(separator, word) for index, (separator, word) in enumerate(pairs) if index not in dropped]
    family = kept[0][1] + "".join(separator + word for separator, word in kept[1:])
    return family.strip(SEPARATORS) or name


class FamilyTag(str):
    """The family tag's name ([digest].family_tag), carrying the [families].patterns along with it.

    It *is* the tag name (a str), so it goes through every caller that passed the tag name before, and
    ``family_of`` finds the team's patterns on it: no call site needs to change to honour them."""

    patterns: tuple[re.Pattern, ...]

    def __new__(cls, tag: str, patterns: Iterable[re.Pattern | str] = ()) -> FamilyTag:
        made = super().__new__(cls, tag)
        made.patterns = tuple(re.compile(p) if isinstance(p, str) else p for p in patterns)
        return made

    def __reduce__(self):
        return (FamilyTag, (str(self), tuple(p.pattern for p in self.patterns)))


def pattern_problem(text: str) -> str | None:
    """Why a [families].patterns entry cannot be used, or None."""
    try:
        compiled = re.compile(text)
    except re.error as error:
        return f"a regular expression, got {text!r} ({error})"
    if "family" not in compiled.groupindex:
        return f"a regular expression with a named group (?P<family>…), got {text!r}"
    return None


def family_of(name: str | None, tags: dict[str, str], family_tag: str = "Family",
              patterns: Iterable[re.Pattern] | None = None) -> str:
    """The family tag if set; else the first of the team's patterns that matches the name (its `family` group);
    else the name without its version (the built-in rule above). Never raises on odd input."""
    value = tags.get(family_tag) if tags else None
    if value:
        return value
    if not isinstance(name, str) or not name:
        return ""
    for pattern in getattr(family_tag, "patterns", ()) if patterns is None else patterns:
        match = pattern.search(name)
        if match and match.group("family"):
            return match.group("family")
    return name_family(name)
