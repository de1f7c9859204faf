"""botocore, shared between accounts and tolerant of one bad field, through what botocore supports publicly.

amibot keeps a boto3 session per managed account. botocore's defaults give each session its own loader, so each
account would parse EC2's model (13.9 MiB) and the endpoint data (6.7 MiB) again: 437 MB for 20 sessions in a
probe. What this module does, in every process:

- `share_session_parts`: an assumed account's session is given the bot's own session's loader and response
  parser factory with `Session.register_component`. The loader caches what it parses (models, paginators, the
  endpoint data every session's endpoint resolver is built from), so every account shares one copy: 50 MB for
  the same 20 sessions. Each session still makes its own client classes, so handlers a session registers
  (`creating-client-class`, `before-call`, …) are its own.
- `lighten`: responses' timestamps are read with `datetime.fromisoformat` (botocore uses dateutil's general
  parser, a tenth of the digest's CPU), given to botocore with `set_parser_defaults(timestamp_parser=…)`; a
  timestamp no parser can read is kept as the text AWS sent instead of failing the whole page
  (bot.aws.data.parse_time then logs it and treats it as unknown).

And, only for a botocore this module was tested with (`TESTED_BOTOCORE`, pinned by tests/test_lean_botocore.py
against requirements.lock, which also checks the signatures relied on), one thing botocore has no public hook
for:

- `tolerate`: the same tolerance for numbers (a non-numeric VolumeSize stays text: bot.aws.data.integer makes
  that one field unknown, where botocore's ValueError failed the whole listing), and an answer that cannot be
  read is told apart from an endpoint without the API: the ResponseParserError notes whether AWS sent an HTTP
  5xx web page (``web_page``), and an empty or broken JSON success body is one too (botocore reads it as an
  empty answer, which would be "none" where nothing is known). bot.aws.clients says which it was.

One process only, `amibot digest` over many accounts (bot.cli), on a tested botocore:

- `client_classes_shared`: every client shares one service model and one client class per service. botocore builds
  both anew for each client (about 1 MB for EC2); the organisation digest has 16 account-regions × ~8 clients
  alive at once, and measured 222 MiB peak without this against a 150 MiB target (bench/README.md). It replaces
  two private methods of botocore's ClientCreator, and a class made for one session is then used by every
  session: safe there, where every session is amibot's own (`assumed_session`) and registers no
  `creating-client-class` handler; not in `serve` or `socket`, which bound their clients' lifetime instead
  (bot.aws.clients.AwsAccounts).

Another botocore logs one WARNING and runs stock: its own parsers (a malformed number then fails its listing, and
bot.aws.clients reads "web page" from the error's text), and a client class per client.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

# The botocore release series `tolerate` and `client_classes_shared` were written against: they override private
# methods (the parsers' `_handle_integer(self, shape, text)`, …; ClientCreator's `_load_service_model` and
# `_create_client_class`). tests/test_lean_botocore.py checks that requirements.lock's botocore is in one of them
# and that those signatures are still what this module relies on.
TESTED_BOTOCORE = ("1.44.",)

_untested_warned = threading.Event()


def tested_botocore() -> bool:
    """Whether the installed botocore is one this module was tested with; else one WARNING per process."""
    import botocore

    if botocore.__version__.startswith(TESTED_BOTOCORE):
        return True
    if not _untested_warned.is_set():
        _untested_warned.set()
        log.warning("botocore %s is not a version amibot was tested with (%s): botocore runs as it is (one "
                    "malformed number fails its listing; `amibot digest` over many accounts needs more memory)",
                    botocore.__version__, ", ".join(f"{series}x" for series in TESTED_BOTOCORE))
    return False


# --- timestamps -------------------------------------------------------------------------------------------

def _timestamp_parser() -> Callable[[Any], Any] | None:
    try:
        from botocore.utils import parse_timestamp
    except ImportError:
        return None

    def parse(value: Any) -> Any:
        """AWS's ISO 8601 timestamps ('2024-05-01T10:00:00.000Z') at C speed; anything else (epoch numbers,
        RFC 822 dates) the way botocore reads it. One that nothing can read stays the text AWS sent, so one bad
        item does not fail a page of hundreds (callers parse text themselves: bot.aws.data.parse_time)."""
        if type(value) is str and len(value) >= 19 and value[4] == "-" and value[10] == "T":
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                pass
        try:
            return parse_timestamp(value)
        except (ValueError, TypeError, OverflowError) as error:
            log.warning("AWS sent a timestamp that cannot be read, kept as text: %r (%s)", value, error)
            return value

    return parse


_PARSE_TIMESTAMP = _timestamp_parser()


def lighten(core) -> None:
    """Give a botocore session's response parsers the tolerant timestamp reader (public: set_parser_defaults)
    and, on a tested botocore, tolerance of malformed numbers and unreadable answers. Idempotent."""
    factory = core.get_component("response_parser_factory")
    if getattr(factory, "_amibot_lightened", False):
        return
    if _PARSE_TIMESTAMP is not None:
        factory.set_parser_defaults(timestamp_parser=_PARSE_TIMESTAMP)
    if tested_botocore():
        tolerate(factory)
    factory._amibot_lightened = True


# --- answers that cannot be read (wholly or in one field) ---------------------------------------------------

_NUMBER_HANDLERS = ("_handle_integer", "_handle_long", "_handle_float", "_handle_double")
_TOLERANT: dict[type, type] = {}
_WEB_PAGE = (b"<!doctype html", b"<html")


def tolerate(factory) -> bool:
    """Make the parsers `factory` creates tolerant (see the module's docstring). Idempotent; False if botocore's
    factory changed (its parsers are then used as they are)."""
    create = getattr(factory, "create_parser", None)
    if not callable(create):
        return False
    if getattr(factory, "_amibot_tolerant", False):
        return True

    def create_parser(protocol_name):
        parser = create(protocol_name)
        parser.__class__ = _tolerant_class(type(parser))  # a subclass adding behaviour only: same state
        return parser

    factory.create_parser = create_parser
    factory._amibot_tolerant = True
    return True


def _tolerant_class(parser_class: type) -> type:
    found = _TOLERANT.get(parser_class)
    if found is None:
        members: dict[str, Any] = {"parse": _noting(parser_class.parse)}
        for name in _NUMBER_HANDLERS:
            strict = getattr(parser_class, name, None)
            if strict is not None:
                members[name] = _number_or_text(strict)
        found = _TOLERANT[parser_class] = type(f"Tolerant{parser_class.__name__}", (parser_class,), members)
    return found


def _number_or_text(strict: Callable) -> Callable:
    def handle(self, shape, node):
        try:
            return strict(self, shape, node)
        except (ValueError, TypeError, OverflowError) as error:  # int("15 GiB"), float("n/a")
            text = getattr(node, "text", node)
            log.warning("AWS sent a number that cannot be read, kept as text: %r (%s)", text, error)
            return text

    return handle


def _noting(parse: Callable) -> Callable:
    def noted(self, response, shape):
        from botocore.parsers import BaseJSONParser, BaseRestParser, ResponseParserError

        status, body = response.get("status_code") or 0, response.get("body")
        body = body if isinstance(body, bytes) else None  # a streamed answer is left to botocore
        if body is not None and status < 300 and isinstance(self, BaseJSONParser) and \
                _unreadable_json(body, shape, isinstance(self, BaseRestParser)):
            error = ResponseParserError(f"Unable to parse response: an empty or broken JSON answer {body[:80]!r}")
            error.web_page = False
            raise error
        try:
            return parse(self, response, shape)
        except ResponseParserError as error:
            error.web_page = bool(body) and status >= 500 and body.lstrip()[:15].lower().startswith(_WEB_PAGE)
            raise

    return noted


def _unreadable_json(body: bytes, shape, rest: bool) -> bool:
    """A success body botocore would read as an empty answer: empty where the answer has a body (JSON protocol:
    always at least "{}"; REST answers may be empty), or text that is not JSON."""
    if rest and (getattr(shape, "serialization", None) or {}).get("payload"):
        return False  # the body is one member (a document, a blob): botocore's own reading stands
    if not body.strip():
        return not rest and bool(getattr(shape, "members", None))
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


# --- sessions per account ---------------------------------------------------------------------------------

_SHARED_COMPONENTS = ("data_loader", "response_parser_factory")


def share_session_parts(source_core, core) -> None:
    """Let a new botocore session (an assumed account's) use the read-only parts of `source_core`: its loader,
    with the models and endpoint data it has parsed and will parse, and its response parser factory. Public
    botocore API only (get_component, register_component). Call before the session makes a client."""
    lighten(source_core)
    for name in _SHARED_COMPONENTS:
        core.register_component(name, source_core.get_component(name))


# --- `amibot digest` over many accounts only ------------------------------------------------------------------

_SHARED_MODELS: dict[tuple, Any] = {}
_SHARED_LOCK = threading.RLock()  # re-entrant: building a client class may build another service's model


@contextmanager
def client_classes_shared() -> Iterator[bool]:
    """While inside, every botocore client of this process shares one service model and one client class per
    service (see the module's docstring: for `amibot digest` over many accounts only); botocore's own methods are
    put back on the way out, so nothing else in the process (a test run) is changed. Each model and class is built
    once under a lock, so threads creating their first clients together build it once, not once each. Yields
    False (botocore unchanged) on an untested botocore."""
    from botocore import client as botocore_client

    creator = botocore_client.ClientCreator
    if "_amibot_shared" in vars(creator) or not tested_botocore():
        yield "_amibot_shared" in vars(creator)  # already shared by an enclosing block, or untested: as it is
        return
    load, make_class = creator.__dict__["_load_service_model"], creator.__dict__["_create_client_class"]

    def shared(key: tuple, build: Callable[[], Any]) -> Any:
        found = _SHARED_MODELS.get(key)
        if found is None:
            with _SHARED_LOCK:
                found = _SHARED_MODELS.get(key)
                if found is None:
                    found = _SHARED_MODELS[key] = build()
        return found

    def shared_model(self, service_name, api_version=None):
        return shared(("model", service_name, api_version), lambda: load(self, service_name, api_version))

    def shared_class(self, service_name, service_model):
        return shared(("class", service_name, id(service_model)),
                      lambda: make_class(self, service_name, service_model))

    creator._load_service_model, creator._create_client_class = shared_model, shared_class
    creator._amibot_shared = True
    try:
        yield True
    finally:
        creator._load_service_model, creator._create_client_class = load, make_class
        del creator._amibot_shared
        _SHARED_MODELS.clear()
