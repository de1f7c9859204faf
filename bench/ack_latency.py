"""Ack latency under load: does amibot answer Slack within its 3 s while AWS is slow?

Fires N signed `/ami list` commands and N button clicks at concurrency C at `amibot serve` (a real
subprocess), while every AWS call takes DELAY seconds (a delaying proxy in front of a moto server), and
reports p50/p95/p99/max time-to-ack and how many outcomes reached the (fake) Slack Web API. In the same
run it measures the floor: a bare Bolt app that only acks, behind the same waitress server.

    .venv/bin/python bench/ack_latency.py                # 200 + 200 at concurrency 20, AWS delay 2 s
    .venv/bin/python bench/ack_latency.py -n 50 --delay 1

Target: amibot's p99 within 1.5x of the floor's and far below 3 s; every outcome posted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slack_sdk.signature import SignatureVerifier  # noqa: E402

try:
    from bot.devtools.fakeslack import FakeSlack, free_port
except ImportError:  # before the demo tools moved it
    from tests.fakeslack import FakeSlack, free_port

SECRET = "bench-signing-secret-0123456789"


def delaying_proxy(target_port: int, delay: float) -> ThreadingHTTPServer:
    """Forward every request to 127.0.0.1:target_port after `delay` seconds."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = _forward

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def signed_post(port: int, body: str) -> float:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/slack/events", body=body.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return elapsed


def command_body(fake: FakeSlack, key: str, number: int) -> str:
    return urllib.parse.urlencode({
        "command": "/ami", "text": "list", "user_id": "U0BENCH", "channel_id": "C0BENCH", "team_id": "T0",
        "response_url": fake.response_url(key), "trigger_id": f"{key}.{number}.{time.time_ns()}"})


def click_body(fake: FakeSlack, key: str, number: int) -> str:
    payload = {"type": "block_actions", "user": {"id": "U0BENCH"}, "team": {"id": "T0"},
               "trigger_id": f"{key}.{number}.{time.time_ns()}", "channel": {"id": "C0BENCH"},
               "container": {"type": "message", "channel_id": "C0BENCH", "message_ts": "1.1"},
               "response_url": fake.response_url(key),
               "actions": [{"action_id": "approval.approve", "value": f"req-bench{number:04d}",
                            "action_ts": f"{time.time():.6f}", "block_id": "b"}]}
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def fire(port: int, fake: FakeSlack, label: str, count: int, concurrency: int) -> dict[str, list[float]]:
    jobs = [("command", command_body(fake, f"{label}-cmd-{n}", n)) for n in range(count)]
    jobs += [("click", click_body(fake, f"{label}-click-{n}", n)) for n in range(count)]
    jobs.sort(key=lambda job: hash(job[1]))  # interleave commands and clicks
    results: dict[str, list[float]] = {"command": [], "click": []}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for kind, elapsed in zip([k for k, _ in jobs], pool.map(lambda job: signed_post(port, job[1]), jobs),
                                 strict=True):
            results[kind].append(elapsed)
    return results


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49], "p95": cut[94], "p99": cut[98], "max": ordered[-1]}


def outcomes(fake: FakeSlack, label: str) -> int:
    return len({c.params.get("_key") for c in fake.calls_to("response_url")
                if str(c.params.get("_key", "")).startswith(label)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="commands and clicks each (default 200)")
    parser.add_argument("-c", "--concurrency", type=int, default=20)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds every AWS call takes (default 2)")
    parser.add_argument("--outcome-timeout", type=float, default=600)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="amibot-bench-"))
    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [moto]
    fake = FakeSlack().start()
    log = open(work / "amibot.log", "w")  # noqa: SIM115 (closed in finally; the bot's stderr for post-mortems)
    try:
        wait_http(f"http://127.0.0.1:{moto_port}/moto-api/")
        aws_env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
        seed_env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"}
        subprocess.run([sys.executable, "-c", (
            "import boto3; ec2 = boto3.client('ec2');"
            "[ec2.register_image(Name=f'bench-{i}', RootDeviceName='/dev/sda1') for i in range(3)]")],
            env=seed_env, check=True)
        proxy = delaying_proxy(moto_port, args.delay)
        config = work / "amibot.toml"
        config.write_text('[aws]\nregions = ["us-east-1"]\n[approvals]\napprovers = ["U0LEAD"]\n')
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "AMIBOT_"))},
               **aws_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.server_port}",
               "SLACK_BOT_TOKEN": "xoxb-bench-token", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.url,
               "AMIBOT_DB": str(work / "amibot.db"), "AMIBOT_CONFIG": str(config)}
        bare_port, bot_port = free_port(), free_port()
        bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port", str(bare_port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(bare)
        bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "--log-level", "WARNING", "serve", "--host",
                                "127.0.0.1", "--port", str(bot_port)], env=env, cwd=work,
                               stdout=subprocess.DEVNULL, stderr=log)
        processes.append(bot)
        wait_http(f"http://127.0.0.1:{bot_port}/healthz")
        time.sleep(1)

        floor = fire(bare_port, fake, "floor", args.n, args.concurrency)
        started = time.monotonic()
        measured = fire(bot_port, fake, "amibot", args.n, args.concurrency)
        while outcomes(fake, "amibot") < 2 * args.n and time.monotonic() - started < args.outcome_timeout:
            time.sleep(0.5)
        arrived, took = outcomes(fake, "amibot"), time.monotonic() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        fake.stop()
        log.close()

    print(f"\n{args.n} commands + {args.n} clicks, concurrency {args.concurrency}, every AWS call {args.delay:g} s\n")
    print(f"{'time to ack (ms)':<28}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    rows = [("bare Bolt (floor), all", floor["command"] + floor["click"]),
            ("amibot, all", measured["command"] + measured["click"]),
            ("amibot, /ami list", measured["command"]), ("amibot, button clicks", measured["click"])]
    for label, values in rows:
        stats = percentiles(values)
        print(f"{label:<28}" + "".join(f"{stats[key] * 1000:>8.1f}" for key in ("p50", "p95", "p99", "max")))
    ratio = percentiles(rows[1][1])["p99"] / percentiles(rows[0][1])["p99"]
    print(f"\np99 amibot / floor: {ratio:.2f}x (target <= 1.5x)")
    print(f"outcomes posted: {arrived} of {2 * args.n} within {took:.0f} s")


if __name__ == "__main__":
    main()
