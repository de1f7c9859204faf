"""Ack and answer latency under load: nobody waits behind slow AWS.

Against a real `amibot serve` subprocess, while every AWS call takes DELAY seconds (a delaying proxy in front
of a moto server), U users at once (default 20) each run R rounds of five requests, one at a time, each waiting
for its answer before sending the next (a closed loop, like people in Slack):

- `/ami requests` and a usage error (`/ami list --bogus`): need no AWS;
- `/ami list bench`: AWS work (a listing, then launch permissions of what it shows);
- a refused click: "Approve" by someone who is not an approver (no AWS);
- an approval click: "Approve" by an approver (no AWS; the execution it starts is AWS work in the background).

For each kind it reports time to ack and time to answer (the ephemeral reply arriving at the fake Slack Web
API), p50/p95/p99/max. In the same run, first: the floor — a bare Bolt app that only acks, behind the same
waitress server, sent N commands + N clicks at concurrency U — and the list's own AWS time: one `/ami list
bench` alone, three times (median). Setup also opens the approval requests the clicks need, through
`/ami deregister` as a user would.

    .venv/bin/python bench/ack_latency.py                # 20 users x 4 rounds, AWS delay 2 s (about 4 minutes)
    .venv/bin/python bench/ack_latency.py -u 10 -r 2 --delay 1

Targets, checked at the end (exit status 1 if one is missed): answers that need no AWS p99 <= 1 s; AWS answers
(`/ami list`) p99 <= 2x the command's own AWS time; acks p99 <= 1.5x the floor's; every request answered.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
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
    from bot.devtools.fakeslack import FakeSlack, free_port

SECRET = "bench-signing-secret-0123456789"
NO_AWS = ("/ami requests", "usage error", "refused click", "approval click")
AWS_KIND = "/ami list"
KINDS = ("/ami requests", "usage error", AWS_KIND, "refused click", "approval click")
LIST_TEXT = "list bench"


class AnswerWatch(FakeSlack):
    """The fake Slack Web API, noting when the first answer for each response_url key arrives."""

    def __init__(self):
        super().__init__()
        self._answers: dict[str, tuple[float, object]] = {}
        self._arrived = threading.Condition()

    def _record(self, call) -> None:
        super()._record(call)
        key = call.params.get("_key")
        if call.method == "response_url" and key:
            with self._arrived:
                self._answers.setdefault(key, (time.perf_counter(), call))
                self._arrived.notify_all()

    def wait_answer(self, key: str, timeout: float):
        """(perf_counter at arrival, call) of the first answer for key, or None after timeout."""
        with self._arrived:
            self._arrived.wait_for(lambda: key in self._answers, timeout)
            return self._answers.get(key)

    def answered(self, prefix: str) -> int:
        with self._arrived:
            return sum(1 for key in self._answers if key.startswith(prefix))


def relay(handler: BaseHTTPRequestHandler, body: bytes, target_port: int, timeout: float = 60) -> None:
    """Send the request `handler` is serving (its body already read) to 127.0.0.1:target_port and write the
    answer back, with its own Content-Length (the proxies of bench/ share this)."""
    answer(handler, *fetch(handler, body, target_port, timeout))


def fetch(handler: BaseHTTPRequestHandler, body: bytes, target_port: int,
          timeout: float = 60) -> tuple[int, list[tuple[str, str]], bytes]:
    """The upstream's answer to the request `handler` is serving: status, headers, body."""
    upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=timeout)
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
    upstream.request(handler.command, handler.path, body=body, headers=headers)
    response = upstream.getresponse()
    payload = response.read()
    upstream.close()
    kept = [(key, value) for key, value in response.getheaders()
            if key.lower() not in ("transfer-encoding", "connection", "content-length")]
    return response.status, kept, payload


