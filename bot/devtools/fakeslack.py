"""A local fake of the Slack Web API, for end-to-end tests and for `amibot demo`.

``FakeSlack`` runs a ``ThreadingHTTPServer`` on a free port of 127.0.0.1 and answers the Web API
methods amibot uses (``auth.test``, ``chat.*``, ``users.info``, ``usergroups.users.list``,
``views.*``, ``conversations.info`` and the three-step ``files_upload_v2`` flow), plus
``response_url`` posts.  Every request is recorded as a ``Call`` so a test can assert on what the
bot said, using ``call.text`` for everything a user would read.

Why: the real bot talks to Slack through slack_sdk's ``WebClient``; pointing that client at
``FakeSlack().url`` (``WebClient(base_url=fake.url)``) exercises the real HTTP code path, request
encoding included, without network access or mocking slack_sdk internals.

Only the standard library is used.

    fake = FakeSlack().start()
    client = WebClient(token="xoxb-test", base_url=fake.url)
    ...
    call = fake.wait_for_method("chat.postMessage", where=lambda c: "done" in c.text)
    fake.stop()
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import socket
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
TEAM_URL = "https://fake.slack.com/"
FIRST_TS_SECONDS = 1_700_000_000
TS_STEP_MICROS = 100
POLL_INTERVAL_SECONDS = 0.02
HANDLER_IDLE_TIMEOUT_SECONDS = 30

# Parameters Slack expects as JSON-encoded strings in form bodies; always decoded in Call.params.
JSON_ENCODED_PARAMS = ("blocks", "attachments", "view", "files", "metadata")
# Parameters whose (nested) "text" values a user gets to read.
PLAIN_TEXT_PARAMS = ("text", "initial_comment")
STRUCTURED_TEXT_PARAMS = ("blocks", "attachments", "view")

AUTH_TEST_RESPONSE = {
    "ok": True,
    "url": TEAM_URL,
    "team": "Fake",
    "user": "amibot",
    "team_id": "T0FAKE",
    "user_id": "U0BOT",
    "bot_id": "B0BOT",
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Call:
    """One request received by the fake.

    ``method`` is the Web API method (``"chat.postMessage"``), ``"response_url"`` or ``"file_upload"``.
    ``headers`` has lower-cased names.  ``ts`` is the message ts the fake assigned or echoed.
    ``response`` is the Web API answer the fake sent (None for failures, uploads and response_url posts).
    """

    method: str
    params: dict
    headers: dict
    path: str
    ts: str | None = None
    response: dict | None = None

    @property
    def text(self) -> str:
        """``text`` plus every "text" string nested in blocks/attachments/view, newline-joined."""
        parts = [self.params[name] for name in PLAIN_TEXT_PARAMS if isinstance(self.params.get(name), str)]
        for name in STRUCTURED_TEXT_PARAMS:
            parts.extend(_nested_texts(self.params.get(name)))
        return "\n".join(parts)

    @property
    def token(self) -> str | None:
        """The bearer token the client sent, if any."""
        authorization = self.headers.get("authorization", "")
        return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


def _nested_texts(value: Any) -> list[str]:
    """Every string stored under a "text" key anywhere inside ``value``, in document order."""
    if isinstance(value, list):
        return [text for item in value for text in _nested_texts(item)]
    if not isinstance(value, dict):
        return []
    texts = []
    for key, item in value.items():
        if key == "text" and isinstance(item, str):
            texts.append(item)
        else:
            texts.extend(_nested_texts(item))
    return texts


# --------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------


def _flatten_query(parsed: dict[str, list[str]]) -> dict[str, Any]:
    return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}


def _parse_json_body(body: bytes) -> dict:
    value = json.loads(body.decode("utf-8")) if body.strip() else {}
    return value if isinstance(value, dict) else {"_body": value}


def _parse_multipart_body(body: bytes, content_type: str) -> dict:
    header = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    params = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True) or b""
        params[part.get_param("name", header="content-disposition")] = payload.decode("utf-8", "replace")
    return params


def _parse_body(body: bytes, content_type: str) -> dict:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json":
        return _parse_json_body(body)
    if media_type == "multipart/form-data":
        return _parse_multipart_body(body, content_type)
    if not body:
        return {}
    return _flatten_query(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))


def _decode_json_params(params: dict) -> dict:
    """Turn JSON-encoded form values (``blocks``, ``view``, ...) into lists/dicts."""
    for name in JSON_ENCODED_PARAMS:
        value = params.get(name)
        if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
            try:
                params[name] = json.loads(value)
            except ValueError:
                pass
    return params


def _method_and_key(path: str) -> tuple[str, str | None]:
    """Map a URL path to (method, key): ``/api/chat.update`` -> ("chat.update", None)."""
    prefix, _, rest = path.lstrip("/").partition("/")
    if prefix == "api":
        return rest, None
    if prefix == "response":
        return "response_url", rest
    if prefix == "upload":
        return "file_upload", rest
    return path, None


# --------------------------------------------------------------------------------------------
# Responses for individual Web API methods
# --------------------------------------------------------------------------------------------


def _message_response(call: Call, ts_field: str = "ts") -> dict:
    message = {"text": call.params.get("text"), "blocks": call.params.get("blocks"), "ts": call.ts}
    return {"ok": True, "channel": call.params.get("channel"), ts_field: call.ts, "message": message}


def _permalink_response(call: Call) -> dict:
    channel = call.params.get("channel", "")
    ts = str(call.params.get("message_ts", "")).replace(".", "")
    return {"ok": True, "permalink": f"{TEAM_URL}archives/{channel}/p{ts}"}


def _conversation_response(call: Call) -> dict:
    return {"ok": True, "channel": {"id": call.params.get("channel"), "name": "general", "is_member": True}}


def _utc_offset_seconds(tz_name: str) -> int:
    try:
        offset = datetime.now(zoneinfo.ZoneInfo(tz_name)).utcoffset()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


def _user_profile(user_id: str, overrides: dict) -> dict:
    name = overrides.get("name", user_id.lower())
    real_name = overrides.get("real_name", f"User {user_id}")
    tz = overrides.get("tz", "UTC")
    user = {"id": user_id, "team_id": "T0FAKE", "name": name, "real_name": real_name, "tz": tz}
    user.update(tz_offset=_utc_offset_seconds(tz), is_bot=False, deleted=False)
    user["profile"] = {"real_name": real_name, "display_name": name}
    user.update(overrides)
    return user


class FakeSlack:
    """In-process fake Slack Web API server; see the module docstring."""

    def __init__(self):
        self.calls: list[Call] = []
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict] = {}
        self.fail_next: dict[str, dict] = {}
        # Web API methods answered by another stand-in (bot.devtools.fakesocket answers apps.connections.open).
        self.methods: dict[str, Callable[[Call], dict]] = {}
        self._lock = threading.Lock()
        self._ts_counter = itertools.count(1)
        self._id_counter = itertools.count(1)
        self._upload_filenames: dict[str, str] = {}
        self._server: _FakeSlackServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._server = _FakeSlackServer((HOST, 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="FakeSlack",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """Web API base URL, for ``WebClient(base_url=...)``."""
        return f"{self.base}/api/"

    def response_url(self, key: str | None = None) -> str:
        return f"{self.base}/response/{key or uuid.uuid4().hex}"

    # ---- inspecting calls -----------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self._snapshot() if call.method == method]

    def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 10.0) -> Call:
        """Return the first recorded call matching ``predicate``, polling until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            match = next((call for call in self._snapshot() if predicate(call)), None)
            if match is not None:
                return match
            if time.monotonic() >= deadline:
                seen = self._describe_calls()
                raise AssertionError(f"no matching Slack call within {timeout}s; seen:\n{seen}")
            time.sleep(POLL_INTERVAL_SECONDS)

    def wait_for_method(
        self, method: str, timeout: float = 10.0, where: Callable[[Call], bool] | None = None
    ) -> Call:
        return self.wait_for(lambda call: call.method == method and (where is None or where(call)), timeout)

    def calls_since(self, start: int) -> list[Call]:
        """The calls recorded after the first ``start`` ones (a console follows the conversation this way)."""
        with self._lock:
            return list(self.calls[start:])

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def _snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def _describe_calls(self) -> str:
        lines = [f"  {call.method}: {call.text[:120]!r}" for call in self._snapshot()]
        return "\n".join(lines) or "  (no calls)"

    # ---- handling requests (called from server threads) -----------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _take_failure(self, method: str) -> dict | None:
        with self._lock:
            return self.fail_next.pop(method, None)

    def _next_ts(self) -> str:
        with self._lock:
            micros = next(self._ts_counter) * TS_STEP_MICROS
        return f"{FIRST_TS_SECONDS + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._id_counter):08d}"

    def _assign_ts(self, call: Call) -> None:
        if call.method in ("chat.postMessage", "chat.postEphemeral"):
            call.ts = self._next_ts()
        elif call.method == "chat.update":
            call.ts = call.params.get("ts")

    def _api_response(self, call: Call) -> dict:
        method = call.method
        if method in self.methods:
            return self.methods[method](call)
        if method == "auth.test":
            return dict(AUTH_TEST_RESPONSE)
        if method in ("chat.postMessage", "chat.update"):
            return _message_response(call)
        if method == "chat.postEphemeral":
            return _message_response(call, ts_field="message_ts")
        if method == "chat.getPermalink":
            return _permalink_response(call)
        if method == "conversations.info":
            return _conversation_response(call)
        if method == "usergroups.users.list":
            return self._usergroup_response(call)
        if method == "users.info":
            return self._user_response(call)
        if method in ("views.open", "views.publish", "views.update", "views.push"):
            return self._view_response(call)
        if method == "files.getUploadURLExternal":
            return self._upload_url_response(call)
        if method == "files.completeUploadExternal":
            return self._complete_upload_response(call)
        return {"ok": True}

    def _usergroup_response(self, call: Call) -> dict:
        usergroup = call.params.get("usergroup")
        if usergroup not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[usergroup])}

    def _user_response(self, call: Call) -> dict:
        user_id = call.params.get("user", "")
        return {"ok": True, "user": _user_profile(user_id, self.users.get(user_id, {}))}

    def _view_response(self, call: Call) -> dict:
        view = call.params.get("view")
        view = view if isinstance(view, dict) else {}
        view_id = call.params.get("view_id") or self._next_id("V")
        return {"ok": True, "view": {"id": view_id, **view}}

    def _upload_url_response(self, call: Call) -> dict:
        file_id = self._next_id("F")
        with self._lock:
            self._upload_filenames[file_id] = call.params.get("filename", "")
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _complete_upload_response(self, call: Call) -> dict:
        files = call.params.get("files")
        files = files if isinstance(files, list) else []
        completed = [{**item, "name": self._upload_filename(item.get("id"))} for item in files]
        return {"ok": True, "files": completed}

    def _upload_filename(self, file_id: str | None) -> str:
        with self._lock:
            return self._upload_filenames.get(file_id, "")


