"""Audit anchors (issue 14 §5): the chain's head kept outside the database, so it cannot be rewound quietly.

The hash chain alone cannot see a consistent rewrite: delete the last row and point the head back, or empty
the trail. Against an anchor — in moto's S3 with Object Lock, in the audit channel, or given by hand — both
fail `amibot audit verify`; anchors are written after approval decisions; a lost database with a history in
the bucket refuses to start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from bot.aws.clients import Aws
from bot.devtools.fakeslack import FakeSlack, free_port
from bot.durable import anchors, audit
from bot.durable.store import Store
from tests.support import seed
from tests.support.processes import base_env, wait_for

BUCKET = "amibot-anchors-test"


def filled(path, rows=5) -> Store:
    store = Store(path)
    for number in range(rows):
        audit.record(store, actor=f"U0{number}", action="command.list", outcome="ok", detail={"n": number})
    return store


def rewind_one_row(store: Store) -> None:
    """The attack the chain alone cannot see: two statements, and the shorter chain is consistent."""
    store.execute("DELETE FROM audit WHERE id = (SELECT last_id FROM audit_head)")
    store.execute("UPDATE audit_head SET last_hash = (SELECT hash FROM audit WHERE audit.id = audit_head.last_id - 1),"
                  " last_id = last_id - 1")


def test_a_rewound_trail_verifies_as_a_chain_but_not_against_its_anchor(tmp_path):
    store = filled(tmp_path / "a.db")
    anchor = anchors.current(store)
    assert anchor.count == anchor.last_id == 5 and anchors.check(store, anchor) is None
    rewind_one_row(store)
    assert audit.verify(store).ok  # the chain cannot tell
    problem = anchors.check(store, anchor)
    assert problem and "has 4 rows" in problem and "recorded 5" in problem
    bare = anchors.Anchor.parse(anchor.head)  # a head hash pinned by hand, without its count
    assert "no row has" in anchors.check(store, bare)


def test_an_emptied_trail_fails_and_a_longer_one_passes(tmp_path):
    store = filled(tmp_path / "b.db")
    anchor = anchors.current(store)
    audit.record(store, actor="U0", action="command.show", outcome="ok")
    assert anchors.check(store, anchor) is None  # rows added since the anchor are fine
    store.execute("DELETE FROM audit")
    store.execute("DELETE FROM audit_head")
    assert audit.verify(store).ok
    assert "has 0 rows" in anchors.check(store, anchor)


def test_a_consistently_rewritten_trail_diverges_from_its_anchor(tmp_path):
    store = filled(tmp_path / "c.db", rows=3)
    anchor = anchors.current(store)
    forged = filled(tmp_path / "forged.db", rows=0)
    for _ in range(4):
        audit.record(forged, actor="U0EVIL", action="command.list", outcome="ok")
    assert audit.verify(forged).ok
    assert "does not have the anchor" in anchors.check(forged, anchor)


def test_anchor_lines_parse_back():
    anchor = anchors.Anchor(7, 7, "a" * 64, "2026-12-01T00:00:00Z")
    assert anchors.Anchor.parse(anchor.line()) == anchor
    assert anchors.Anchor.parse(json.dumps(anchor.document())) == anchor
    assert anchors.Anchor.parse(f"7:{'a' * 64}").count == 7
    with pytest.raises(anchors.AnchorError):
        anchors.Anchor.parse("7:nothex")


def cli(db, *args, env_extra=None):
    env = {"PATH": "/usr/bin:/bin", "AMIBOT_DB": str(db), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bot.cli", "audit", *args], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(db), timeout=60)


def test_cli_verify_against_an_anchor_given_by_hand(tmp_path):
    store = filled(tmp_path / "d.db")
    anchor = anchors.current(store)
    intact = cli(store.path, "verify", "--anchor", f"{anchor.count}:{anchor.head}")
    assert intact.returncode == 0 and "intact: 5 rows" in intact.stdout and "contains the anchor" in intact.stdout
    rewind_one_row(store)
    for given in (f"{anchor.count}:{anchor.head}", anchor.head):
        rewound = cli(store.path, "verify", "--anchor", given)
        assert rewound.returncode == 1 and len(rewound.stderr.strip().splitlines()) == 1, rewound.stderr
        assert "does not match" in rewound.stderr
    bad = cli(store.path, "verify", "--anchor", "nonsense")
    assert bad.returncode != 0 and "--anchor" in bad.stderr


# --- S3 with Object Lock (moto) -----------------------------------------------------------------------

def locked_bucket(session):
    s3 = session.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    return s3


def test_anchors_land_in_s3_under_compliance_retention_and_cannot_be_deleted(aws, tmp_path):
    s3 = locked_bucket(aws)
    store = filled(tmp_path / "e.db")
    now = datetime.now(UTC)
    key = anchors.put_to_bucket(Aws(["us-east-1"], session=aws), BUCKET, anchors.current(store), 365, now=now)
    assert key.startswith("amibot/anchors/") and key.endswith("-5.json")
    head = s3.head_object(Bucket=BUCKET, Key=key)  # (moto 5.2.5 lacks GetObjectRetention; HEAD reports it)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert abs(head["ObjectLockRetainUntilDate"] - (now + timedelta(days=365))) < timedelta(minutes=1)
    version = head["VersionId"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    audit.record(store, actor="U9", action="command.show", outcome="ok")
    time.sleep(1.1)  # a later anchor sorts later
    anchors.put_to_bucket(Aws(["us-east-1"], session=aws), BUCKET, anchors.current(store), 365)
    newest = anchors.newest_in_bucket(Aws(["us-east-1"], session=aws), BUCKET)
    assert newest.count == 6 and newest.head == anchors.current(store).head


@pytest.fixture
def policy_data():
    return {"aws": {"regions": ["us-east-1"]}, "approvals": {"approvers": ["U0LEAD"]},
            "audit": {"channel": "C0AUDIT", "anchor_bucket": BUCKET}}


def test_an_approval_decision_is_anchored_in_the_channel_and_the_bucket(aws, fake_slack, make_harness, policy_data):
    s3 = locked_bucket(aws)
    harness = make_harness(policy_data)
    daily = fake_slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("channel") == "C0AUDIT")
    assert "(daily)" in daily.text  # the day's anchor, written at start
    image_id = seed.image(aws, "anchored")
    harness.command(f"deregister {image_id}", user="U0OPS")
    message = fake_slack.wait_for(lambda c: c.method == "chat.postMessage" and "approval.approve" in
                                  json.dumps(c.params.get("blocks", [])))
    request_id = next(element["value"] for block in message.params["blocks"] if block.get("type") == "actions"
                      for element in block["elements"] if element["action_id"] == "approval.approve")
    harness.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    harness.wait_idle()
    posted = fake_slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("channel") == "C0AUDIT"
                                 and "after request succeeded" in c.text)
    anchor = anchors.Anchor.parse(posted.text)
    row = harness.ctx.store.one("SELECT hash FROM audit WHERE id = ?", (anchor.last_id,))
    assert row["hash"] == anchor.head
    assert any("after request approved" in c.text for c in fake_slack.calls_to("chat.postMessage"))
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="amibot/anchors/")["Contents"]]
    assert len(keys) >= 3  # daily, approved, succeeded
    newest = anchors.newest_in_bucket(harness.ctx.aws.home, BUCKET)
    assert anchors.check(harness.ctx.store, newest) is None
    written = harness.ctx.store.query("SELECT reason, places FROM anchors ORDER BY id")
    assert all(set(json.loads(r["places"]).values()) == {"ok"} for r in written)
    posts = len(fake_slack.calls_to("chat.postMessage"))
    assert anchors.daily(harness.ctx) is False  # today's daily anchor was claimed at start: not written twice
    assert len(fake_slack.calls_to("chat.postMessage")) == posts


# --- a real process against a moto server -------------------------------------------------------------

@pytest.fixture
def moto_server():
    port = free_port()
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            boto3.client("s3", endpoint_url=url, region_name="us-east-1").list_buckets()
            break
        except Exception:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_start_is_refused_when_the_database_is_gone_but_anchors_show_a_history(tmp_path, moto_server):
    session = boto3.session.Session(region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    history = filled(tmp_path / "old.db")
    body = json.dumps(anchors.current(history).document())
    s3.put_object(Bucket=BUCKET, Key="amibot/anchors/20261201T000000Z-5.json", Body=body.encode(),
                  ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1))
    config = tmp_path / "amibot.toml"
    config.write_text(f'[aws]\nregions = ["us-east-1"]\n\n[audit]\nanchor_bucket = "{BUCKET}"\n')
    fake = FakeSlack().start()
    env = {**base_env(tmp_path, fake), "AMIBOT_CONFIG": str(config), "AWS_ENDPOINT_URL": moto_server}
    port = free_port()
    command = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    try:
        refused = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        lines = refused.stderr.strip().splitlines()
        assert "show a trail of 5 rows" in lines[-1] and "--new-database" in lines[-1], refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (tmp_path / "cli.db").exists()

        # The history in the bucket is checked by `audit verify` too: the old trail passes, a rewound one fails.
        verify_env = {"AMIBOT_CONFIG": str(config), "AWS_ENDPOINT_URL": moto_server,
                      **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
        assert cli(history.path, "verify", env_extra=verify_env).returncode == 0
        rewind_one_row(history)
        rewound = cli(history.path, "verify", env_extra=verify_env)
        assert rewound.returncode == 1 and f"s3://{BUCKET}" in rewound.stderr and "4 rows" in rewound.stderr

        started = subprocess.Popen([*command, "--new-database"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            status, _ = wait_for(f"http://127.0.0.1:{port}/healthz")
            assert status == 200
        finally:
            started.send_signal(signal.SIGTERM)
            output, _ = started.communicate(timeout=20)
        assert started.returncode == 0 and "--new-database" in output
    finally:
        fake.stop()


# --- anchors cannot be outvoted (issue 19 §6) -------------------------------------------------------------

def lock_until():
    return datetime.now(UTC) + timedelta(days=1)


def put_anchor(s3, anchor: anchors.Anchor, key: str | None = None) -> str:
    """What anyone holding the bot's role can do: put an object (Object Lock refuses overwriting and deleting)."""
    key = key or anchors.object_key(anchor)
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(anchor.document()).encode(), ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=lock_until())
    return key


