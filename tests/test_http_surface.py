"""Unauthenticated requests cost nothing (issue 14 §2), against the real `amibot serve` process.

Unsigned, stale or malformed requests get a tiny 401 before anything parses them, a body over the cap gets 413
without being read, the log stays small and the process's memory stays flat; a signed command longer than the
stored limit is kept cut, in the jobs table and in the audit trail, and the user is told.
"""

from __future__ import annotations

import json
import os
import time

from bot.slack.server import MAX_BODY_BYTES
from bot.slack.subcommands import MAX_TEXT
from tests.support.processes import command_body, wait_for

TEN_MB = 10 * 1024 * 1024


def test_unsigned_stale_and_malformed_requests_get_401_without_a_traceback(served):
    unsigned = served.post(b"payload={x")
    no_number = served.post(b"payload={x", {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=abc"})
    signed_abc = served.post(b"payload={x", served.signed_headers(b"payload={x", timestamp="abc"))
    stale_stamp = str(int(time.time()) - 600)
    stale = served.post(b"payload={x", served.signed_headers(b"payload={x", timestamp=stale_stamp))
    forged = served.post(b"payload={x", {"X-Slack-Request-Timestamp": str(int(time.time())),
                                         "X-Slack-Signature": "v0=" + "0" * 64})
    for status, body in (unsigned, no_number, signed_abc, stale, forged):
        assert status == 401 and len(body) < 100, (status, body)
    # Signed but not something Slack sends: a short 400, never a 500.
    status, body = served.post(b"payload={x", served.signed_headers(b"payload={x"))
    assert 400 <= status < 500 and len(body) < 200, (status, body)
    time.sleep(0.3)
    log = served.log.read_text()
    assert "Traceback" not in log and "payload={x" not in log
    assert served.process.poll() is None


def test_twenty_unsigned_ten_megabyte_posts_cost_nothing(served):
    body = b"payload=" + b"A" * TEN_MB
    served.post(b"payload=warmup")  # the first request imports what serving needs
    rss_before, log_before = served.rss_kb(), served.log.stat().st_size
    started = time.monotonic()
    statuses = [served.post(body)[0] for _ in range(20)]
    statuses.append(served.post(body, chunked=True)[0])  # no Content-Length: read no more than the cap
    elapsed = time.monotonic() - started
    assert set(statuses) <= {413, 401, 0} and 413 in statuses, statuses
    assert elapsed < 20, elapsed
    grown_log = served.log.stat().st_size - log_before
    grown_rss_mb = (served.rss_kb() - rss_before) / 1024
    assert grown_log < 8 * 1024, served.log.read_text()[-2000:]
    assert grown_rss_mb < 50, grown_rss_mb
    assert "AAAAAAAA" not in served.log.read_text()
    status, _ = wait_for(f"http://127.0.0.1:{served.port}/healthz")
    assert status == 200


def test_a_signed_ten_megabyte_command_is_413(served):
    body = command_body("list " + "A" * TEN_MB, served.fake)
    status, _ = served.post(body, served.signed_headers(body))
    assert status in (413, 0)
    body = command_body("list " + "A" * (MAX_BODY_BYTES + 10), served.fake, "t.2")
    status, answer = served.post(body, served.signed_headers(body))
    assert status == 413 and len(answer) < 100
    assert served.rows("SELECT count(*) FROM jobs") == [(0,)]


def test_a_signed_command_longer_than_the_limit_is_stored_cut_and_the_user_told(served):
    text = "list " + "A" * 5000
    body = command_body(text, served.fake, "t.long")
    status, _ = served.post(body, served.signed_headers(body))
    assert status == 200
    reply = served.fake.wait_for(lambda call: call.method == "response_url" and "characters long" in call.text)
    assert "5,005 characters long" in reply.text and "2,000" in reply.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not served.rows("SELECT 1 FROM audit WHERE action LIKE 'command.%'"):
        time.sleep(0.1)
    payloads = [json.loads(row[0]) for row in served.rows("SELECT payload FROM jobs")]
    assert payloads and all(len(p["text"]) <= MAX_TEXT for p in payloads)
    assert payloads[0]["text_chars"] == len(text)
    detail = json.loads(served.rows("SELECT detail FROM audit WHERE action LIKE 'command.%'")[0][0])
    assert len(detail["text"]) <= MAX_TEXT and detail["text_cut_from"] == len(text)
    assert max(len(row[0]) for row in served.rows("SELECT detail FROM audit")) < MAX_TEXT + 500
    assert os.path.getsize(served.db) < 2 * 1024 * 1024