class _FakeSlackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeSlack):
        self.fake = fake
        super().__init__(address, _FakeSlackHandler)


class _FakeSlackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    timeout = HANDLER_IDLE_TIMEOUT_SECONDS
    server: _FakeSlackServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- request ------------------------------------------------------------------------

    def _handle(self) -> None:
        try:
            body = self._read_body()
            call = self._build_call(body)
            self._respond_to(call)
        except Exception as error:  # answer instead of leaving the client hanging
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._send_json(500, {"ok": False, "error": f"fake_slack_error: {error!r}"})

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunked_body(self) -> bytes:
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailer headers, up to the blank line
            pass
        return b"".join(chunks)

    def _build_call(self, body: bytes) -> Call:
        url = urlsplit(self.path)
        method, key = _method_and_key(url.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        if method == "file_upload":  # raw bytes; urllib labels them as form data regardless
            content = body.decode("utf-8", "replace")
            filename = self.server.fake._upload_filename(key)
            params = {"file_id": key, "filename": filename, "content": content, "length": len(body)}
            return Call(method, params, headers, self.path)
        params = _flatten_query(parse_qs(url.query, keep_blank_values=True))
        params.update(_parse_body(body, self.headers.get("Content-Type", "")))
        if key is not None:
            params["_key"] = key
        return Call(method, _decode_json_params(params), headers, self.path)

    # ---- response -----------------------------------------------------------------------

    def _respond_to(self, call: Call) -> None:
        fake = self.server.fake
        fake._assign_ts(call)
        failure = fake._take_failure(call.method)
        if failure is None and self.path.startswith("/api/"):
            call.response = fake._api_response(call)  # before recording: readers see the call complete
        fake._record(call)
        if failure is not None:
            self._send_failure(failure)
        elif call.method == "file_upload":
            self._send(200, f"OK - {call.params['length']}".encode(), "text/plain; charset=utf-8")
        elif call.method == "response_url":
            self._send_json(200, {"ok": True})
        elif call.response is not None:
            self._send_json(200, call.response)
        else:
            self._send_json(404, {"ok": False, "error": "unknown_path"})

    def _send_failure(self, failure: dict) -> None:
        if "status" not in failure:
            self._send_json(200, failure)
            return
        body = {"ok": False, "error": failure.get("error", "ratelimited")}
        retry_after = failure.get("retry_after")
        extra_headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._send_json(failure["status"], body, extra_headers)

    def _send_json(self, status: int, payload: dict, extra_headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", extra_headers)

    def _send(self, status: int, body: bytes, content_type: str, extra_headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