def forge(path, rows: int) -> anchors.Anchor:
    """Rewrite the whole trail consistently (a new chain in place of the old file) and return its anchor."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    forged = filled(path, rows=0)
    for _ in range(rows):
        audit.record(forged, actor="U0EVIL", action="command.list", outcome="ok")
    forged.close()
    return anchors.current(Store(path, create=False), at="2026-12-02T00:00:00Z")


@pytest.fixture
def verify_bucket(tmp_path, moto_server):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    config = tmp_path / "amibot.toml"
    config.write_text(f'[aws]\nregions = ["us-east-1"]\n\n[audit]\nanchor_bucket = "{BUCKET}"\n')
    env = {"AMIBOT_CONFIG": str(config), "AWS_ENDPOINT_URL": moto_server,
           **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    return s3, lambda db: cli(db, "verify", env_extra=env)


def test_a_rewritten_trail_with_a_forged_newer_anchor_fails_against_the_older_one(tmp_path, verify_bucket):
    s3, verify = verify_bucket
    store = filled(tmp_path / "amibot.db", rows=5)
    genuine = put_anchor(s3, anchors.current(store, at="2026-12-01T00:00:00Z"))
    store.close()
    assert verify(tmp_path / "amibot.db").returncode == 0
    forged = put_anchor(s3, forge(tmp_path / "amibot.db", rows=6))  # newer, and it matches the forged trail
    result = verify(tmp_path / "amibot.db")
    assert result.returncode == 1, result.stdout
    assert f"s3://{BUCKET}/{genuine}" in result.stderr and forged not in result.stderr
    assert "does not have the anchor" in result.stderr and "Traceback" not in result.stderr


def test_a_new_version_under_an_anchors_key_does_not_hide_it(tmp_path, verify_bucket):
    s3, verify = verify_bucket
    store = filled(tmp_path / "amibot.db", rows=5)
    genuine = put_anchor(s3, anchors.current(store, at="2026-12-01T00:00:00Z"))
    store.close()
    put_anchor(s3, forge(tmp_path / "amibot.db", rows=5), key=genuine)  # a second version of the same key
    result = verify(tmp_path / "amibot.db")
    assert result.returncode == 1 and genuine in result.stderr, result.stderr


def test_anchors_are_ordered_by_rows_and_time_not_by_their_names(tmp_path, verify_bucket):
    """Written in the same second, "…Z-9.json" sorts after "…Z-12.json" as text; the 12-row anchor is newer."""
    s3, verify = verify_bucket
    store = filled(tmp_path / "amibot.db", rows=9)
    nine = put_anchor(s3, anchors.current(store, at="2026-12-01T00:00:00Z"))
    for _ in range(3):
        audit.record(store, actor="U0", action="command.list", outcome="ok")
    twelve = put_anchor(s3, anchors.current(store, at="2026-12-01T00:00:00Z"))
    assert nine.endswith("Z-9.json") and twelve.endswith("Z-12.json") and nine > twelve
    passed = verify(store.path)
    assert passed.returncode == 0 and "the newest the anchor of 2026-12-01T00:00:00Z (12 rows" in passed.stdout
    rewind_one_row(store)
    store.close()
    rewound = verify(tmp_path / "amibot.db")
    assert rewound.returncode == 1 and twelve in rewound.stderr and nine not in rewound.stderr, rewound.stderr
