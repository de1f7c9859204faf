"""Benchmark of `amibot digest` over an organisation: many accounts × regions through assumed roles, every AWS call
delayed by a proxy, next to the floor (the plain describe calls over the same targets at the same concurrency).

    .venv/bin/python bench/org_bench.py                              # 50 accounts x 2 regions x 200 images
    .venv/bin/python bench/org_bench.py --accounts 5 --images 60     # a quick run
    .venv/bin/python bench/org_bench.py --gc-on                      # also the digest with the cyclic GC left on

What it does:
1. Starts a moto server in this process (ThreadedMotoServer on 127.0.0.1, moto's preloaded public images off) and
   seeds every (account, region) directly through moto's backends (fast): N images in families of 50 with
   creation dates spread over two years, a tenth deregistered so their snapshots are orphaned, N/4 plain backup
   snapshots; then, over HTTP through a role assumed in that account with moto's STS (which maps a role ARN to its
   account), a few references: three instances (one stopped, one terminated: that one must not protect its image)
   and a launch template.
2. Puts a small HTTP proxy in front of the server that holds every request DELAY seconds (50 ms) and counts the
   requests per (account, region, service): the account from the request's access key (moto's own mapping from
   assumed-role keys to accounts), the region and service from its SigV4 credential scope.
3. Runs, as subprocesses pointed at the proxy with AWS_ENDPOINT_URL (started by bench/digest_bench.py's launcher,
   so peak RSS is the child's own):
   - the floor: a script that assumes each account's role once and issues the plain listings the digest reads
     (own images, own snapshots, instances, launch-template versions, launch configurations, Auto Scaling groups,
     fleets, Spot Fleets, SSM parameters, Image Builder recipes) for every (account, region) in one pool of
     MAX_CONCURRENCY threads, and computes nothing;
   - `amibot digest --dry-run --format json` with an AMIBOT_CONFIG listing every account in [[accounts]] and
     [aws].max_concurrency = MAX_CONCURRENCY.
   Each: wall time, the process's own CPU time (user + system) and peak RSS (os.wait4's rusage for that child
   alone), the AWS calls counted at the proxy, and this process's CPU meanwhile (moto and the proxy: when it is
   close to the wall time, the server, not the client, set the pace).
   Then, a diagnostic: the digest once more with the proxy answering each request it recorded during the
   digest's run instead of moto (every call then takes the delay and nothing more, as the bound assumes; a request
   not recorded goes to moto and is counted). With one moto process on a small machine, moto's own CPU time is
   what sets the first run's pace; the replayed run shows what the digest's own CPU leaves.
4. Checks the digest's findings in every account and region against what was seeded: exactly the expected stale
   images and orphaned snapshots, nothing in use reported.
Targets (issue 11): wall ≤ 1.3 × (total calls × DELAY / MAX_CONCURRENCY), CPU ≤ 1.2 × the floor's, peak RSS ≤
150 MiB, the same number of calls in every account-region, exact findings in every account.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import digest_bench as base  # its launcher, Seed model and digest wrapper; it imports no moto)
from ack_latency import answer, fetch  # the delaying proxies' forwarding

ROOT = base.ROOT
REGIONS = base.REGIONS
HOME = base.ACCOUNT  # the bot's own account (moto's default): it assumes a role in each managed account
ROLE_NAME = "amibot"
MAX_CONCURRENCY = 16
RSS_LIMIT_MB = 150
SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


def account_ids(count: int) -> list[str]:
    return [f"{100000000000 + number:012d}" for number in range(1, count + 1)]


def role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role/{ROLE_NAME}"


FLOOR = r'''
import json, sys, threading, boto3
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
spec = json.loads(sys.argv[1])
config = Config(max_pool_connections=64, read_timeout=60)
once = Config(max_pool_connections=64, read_timeout=60, retries={"max_attempts": 1, "mode": "standard"})
source = boto3.session.Session()
loader = source._session.get_component("data_loader")  # one parsed copy of each service model for every session
sts = source.client("sts", config=config)
sessions, locks = {}, {account: threading.Lock() for account, _role in spec["accounts"]}

def clients(account, role, region):
    with locks[account]:  # one AssumeRole per account; sessions are not thread-safe, so clients are made here
        if account not in sessions:
            credentials = sts.assume_role(RoleArn=role, RoleSessionName="floor")["Credentials"]
            sessions[account] = boto3.session.Session(
                aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"])
            sessions[account]._session.register_component("data_loader", loader)
        session = sessions[account]
        return [session.client(service, region, config=once if service == "imagebuilder" else config)
                for service in ("ec2", "autoscaling", "ssm", "imagebuilder")]

def everything(client, operation, key, **kwargs):
    return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page[key]]

def listings(target):
    account, role, region = target
    ec2, autoscaling, ssm, imagebuilder = clients(account, role, region)
    kept = [
        everything(ec2, "describe_images", "Images", Owners=["self"], IncludeDisabled=True),
        everything(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"]),
        everything(ec2, "describe_instances", "Reservations"),
        everything(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                   Versions=["$Default", "$Latest"]),
        everything(autoscaling, "describe_launch_configurations", "LaunchConfigurations"),
        everything(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups"),
        everything(ec2, "describe_fleets", "Fleets"),
        everything(ec2, "describe_spot_fleet_requests", "SpotFleetRequestConfigs"),
        everything(ssm, "describe_parameters", "Parameters"),
    ]
    try:
        kept.append(everything(imagebuilder, "list_image_recipes", "imageRecipeSummaryList", owner="Self"))
    except Exception:  # moto has no Image Builder; the digest makes the same failing call
        pass
    return f"{account}/{region}", [len(items) for items in kept]

targets = [(account, role, region) for account, role in spec["accounts"] for region in spec["regions"]]
with ThreadPoolExecutor(spec["concurrency"]) as pool:
    counts = dict(pool.map(listings, targets))
print(json.dumps({"counts": counts}))
'''


GC_ON = "import gc\ngc.disable = gc.freeze = lambda: None\n"


class CountingProxy:
    """Forwards every request to the moto server after `delay` seconds, counting them per (account, region,
    service) and per operation."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        from moto.iam.models import get_account_id_from

        self.calls: Counter = Counter()
        self.operations: Counter = Counter()
        # Recording: moto's answers by request; replaying: those answers instead of moto's (AWS at exactly
        # `delay` a call, which a single moto process on a small machine cannot be), misses forwarded to moto
        self.recording: dict | None = None
        self.replaying: dict | None = None
        self.misses = 0
        self.server_seconds: Counter = Counter()  # operation -> seconds the server took to answer (after the delay)
        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}
        proxy = self

        def account_of(access_key: str) -> str:
            if access_key not in proxy._accounts:
                proxy._accounts[access_key] = get_account_id_from(access_key)  # moto: assumed keys -> the role's
            return proxy._accounts[access_key]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                scope = SCOPE.search(self.headers.get("Authorization") or "")
                if scope:
                    access_key, region, service = scope.groups()
                    target = self.headers.get("X-Amz-Target", "")
                    action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
                    operation = target.rsplit(".", 1)[-1] or action or self.path.split("?")[0]
                    with proxy._lock:
                        key = (account_of(access_key), region, service)
                        proxy.calls[key] += 1
                        proxy.operations[(*key, operation)] += 1
                time.sleep(delay)
                started = time.perf_counter()
                key = (scope.group(1) if scope else "", self.command, self.path,
                       self.headers.get("X-Amz-Target", ""), body)  # the caller's access key, and what it asked
                replayed = proxy.replaying.get(key) if proxy.replaying is not None else None
                if replayed is None:
                    replayed = fetch(self, body, upstream_port, timeout=120)
                    with proxy._lock:
                        proxy.misses += proxy.replaying is not None
                        if proxy.recording is not None:
                            proxy.recording[key] = replayed
                answer(self, *replayed)
                if scope:
                    with proxy._lock:
                        proxy.server_seconds[operation] += time.perf_counter() - started

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", base.free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def take(self) -> tuple[Counter, Counter, Counter]:
        with self._lock:
            taken = self.calls, self.operations, self.server_seconds
            self.calls, self.operations, self.server_seconds = Counter(), Counter(), Counter()
        return taken

    def close(self) -> None:
        self.server.shutdown()