def answer(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
    handler.send_response(status)
    for key, value in headers:
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def delaying_proxy(target_port: int, delay: float) -> ThreadingHTTPServer:
    """Forward every request to 127.0.0.1:target_port after `delay` seconds."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            relay(self, body, target_port)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):  # moto gone at the end of the run: not news
            pass

    server = Server(("127.0.0.1", free_port()), Handler)
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


def signed_post(port: int, body: str) -> tuple[float, float]:
    """POST a signed Slack request; returns (perf_counter when sent, seconds to the ack)."""
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
    return started, elapsed


def command_body(fake: FakeSlack, key: str, text: str, user: str) -> str:
    return urllib.parse.urlencode({
        "command": "/ami", "text": text, "user_id": user, "channel_id": "C0BENCH", "team_id": "T0",
        "response_url": fake.response_url(key), "trigger_id": f"{key}.{time.time_ns()}"})


def click_body(fake: FakeSlack, key: str, request_id: str, user: str) -> str:
    payload = {"type": "block_actions", "user": {"id": user}, "team": {"id": "T0"},
               "trigger_id": f"{key}.{time.time_ns()}", "channel": {"id": "C0BENCH"},
               "container": {"type": "message", "channel_id": "C0BENCH", "message_ts": "1.1"},
               "response_url": fake.response_url(key),
               "actions": [{"action_id": "approval.approve", "value": request_id,
                            "action_ts": f"{time.time():.6f}", "block_id": "b"}]}
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def ask(port: int, fake: AnswerWatch, key: str, body: str, timeout: float) -> tuple[float, float | None, str]:
    """Send one request and wait for its answer: (seconds to ack, seconds to answer or None, answer text)."""
    sent, ack = signed_post(port, body)
    arrived = fake.wait_answer(key, timeout)
    if arrived is None:
        return ack, None, ""
    return ack, arrived[0] - sent, arrived[1].text


def fire_floor(port: int, fake: FakeSlack, count: int, concurrency: int) -> list[float]:
    """The floor: open-loop acks from the bare app (it answers nothing)."""
    bodies = [command_body(fake, f"floor-cmd-{n}", "list", "U0BENCH") for n in range(count)]
    bodies += [click_body(fake, f"floor-click-{n}", f"req-{n:08x}", "U0BENCH") for n in range(count)]
    random.Random(1).shuffle(bodies)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [ack for _, ack in pool.map(lambda body: signed_post(port, body), bodies)]


class LoadedFloor(threading.Thread):
    """The bare app acking alongside the main run (same machine load): tells the bot's own cost from the
    machine's (moto, the proxy and this script share its cores). Reported, not a target."""

    def __init__(self, port: int, fake: FakeSlack):
        super().__init__(daemon=True)
        self.port, self.fake, self.acks, self.stop = port, fake, [], threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            body = (command_body(self.fake, f"loaded-{number}", "list", "U0BENCH") if number % 2 else
                    click_body(self.fake, f"loaded-{number}", f"req-{number:08x}", "U0BENCH"))
            self.acks.append(signed_post(self.port, body)[1])
            self.stop.wait(0.05)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if len(ordered) == 1:
        return dict.fromkeys(("p50", "p95", "p99", "max"), ordered[0])
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49], "p95": cut[94], "p99": cut[98], "max": ordered[-1]}


def seed_images(env: dict, count: int) -> list[str]:
    """Three images to list (bench-0..2) and `count` to ask to deregister; returns the latter's ids."""
    script = ("import boto3, json; ec2 = boto3.client('ec2');"
              "[ec2.register_image(Name=f'bench-{i}', RootDeviceName='/dev/sda1') for i in range(3)];"
              f"print(json.dumps([ec2.register_image(Name=f'retire-{{i}}', RootDeviceName='/dev/sda1')['ImageId']"
              f" for i in range({count})]))")
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def open_requests(port: int, fake: AnswerWatch, image_ids: list[str], users: list[str],
                  concurrency: int) -> dict[str, list[str]]:
    """`/ami deregister` each image as one of the users; returns {user: [request ids they opened]}."""
    def one(job: tuple[int, str]) -> tuple[str, str]:
        number, image_id = job
        user = users[number % len(users)]
        _, took, text = ask(port, fake, f"setup-{number}", command_body(fake, f"setup-{number}",
                                                                        f"deregister {image_id}", user), 300)
        found = re.search(r"`(req-[0-9a-f]+)`", text)
        if took is None or not found:
            raise SystemExit(f"setup: /ami deregister {image_id} did not open a request: {text[:200]!r}")
        return user, found.group(1)

    opened: dict[str, list[str]] = {user: [] for user in users}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for user, request_id in pool.map(one, enumerate(image_ids)):
            opened[user].append(request_id)
    return opened


