"""Logging for every `amibot` subcommand: a human format by default, one JSON object per line with
AMIBOT_LOG_FORMAT=json (for log shippers), secrets masked in either.

Libraries are quiet by default: botocore, boto3 and urllib3 log every credential lookup and connection at
INFO, which used to mix into `check-config --aws` and `digest` output; they show WARNING and above unless
--log-level DEBUG, which shows their INFO lines too (never their DEBUG lines: those carry signed request
headers). Log lines go to stderr; stdout stays for what a command prints (policies, digests, exports).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime

FORMAT_VARIABLE = "AMIBOT_LOG_FORMAT"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Chatty at INFO (credentials found, connections opened), useless to an operator.
QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer")
# Bolt's INFO lines (Socket Mode sessions, reconnects) are worth seeing; its DEBUG lines dump every payload.
NEVER_BELOW_INFO = ("slack_bolt.App",)
# Environment variables whose values never appear in a log line, whatever logged them.
SECRET_VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_CLIENT_SECRET",
                    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Slack tokens have a recognisable shape: masked even when they did not come from this environment.
SLACK_TOKEN = re.compile(r"\b(xox[abposre]|xapp)-[A-Za-z0-9-]{6,}")
MASK = "•••"
# Bolt reads SLACK_BOT_TOKEN from the environment even when it is given a client (ours, with that very token),
# then warns that the token is unused, at every start: true, harmless and confusing to an operator.
KNOWN_NOISE = {"slack_bolt.App": ("As you gave `client` as well, `token` will be unused.",)}


class ConfigurationError(ValueError):
    """AMIBOT_LOG_FORMAT or --log-level has a value that is not one of the choices."""


def log_format(environ=os.environ) -> str:
    value = (environ.get(FORMAT_VARIABLE) or "text").strip().lower()
    if value not in FORMATS:
        raise ConfigurationError(f"{FORMAT_VARIABLE} must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


class _Masking:
    """Replaces secret values (from the environment at setup, and anything shaped like a Slack token)."""

    def __init__(self, environ=os.environ):
        # Longest first, so a secret that contains another is masked whole; very short values would mask noise.
        self.secrets = sorted({environ[name] for name in SECRET_VARIABLES if len(environ.get(name) or "") >= 6},
                              key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return SLACK_TOKEN.sub(lambda match: f"{match.group(1)}-{MASK}", text)


class HumanFormatter(logging.Formatter):
    def __init__(self, mask: _Masking):
        super().__init__(HUMAN_FORMAT)
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, and exception (the traceback's
    text) when there is one; newlines inside a message or a traceback are escaped, so a line is a record."""

    def __init__(self, mask: _Masking):
        super().__init__()
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": self.mask(record.getMessage())}
        if record.exc_info:
            entry["exception"] = self.mask(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.mask(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.mask(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests and the demo swap it), never a stale stream."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _drop_known_noise(record: logging.LogRecord) -> bool:
    return record.getMessage() not in KNOWN_NOISE.get(record.name, ())


def setup(level: str = "INFO", environ=os.environ) -> logging.Handler:
    """Configure the root logger for a subcommand; calling it again replaces what an earlier call set up.
    Raises ConfigurationError for an unknown format or level (the CLI turns it into a one-line error)."""
    name = (level or "INFO").upper()
    if name not in LEVELS:
        raise ConfigurationError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    chosen = log_format(environ)
    mask = _Masking(environ)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter(mask) if chosen == "json" else HumanFormatter(mask))
    handler.addFilter(_drop_known_noise)
    handler.amibot = True  # ours: replaced, not stacked, by the next setup()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "amibot", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, name))
    libraries = logging.INFO if name == "DEBUG" else logging.WARNING
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(libraries)
    # A role that cannot be assumed: amibot reports it naming the account; botocore's own warning would add a
    # traceback for every call that retries the refresh (DEBUG keeps everything).
    logging.getLogger("botocore.credentials").setLevel(libraries if name == "DEBUG" else logging.ERROR)
    for library in NEVER_BELOW_INFO:
        logging.getLogger(library).setLevel(max(logging.INFO, getattr(logging, name)))
    logging.captureWarnings(True)  # Python warnings become log records too: same format, same stream
    if chosen == "json":
        _log_uncaught_errors()
    return handler


@contextlib.contextmanager
def quiet(name: str):
    """Silence one logger for a moment (unless --log-level DEBUG): for a failure the caller reports itself."""
    logger = logging.getLogger(name)
    previous = logger.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _log_uncaught_errors() -> None:
    """In JSON mode a crash is a JSON line too (a raw traceback would break a log shipper's parsing)."""
    crash_log = logging.getLogger("amibot")

    def in_main(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        crash_log.critical("uncaught %s: %s", kind.__name__, value, exc_info=(kind, value, traceback))

    def in_thread(args):
        if args.exc_type is SystemExit:
            return
        crash_log.critical("uncaught %s in thread %s: %s", args.exc_type.__name__,
                           args.thread.name if args.thread else "?", args.exc_value,
                           exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = in_main
    threading.excepthook = in_thread