def seed_images(account: str, region: str, images: int, now: datetime, rng: random.Random) -> base.Seed:
    """Images (a tenth deregistered: their snapshots orphaned) and backup snapshots, straight into moto's backend."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account][region]
    seed = base.Seed()
    ids = []
    for number in range(images):
        family, version = divmod(number, base.FAMILY_SIZE)
        ami = backend.register_image(f"fam{family:03d}-v{version}", "")
        if family % 2 == 0:  # half the families by tag, half by name
            backend.create_tags([ami.id], {"Family": f"family-{family}"})
        created = now - timedelta(days=(base.FAMILY_SIZE - version) * 14 + rng.randint(0, 6), hours=rng.randint(0, 23))
        ami.creation_date = created if isinstance(ami.creation_date, datetime) else created.strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        ids.append(ami.id)
        seed.alive[ami.id] = (f"family-{family}" if family % 2 == 0 else f"fam{family:03d}", created)
    for _ in range(images // 4):  # plain backups: neither stale nor orphaned
        backend.create_snapshot(backend.create_volume(size=20, zone_name=f"{region}a").id, "nightly backup")
    rng.shuffle(ids)
    for image_id in ids[:images // 10]:
        seed.gone_snapshots.add(backend.amis[image_id].ebs_snapshot.id)  # moto: one snapshot per image
        backend.deregister_image(image_id)
        seed.alive.pop(image_id)
    seed.used = set(ids[images // 10:images // 10 + 4])  # the references' images (seed_references)
    return seed


def seed_references(url: str, account: str, region: str, seed: base.Seed) -> None:
    """Three instances (running, stopped, terminated) and a launch template, through the account's role."""
    import boto3

    credentials = boto3.client("sts", endpoint_url=url).assume_role(
        RoleArn=role_arn(account), RoleSessionName="seed")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"])
    ec2 = session.client("ec2", region, endpoint_url=url)
    running, stopped, terminated, templated = sorted(seed.used)
    instances = {image: ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
                 ["Instances"][0]["InstanceId"] for image in (running, stopped, terminated)}
    ec2.stop_instances(InstanceIds=[instances[stopped]])
    ec2.terminate_instances(InstanceIds=[instances[terminated]])
    ec2.create_launch_template(LaunchTemplateName=f"web-{region}", LaunchTemplateData={"ImageId": templated})
    seed.used.discard(terminated)
    seed.not_protecting.add(terminated)


