"""botocore, made lighter for a bot that keeps clients for many accounts and parses large listings.

botocore's defaults suit a script with one session and a few clients. amibot keeps a session per managed
account and a client per (account, region, service), and its digest parses every image, snapshot and instance
of an organisation. Process-wide adjustments, each feature-detected (a botocore without the internals they
touch keeps its own behaviour), none changing what a client sends or what callers receive:

- `share_service_models`: every client shares one service model and one client class per service (botocore
  builds both anew for each client, about 1 MB for EC2), built once even when threads ask at the same moment.
- `share_event_aliases`: botocore's renaming of event names is cached once per process, not once per client.
- `lighten`: the session's loader reads botocore's model files as plain dicts with their documentation
  strings emptied (EC2's model: 13.9 MiB as botocore loads it, 6.5 MiB so, and parsed in half the time);
  responses' timestamps are read with `datetime.fromisoformat` (botocore uses dateutil's general parser, a
  tenth of the digest's CPU), and a timestamp no parser can read is kept as the text AWS sent instead of
  failing the whole page (bot.aws.data.parse_time then logs it and treats it as unknown).
- `tolerate`: the same for numbers (a non-numeric VolumeSize stays text: bot.aws.data.integer makes that one field
  unknown, where botocore's ValueError failed the whole listing), and an answer that cannot be read is told
  apart from an endpoint without the API: the ResponseParserError notes whether AWS sent an HTTP 5xx web page
  (``web_page``), and an empty or broken JSON success body is one too (botocore reads it as an empty answer,
  which would be "none" where nothing is known). bot.aws.clients says which it was.
- `share_session_parts`: an assumed account's session reuses the bot's own session's loader, endpoint data
  (6.7 MiB, otherwise parsed again per account) and parsers, and names boto3's data directory once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

_SHARED_MODELS: dict[tuple, Any] = {}
_SHARED_LOCK = threading.RLock()  # re-entrant: building a client class may build another service's model


def share_service_models() -> bool:
    """Make every botocore client of this process share one service model and one client class per service.

    botocore builds both anew for each client: a class with a method, a docstring and an operation model for each
    of the service's operations (EC2 has ~700), about 1 MB per EC2 client. One bot managing 50 accounts × 2
    regions keeps ~600 clients (one per account, region and service, reused), which would be ~300 MB of copies of
    the same read-only model. Both are read-only once built, so sharing them is safe across threads; each is
    built under a lock, so threads creating their first clients together parse a model once, not once each.
    Feature-detected: a botocore without these internals keeps its own behaviour (and the memory). Idempotent."""
    from botocore import client as botocore_client

    creator = botocore_client.ClientCreator
    if getattr(creator, "_amibot_shared", False):
        return True
    load, make_class = getattr(creator, "_load_service_model", None), getattr(creator, "_create_client_class", None)
    if load is None or make_class is None:
        return False

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
    return True


def share_event_aliases() -> bool:
    """Alias event names once per process, not once per client. botocore maps every event name it emits
    ("before-call.ec2.DescribeImages", about ten per API call) through a table of renamed services, caching the
    answer in each client's own emitter; a batch that makes a few clients per account-region for a hundred of
    them (`amibot digest` over an organisation) spent a tenth of its CPU refilling those caches. The answer
    depends only on the name and the (module-level) table, so one cache serves every emitter that uses it."""
    from botocore import hooks

    aliaser, table = getattr(hooks, "EventAliaser", None), getattr(hooks, "EVENT_ALIASES", None)
    original = getattr(aliaser, "_alias_event_name", None)
    if original is None or not isinstance(table, dict):
        return False
    if getattr(aliaser, "_amibot_shared", False):
        return True
    cache: dict[str, str] = {}

    def alias(self, event_name):
        if self._event_aliases is not table:  # an emitter with its own table keeps its own cache
            return original(self, event_name)
        found = cache.get(event_name)
        if found is None:
            found = cache[event_name] = original(self, event_name)
        return found

    aliaser._alias_event_name = alias
    aliaser._amibot_shared = True
    return True


# --- model files ------------------------------------------------------------------------------------------

def _without_documentation(item: dict) -> dict:
    # Shapes, members, operations and rule sets carry their reference documentation as a "documentation"
    # string; only help() and the docs generator read it. Emptied, not removed: botocore requires the key in
    # places (a service's clientContextParams). A member *named* documentation is a dict: left alone.
    if type(item.get("documentation")) is str:
        item["documentation"] = ""
    return item


def _lean_file_loader():
    """A botocore JSONFileLoader that parses to plain dicts (botocore asks for OrderedDicts, a relic of Python
    versions whose dicts had no order) and drops documentation strings. None if botocore's loader changed."""
    from botocore.loaders import JSONFileLoader

    if not callable(getattr(JSONFileLoader, "_load_file", None)):
        return None

    class LeanJSONFileLoader(JSONFileLoader):
        def _load_file(self, full_path, open_method):
            if not os.path.isfile(full_path):
                return None
            with open_method(full_path, "rb") as fp:
                payload = fp.read().decode("utf-8")
            return json.loads(payload, object_hook=_without_documentation)

    return LeanJSONFileLoader()


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
    """Apply the lean model loading and the fast timestamp parser to a botocore session (idempotent)."""
    if getattr(core, "_amibot_lightened", False):
        return
    try:
        loader = core.get_component("data_loader")
        from botocore.loaders import JSONFileLoader

        lean = _lean_file_loader()
        if lean is not None and type(getattr(loader, "file_loader", None)) is JSONFileLoader:
            loader.file_loader = lean  # only over botocore's own JSONFileLoader, not a caller's custom one
        factory = core.get_component("response_parser_factory")
        if _PARSE_TIMESTAMP is not None and callable(getattr(factory, "set_parser_defaults", None)):
            factory.set_parser_defaults(timestamp_parser=_PARSE_TIMESTAMP)
        tolerate(factory)
    except Exception:  # botocore's internals changed: its defaults still work
        log.debug("botocore session left as it is", exc_info=True)
    core._amibot_lightened = True


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
_SHARED_INTERNAL_COMPONENTS = ("endpoint_resolver", "exceptions_factory")


def share_session_parts(source_core, core) -> None:
    """Let a new botocore session (an assumed account's) reuse the read-only parts of `source_core`: the loader
    and its parsed models, the endpoint data, the response parsers and the per-service exception classes. Call
    before the session makes a client, from one thread (the source's lazy parts are built here)."""
    lighten(source_core)
    for name in _SHARED_COMPONENTS:
        try:
            core.register_component(name, source_core.get_component(name))
        except Exception:  # a botocore without this component: the session builds its own
            log.debug("botocore component %s not shared", name, exc_info=True)
    get_internal = getattr(source_core, "_get_internal_component", None)
    register_internal = getattr(core, "_register_internal_component", None)
    if get_internal is not None and register_internal is not None:
        for name in _SHARED_INTERNAL_COMPONENTS:
            try:
                register_internal(name, get_internal(name))
            except Exception:
                log.debug("botocore internal component %s not shared", name, exc_info=True)
    core._amibot_lightened = True


def dedupe_search_paths(core) -> None:
    """boto3 adds its data directory to the session's loader each time a boto3 Session wraps it; with the loader
    shared by every account that is one more directory to search per account, for every file botocore loads."""
    loader = core.get_component("data_loader")
    paths = getattr(loader, "search_paths", None)
    if isinstance(paths, list):
        paths[:] = list(dict.fromkeys(paths))