def request_body(fake: FakeSlack, kind: str, key: str, user: str, approver: str, approve: str, refuse: str) -> str:
    if kind == "/ami requests":
        return command_body(fake, key, "requests", user)
    if kind == "usage error":
        return command_body(fake, key, "list --bogus", user)
    if kind == AWS_KIND:
        return command_body(fake, key, LIST_TEXT, user)
    if kind == "refused click":
        return click_body(fake, key, refuse, user)
    return click_body(fake, key, approve, approver)


def run_user(port: int, fake: AnswerWatch, index: int, users: list[str], rounds: int, approve: list[str],
             refuse: str, timeout: float) -> list[tuple[str, float, float | None, str]]:
    """One user's closed loop: R rounds of the five kinds, in a shuffled order each round."""
    user, approver, results = users[index], f"U0LEAD{index:02d}", []
    shuffle = random.Random(index)
    for round_number in range(rounds):
        kinds = list(KINDS)
        shuffle.shuffle(kinds)
        for kind in kinds:
            key = f"run-{index}-{round_number}-{kind.replace(' ', '_').replace('/', '')}"
            body = request_body(fake, kind, key, user, approver, approve[round_number], refuse)
            ack, answer, text = ask(port, fake, key, body, timeout)
            results.append((kind, ack, answer, text))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-u", "--users", type=int, default=20, help="users at once (default 20)")
    parser.add_argument("-r", "--rounds", type=int, default=4, help="rounds of the five kinds per user (default 4)")
    parser.add_argument("-n", type=int, default=200, help="floor: commands and clicks each (default 200)")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds every AWS call takes (default 2)")
    parser.add_argument("--answer-timeout", type=float, default=300, help="seconds to wait for one answer")
    args = parser.parse_args()
    users = [f"U0BENCH{n:02d}" for n in range(args.users)]

    work = Path(tempfile.mkdtemp(prefix="amibot-bench-"))
    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [moto]
    fake = AnswerWatch().start()
    log = open(work / "amibot.log", "w")  # noqa: SIM115 (closed in finally; the bot's stderr for post-mortems)
    try:
        wait_http(f"http://127.0.0.1:{moto_port}/moto-api/")
        aws_env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
        retire = seed_images({**os.environ, **aws_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"},
                             args.users * (args.rounds + 1))
        proxy = delaying_proxy(moto_port, args.delay)
        config = work / "amibot.toml"
        approvers = ", ".join(f'"U0LEAD{n:02d}"' for n in range(args.users))
        config.write_text(f'[aws]\nregions = ["us-east-1"]\n[approvals]\napprovers = [{approvers}]\n')
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

        print("floor: the bare Bolt app …", flush=True)
        floor = fire_floor(bare_port, fake, args.n, args.users)
        print("the list's own AWS time: one `/ami list` at a time …", flush=True)
        alone = []
        for number in range(3):
            _, took, _ = ask(bot_port, fake, f"alone-{number}", command_body(fake, f"alone-{number}", LIST_TEXT,
                                                                             "U0SOLO"), args.answer_timeout)
            alone.append(took if took is not None else float("inf"))
        own_aws = statistics.median(alone)
        print(f"setup: {len(retire)} approval requests through `/ami deregister` …", flush=True)
        opened = open_requests(bot_port, fake, retire, users, args.users)
        print(f"{args.users} users x {args.rounds} rounds …", flush=True)
        started = time.monotonic()
        loaded = LoadedFloor(bare_port, fake)
        loaded.start()
        with ThreadPoolExecutor(max_workers=args.users) as pool:
            futures = [pool.submit(run_user, bot_port, fake, index, users, args.rounds, opened[users[index]][1:],
                                   opened[users[(index + 1) % len(users)]][0], args.answer_timeout)
                       for index in range(args.users)]
            results = [row for future in futures for row in future.result()]
        took = time.monotonic() - started
        loaded.stop.set()
        loaded.join()
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
    report(args, floor, loaded.acks, own_aws, alone, results, took)


def report(args, floor: list[float], loaded: list[float], own_aws: float, alone: list[float], results: list,
           took: float) -> None:
    sent = len(results)
    answered = [row for row in results if row[2] is not None]
    print(f"\n{args.users} users at once x {args.rounds} rounds of {len(KINDS)} kinds ({sent} requests, each user "
          f"waiting for each answer), every AWS call {args.delay:g} s; {took:.0f} s\n")
    print(f"{'time to ack (ms)':<30}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    ack_rows = [("bare Bolt (floor), all", floor), ("amibot, all", [row[1] for row in results]),
                ("bare Bolt, same time as amibot", loaded)]
    ack_rows += [(f"amibot, {kind}", [row[1] for row in results if row[0] == kind]) for kind in KINDS]
    for label, values in ack_rows:
        stats = percentiles(values)
        print(f"{label:<30}" + "".join(f"{stats[key] * 1000:>8.1f}" for key in ("p50", "p95", "p99", "max")))
    print(f"\n{'time to answer (s)':<30}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'answered':>10}")
    answer_p99 = {}
    for kind in KINDS:
        rows = [row for row in results if row[0] == kind]
        values = [row[2] for row in rows if row[2] is not None]
        stats = percentiles(values) if values else dict.fromkeys(("p50", "p95", "p99", "max"), float("inf"))
        answer_p99[kind] = stats["p99"]
        print(f"{kind:<30}" + "".join(f"{stats[key]:>8.2f}" for key in ("p50", "p95", "p99", "max"))
              + f"{len(values):>6}/{len(rows)}")
    calls = own_aws / args.delay
    print(f"\n`/ami {LIST_TEXT}` alone: {', '.join(f'{value:.2f}' for value in alone)} s "
          f"(median {own_aws:.2f} s, about {calls:.1f} sequential AWS calls of {args.delay:g} s)")
    ack_ratio = percentiles(ack_rows[1][1])["p99"] / percentiles(floor)["p99"]
    loaded_ratio = percentiles(ack_rows[1][1])["p99"] / percentiles(loaded)["p99"]
    refused = sum(1 for row in answered if row[0] == "refused click" and "not an approver" in row[3])
    approved = sum(1 for row in answered if row[0] == "approval click" and "Approved" in row[3])
    checks = [
        ("no-AWS answers p99 <= 1 s", max(answer_p99[kind] for kind in NO_AWS) <= 1.0,
         ", ".join(f"{kind} {answer_p99[kind]:.2f} s" for kind in NO_AWS)),
        (f"AWS answers p99 <= 2x own AWS time ({2 * own_aws:.2f} s)", answer_p99[AWS_KIND] <= 2 * own_aws,
         f"{answer_p99[AWS_KIND]:.2f} s = {answer_p99[AWS_KIND] / own_aws:.2f}x"),
        ("acks p99 <= 1.5x the floor", ack_ratio <= 1.5,
         f"{ack_ratio:.2f}x (against the bare app acking at the same time, on the same loaded machine: "
         f"{loaded_ratio:.2f}x)"),
        ("every request answered", len(answered) == sent, f"{len(answered)} of {sent}"),
        ("clicks did what they say", refused == approved == args.users * args.rounds,
         f"{refused} refused as non-approver, {approved} approved"),
    ]
    print()
    for label, ok, figure in checks:
        print(f"{'met ' if ok else 'MISSED'} {label}: {figure}")
    if not all(ok for _, ok, _ in checks):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