def seed_all(url: str, accounts: list[str], images: int, now: datetime) -> dict[tuple[str, str], base.Seed]:
    started = time.perf_counter()
    rng = random.Random(images)
    seeds = {(account, region): seed_images(account, region, images, now, rng)
             for account in accounts for region in REGIONS}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda target: seed_references(url, *target, seeds[target]), seeds))
    print(f"seeded {len(accounts)} accounts x {len(REGIONS)} regions x {images:,} images in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return seeds


def measure(launcher: base.Launcher, proxy: CountingProxy, command: list[str], env: dict[str, str]) -> dict:
    """Run one child through the launcher; its figures, the calls the proxy saw, and this process's CPU meanwhile
    (the server's and the proxy's)."""
    proxy.take()
    server_cpu = time.process_time()
    launcher.process.stdin.write(json.dumps({"command": command, "env": env, "cwd": str(ROOT)}) + "\n")
    launcher.process.stdin.flush()
    result = json.loads(launcher.process.stdout.readline())
    result["server_cpu"] = time.process_time() - server_cpu
    result["calls"], result["operations"], result["server_seconds"] = proxy.take()
    result["peak_mb"] = result["maxrss_kb"] / 1024
    return result


def write_config(workdir: Path, accounts: list[str]) -> Path:
    lines = [f'[aws]\nregions = {json.dumps(REGIONS)}\nmax_concurrency = {MAX_CONCURRENCY}\n',
             f'[digest]\nstale_after_days = {base.STALE_AFTER_DAYS}\nkeep_latest = {base.KEEP_LATEST}\n']
    for number, account in enumerate(accounts, 1):
        lines.append(f'[[accounts]]\nid = "{account}"\nname = "team{number:02d}"\nrole_arn = "{role_arn(account)}"\n')
    config = workdir / "amibot.toml"
    config.write_text("\n".join(lines))
    return config


def check(document: dict, seeds: dict[tuple[str, str], base.Seed], now: datetime) -> list[str]:
    """Every account-region's findings against its seed: the exact stale images and orphaned snapshots."""
    found: dict[tuple[str, str], tuple[set, set]] = {target: (set(), set()) for target in seeds}
    for item in document.get("items", []):
        target = (item.get("account", ""), item.get("region", ""))
        if target in found:
            found[target][0 if item["kind"] == "image" else 1].add(item["id"])
    problems, wrong = [], 0
    for target, seed in seeds.items():
        stale, orphans = found[target]
        expected = seed.expected_stale(now)
        if stale != expected or orphans != seed.gone_snapshots or stale & seed.used:
            wrong += 1
            if len(problems) < 5:
                problems.append(f"{target[0]} {target[1]}: stale {len(stale)} (expected {len(expected)}, "
                                f"{len(stale & seed.used)} in use), orphans {len(orphans)} "
                                f"(expected {len(seed.gone_snapshots)})")
    if wrong:
        problems.append(f"{wrong} of {len(seeds)} account-regions not exact")
    not_checked = [region for region in document.get("regions", []) if region.get("error")]
    if not_checked:
        problems.append(f"{len(not_checked)} account-region(s) not checked, e.g. {not_checked[0].get('error')}")
    return problems


def per_target(calls: Counter, accounts: list[str]) -> tuple[Counter, int, Counter]:
    """Calls per managed (account, region) without STS, the STS calls, and the rest (the bot's own account)."""
    managed = set(accounts)
    targets: Counter = Counter()
    sts, other = 0, Counter()
    for (account, region, service), count in calls.items():
        if service == "sts":
            sts += count
        elif account in managed:
            targets[(account, region)] += count
        else:
            other[(account, region, service)] += count
    return targets, sts, other


def report(runs: dict[str, dict], accounts: list[str], images: int, problems: list[str], delay: float) -> int:
    print(f"\n{len(accounts)} accounts x {len(REGIONS)} regions x {images:,} images, every AWS call {delay * 1000:.0f} "
          f"ms, max_concurrency {MAX_CONCURRENCY}\n")
    print(f"{'run':<16}{'wall s':>8}{'bound s':>9}{'CPU s':>8}{'peak MiB':>10}{'calls':>7}{'per acct-region':>17}"
          f"{'STS':>5}{'server CPU s':>14}")
    verdicts = []
    for name, run in runs.items():
        targets, sts, other = per_target(run["calls"], accounts)
        total = sum(run["calls"].values())
        spread = sorted(set(targets.values())) or [0]
        per = f"{spread[0]}" if len(spread) == 1 else f"{spread[0]}–{spread[-1]}"
        bound = total * delay / MAX_CONCURRENCY
        run.update(total=total, bound=bound, spread=spread, missing=len(accounts) * len(REGIONS) - len(targets))
        print(f"{name:<16}{run['wall']:>8.2f}{bound:>9.2f}{run['cpu']:>8.2f}{run['peak_mb']:>10.1f}{total:>7}"
              f"{per:>17}{sts:>5}{run['server_cpu']:>14.2f}" + (f"  (exit {run['code']})" if run["code"] else ""))
        if other:
            print(f"{'':<16}also in the bot's own account: {dict(other)}")
        slowest = ", ".join(f"{operation} {seconds:.1f}" for operation, seconds in
                            run["server_seconds"].most_common(4))
        print(f"{'':<16}server seconds (after the delay), slowest operations: {slowest}")
    digest, floor = runs["amibot digest"], runs["floor"]
    sample = next(iter(sorted(key for key in digest["operations"] if key[0] in set(accounts))), None)
    if sample:
        operations = {key[3]: count for key, count in digest["operations"].items() if key[:2] == sample[:2]}
        print(f"\ndigest calls in {sample[0]} {sample[1]}: {json.dumps(operations, sort_keys=True)}")
    verdicts += [
        (f"wall ≤ 1.3 × calls × {delay * 1000:.0f} ms / {MAX_CONCURRENCY} ({1.3 * digest['bound']:.2f} s): "
         f"{digest['wall']:.2f} s = {digest['wall'] / digest['bound']:.2f}×", digest["wall"] <= 1.3 * digest["bound"]),
        (f"CPU ≤ 1.2 × the floor's ({1.2 * floor['cpu']:.2f} s): {digest['cpu']:.2f} s = "
         f"{digest['cpu'] / floor['cpu']:.2f}×", digest["cpu"] <= 1.2 * floor["cpu"]),
        (f"peak RSS ≤ {RSS_LIMIT_MB} MiB: {digest['peak_mb']:.1f} MiB", digest["peak_mb"] <= RSS_LIMIT_MB),
        (f"the same calls in every account-region: {'–'.join(map(str, sorted({*digest['spread']})))}"
         + (f", {digest['missing']} account-region(s) without a call" if digest["missing"] else ""),
         len(digest["spread"]) == 1 and not digest["missing"]),
        ("exact findings in every account" + ("" if not problems else ": " + "; ".join(problems)), not problems),
    ]
    print()
    for label, ok in verdicts:
        print(f"  {'met   ' if ok else 'MISSED'}  {label}")
    return 0 if all(ok for _label, ok in verdicts) else 1


def report_replayed(replayed: dict, live: dict, misses: int, delay: float) -> None:
    """The digest again with every AWS answer replayed from the live run (held `delay` each, no moto work): what
    the wall time is when AWS is as fast as the bound assumes. A diagnostic, not one of the targets."""
    total = sum(replayed["calls"].values())
    bound = total * delay / MAX_CONCURRENCY
    same = "same answers" if not misses else f"{misses} request(s) not in the recording, forwarded to moto"
    print(f"\n  with moto's answers replayed ({same}): wall {replayed['wall']:.2f} s = {replayed['wall'] / bound:.2f}× "
          f"the bound ({bound:.2f} s), CPU {replayed['cpu']:.2f} s, peak {replayed['peak_mb']:.1f} MiB, "
          f"exit {replayed['code']} (live run: wall {live['wall']:.2f} s, CPU {live['cpu']:.2f} s); "
          f"the digest's own CPU time is then what sets the pace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50, help="managed accounts (default 50)")
    parser.add_argument("--images", type=int, default=200, help="images per account and region (default 200)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds every AWS call is held (default 0.05)")
    parser.add_argument("--gc-on", action="store_true",
                        help="also run the digest with the cyclic garbage collector on (a diagnostic)")
    args = parser.parse_args()
    if args.images < 40 or args.accounts < 2:
        parser.error("--images must be at least 40 and --accounts at least 2")
    launcher = base.Launcher()  # first, while this process is still small
    server, url = base.start_server()
    logging.disable(logging.CRITICAL)  # the server's traceback for every call moto lacks (the digest probes some)
    upstream_port = int(url.rsplit(":", 1)[1])
    try:
        accounts = account_ids(args.accounts)
        now = datetime.now(UTC)
        seeds = seed_all(url, accounts, args.images, now)
        proxy = CountingProxy(upstream_port, args.delay)
        workdir = Path(tempfile.mkdtemp(prefix="amibot-org-bench-"))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "SLACK_", "AMIBOT_"))}
        env.update({"AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_DEFAULT_REGION": REGIONS[0], "AMIBOT_CONFIG": str(write_config(workdir, accounts)),
                    "AMIBOT_DB": str(workdir / "absent.db"), "PYTHONPATH": str(ROOT)})
        spec = json.dumps({"accounts": [[account, role_arn(account)] for account in accounts], "regions": REGIONS,
                           "concurrency": MAX_CONCURRENCY})
        runs = {"floor": measure(launcher, proxy, [sys.executable, "-c", FLOOR, spec], env)}
        digest_command = [sys.executable, "-c", base.DIGEST, "--log-level", "WARNING", "digest", "--dry-run",
                          "--format", "json"]
        proxy.recording = {}
        runs["amibot digest"] = measure(launcher, proxy, digest_command, env)
        proxy.replaying, proxy.recording = proxy.recording, None
        replayed = measure(launcher, proxy, digest_command, env)  # a diagnostic: the same answers, no moto
        proxy.replaying = None
        if args.gc_on:  # the same, with the cyclic garbage collector left on (`amibot digest` turns it off)
            runs["+ gc on"] = measure(
                launcher, proxy, [sys.executable, "-c", GC_ON + base.DIGEST.replace("; ", "\n"),
                                  "--log-level", "WARNING", "digest", "--dry-run", "--format", "json"], env)
        for name, run in runs.items():
            if run["code"] not in (0, 1):
                raise SystemExit(f"{name} exited {run['code']}:\n{run['stderr'][-3000:]}")
        digest = runs["amibot digest"]
        try:
            document = json.loads(digest["stdout"])
        except json.JSONDecodeError:
            raise SystemExit(f"the digest printed no JSON (exit {digest['code']}):\n"
                             f"{digest['stderr'][-3000:]}") from None
        progress = [line for line in digest["stderr"].splitlines() if re.match(r"digest: \d+/\d+ ", line)]
        if progress:
            print(f"digest progress on stderr, last line: {progress[-1]}", file=sys.stderr)
        if digest["code"]:
            print(f"the digest exited {digest['code']}; its stderr ends:\n{digest['stderr'][-1500:]}", file=sys.stderr)
        code = report(runs, accounts, args.images, check(document, seeds, now), args.delay)
        report_replayed(replayed, runs["amibot digest"], proxy.misses, args.delay)
        proxy.close()
        return code
    finally:
        server.stop()
        launcher.close()


if __name__ == "__main__":
    sys.exit(main())
