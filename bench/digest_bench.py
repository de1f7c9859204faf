"""Benchmark of `amibot digest` against a moto server, next to the floor: the naive listings alone.

    .venv/bin/python bench/digest_bench.py                    # 5,000 images per region, two regions
    .venv/bin/python bench/digest_bench.py --images 500       # a quick run
    .venv/bin/python bench/digest_bench.py --images 500,5000  # both: the call count must not grow with N

What it does, per size N:
1. Starts a moto server in this process (ThreadedMotoServer on 127.0.0.1, a free port; moto's preloaded
   public images off, as they would only add work both sides skip) and seeds each region directly through
   moto's backend (fast; the same backend calls moto's API handlers make): N images in families of 50
   with creation dates spread over two years, a tenth of them deregistered so their snapshots are
   orphaned, N/2 plain backup snapshots; then over HTTP a fixed set of references whatever N: 150
   instances (a third stopped, a third terminated — terminated ones must not protect), 7 launch templates
   with three versions each (the middle one is neither $Default nor $Latest, so it must not protect),
   40 launch configurations, and the other reference kinds: 3 Auto Scaling groups pinned to a template's
   middle version (which then does protect), 2 mixed-instances groups with an override on another template,
   12 SSM parameters of type aws:ec2:image (one resolved by a `resolve:ssm:` template), an EC2 Fleet and a
   Spot Fleet.
2. Runs, as subprocesses pointed at the server with AWS_ENDPOINT_URL and fake credentials:
   - the floor: a script that only issues the naive listings (all own images, all own snapshots, all
     instances, the launch-template versions, all launch configurations, and the same further sources the
     digest reads: Auto Scaling groups and the template versions they pin, EC2 Fleets, Spot Fleets, SSM
     parameters and their values, Image Builder recipes), region after region, keeps what it fetched and
     computes nothing;
   - `amibot digest --dry-run --format json`.
   Each is measured the same way: wall time, the process's own CPU time (user + system) and peak RSS
   from os.wait4's rusage for that child alone, and the AWS requests it made per region (a botocore
   before-call hook in both; the digest prints its counts on stderr and in its JSON).
3. Checks the findings against what it seeded: exactly the expected stale images and orphaned snapshots,
   and none of the images an instance (not terminated), a template's $Default/$Latest version or a
   launch configuration uses.
Prints a table and the verdict on each target: digest CPU ≤ floor CPU, peak memory ≤ 1.1 × floor,
wall ≤ floor, calls per region constant in N, findings exact.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
REGIONS = ["us-east-1", "eu-west-1"]
FAMILY_SIZE = 50
STALE_AFTER_DAYS, KEEP_LATEST = 90, 2
INSTANCES, TEMPLATES, LAUNCH_CONFIGS = 150, 7, 40  # per region; a third of the instances stopped, a third terminated
# The other reference kinds, also a fixed number whatever N: Auto Scaling groups pinned to a template version that
# is neither $Default nor $Latest (and mixed-instances groups with an override), SSM parameters of type
# aws:ec2:image (one resolved by a `resolve:ssm:` template), an EC2 Fleet and a Spot Fleet.
PINNED_GROUPS, MIXED_GROUPS, IMAGE_PARAMETERS = 3, 2, 12
MIN_IMAGES = 400

FLOOR = r'''
import json, sys, boto3
from collections import Counter
calls = Counter()
session = boto3.session.Session()
session.events.register("before-call", lambda model, context=None, **_: calls.update([context["client_region"]]))
kept = {}
for region in sys.argv[1].split(","):
    ec2, autoscaling = session.client("ec2", region), session.client("autoscaling", region)
    def everything(client, operation, key, **kwargs):
        return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page[key]]
    kept[region] = [
        everything(ec2, "describe_images", "Images", Owners=["self"], IncludeDisabled=True),
        everything(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"]),
        everything(ec2, "describe_instances", "Reservations"),
        everything(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                   Versions=["$Default", "$Latest"]),
        everything(autoscaling, "describe_launch_configurations", "LaunchConfigurations"),
    ]
    # the same further sources the digest reads: groups (and the versions they pin), fleets, SSM, Image Builder
    groups = everything(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups")
    pinned = {g["LaunchTemplate"]["LaunchTemplateId"] for g in groups if g.get("LaunchTemplate")}
    kept[region] += [groups] + [everything(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                                           LaunchTemplateId=t, Versions=["2"]) for t in sorted(pinned)]
    kept[region].append(everything(ec2, "describe_fleets", "Fleets"))
    kept[region].append(everything(ec2, "describe_spot_fleet_requests", "SpotFleetRequestConfigs"))
    ssm = session.client("ssm", region)
    names = [p["Name"] for p in everything(ssm, "describe_parameters", "Parameters")
             if p.get("DataType") == "aws:ec2:image"]
    kept[region] += [ssm.get_parameters(Names=names[i:i + 10])["Parameters"] for i in range(0, len(names), 10)]
    try:
        kept[region].append(everything(session.client("imagebuilder", region), "list_image_recipes",
                                       "imageRecipeSummaryList", owner="Self"))
    except Exception:  # moto has no Image Builder; the digest makes (and counts) the same failing call
        pass
print(json.dumps({"calls": calls, "counts": {r: [len(x) for x in v] for r, v in kept.items()}}))
'''


@dataclass
class Seed:
    """What was seeded in one region, and so what the digest must find."""

    alive: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # id -> (family, created)
    gone_snapshots: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)  # by a live instance, template default/latest, launch config
    not_protecting: set[str] = field(default_factory=set)  # only terminated instances / middle template versions

    def expected_stale(self, now: datetime) -> set[str]:
        families: dict[str, list[tuple[datetime, str]]] = {}
        for image_id, (family, created) in self.alive.items():
            families.setdefault(family, []).append((created, image_id))
        newest = {image_id for members in families.values()
                  for _created, image_id in sorted(members, reverse=True)[:KEEP_LATEST]}
        return {image_id for image_id, (_family, created) in self.alive.items()
                if (now - created).days >= STALE_AFTER_DAYS and image_id not in newest and image_id not in self.used}


@dataclass
class Run:
    wall: float
    cpu: float
    peak_mb: float
    calls: dict[str, int]
    stdout: str
    stderr: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server():
    os.environ.update({"MOTO_EC2_LOAD_DEFAULT_AMIS": "false", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGIONS[0]})
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def seed_region(url: str, region: str, images: int, now: datetime, rng: random.Random) -> Seed:
    import boto3
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT][region]
    seed = Seed()
    all_ids: list[str] = []
    for number in range(images):
        family, version = divmod(number, FAMILY_SIZE)
        name = f"fam{family:03d}-v{version}"
        ami = backend.register_image(name, "")
        if family % 2 == 0:  # half the families by tag, half by name
            backend.create_tags([ami.id], {"Family": f"family-{family}"})
        created = now - timedelta(days=(FAMILY_SIZE - version) * 14 + rng.randint(0, 6), hours=rng.randint(0, 23))
        ami.creation_date = created if isinstance(ami.creation_date, datetime) else created.strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        all_ids.append(ami.id)
        seed.alive[ami.id] = (f"family-{family}" if family % 2 == 0 else f"fam{family:03d}", created)
    for _ in range(images // 2):  # plain backups: neither stale nor orphaned
        volume = backend.create_volume(size=50, zone_name=f"{region}a")
        backend.create_snapshot(volume.id, "nightly backup")
    rng.shuffle(all_ids)
    # The references are a fixed number whatever N, so the request count can be compared across sizes.
    # moto answers DescribeLaunchTemplateVersions with at most MaxResults (default 15) versions and no NextToken,
    # so the all-templates listing sees at most 7 templates' $Default+$Latest there (AWS pages through all).
    gone = all_ids[:images // 10]
    rest = iter(all_ids[images // 10:])
    with_instances = [next(rest) for _ in range(INSTANCES)]
    templated = [next(rest) for _ in range(3 * TEMPLATES)]
    configured = [next(rest) for _ in range(LAUNCH_CONFIGS)]
    ec2 = boto3.client("ec2", region, endpoint_url=url)
    autoscaling = boto3.client("autoscaling", region, endpoint_url=url)
    instances = {image_id: ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro")
                 ["Instances"][0]["InstanceId"] for image_id in with_instances}
    ordered = list(instances.items())
    stopped = [instance for _image, instance in ordered[0::3]]
    terminated = ordered[1::3]
    ec2.stop_instances(InstanceIds=stopped)
    ec2.terminate_instances(InstanceIds=[instance for _image, instance in terminated])
    seed.used.update(image for image in with_instances if image not in dict(terminated))
    seed.not_protecting.update(dict(terminated))
    for number in range(TEMPLATES):
        default, middle, latest = templated[3 * number:3 * number + 3]
        template = ec2.create_launch_template(LaunchTemplateName=f"lt-{region}-{number}",
                                              LaunchTemplateData={"ImageId": default})["LaunchTemplate"]
        for image_id in (middle, latest):
            ec2.create_launch_template_version(LaunchTemplateId=template["LaunchTemplateId"],
                                               LaunchTemplateData={"ImageId": image_id})
        seed.used.update((default, latest))
        seed.not_protecting.add(middle)
    for number, image_id in enumerate(configured):
        autoscaling.create_launch_configuration(LaunchConfigurationName=f"lc-{number}", ImageId=image_id,
                                                InstanceType="t3.micro")
        seed.used.add(image_id)
    for image_id in gone:
        seed.gone_snapshots.add(backend.amis[image_id].ebs_snapshot.id)  # moto: one snapshot per image
        backend.deregister_image(image_id)
        seed.alive.pop(image_id)
    seed_other_references(ec2, autoscaling, boto3.client("ssm", region, endpoint_url=url), region, rest, seed)
    seed.not_protecting -= seed.used
    return seed


def seed_other_references(ec2, autoscaling, ssm, region: str, rest, seed: Seed) -> None:
    """Groups pinned to a middle template version, mixed-instances groups with an override, image parameters (one
    resolved by a template), an EC2 Fleet and a Spot Fleet: each image they name is in use."""
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    for number in range(PINNED_GROUPS):
        first, pinned, latest = next(rest), next(rest), next(rest)
        template = ec2.create_launch_template(LaunchTemplateName=f"pinned-{region}-{number}",
                                              LaunchTemplateData={"ImageId": first})["LaunchTemplate"]
        for image_id in (pinned, latest):
            ec2.create_launch_template_version(LaunchTemplateId=template["LaunchTemplateId"],
                                               LaunchTemplateData={"ImageId": image_id})
        autoscaling.create_auto_scaling_group(AutoScalingGroupName=f"pinned-{number}", MinSize=0, MaxSize=1,
                                              VPCZoneIdentifier=subnet, LaunchTemplate={
                                                  "LaunchTemplateId": template["LaunchTemplateId"], "Version": "2"})
        seed.used.update((first, pinned, latest))
    for number in range(MIXED_GROUPS):
        main, override = next(rest), next(rest)
        for name, image_id in ((f"mixed-{region}-{number}", main), (f"override-{region}-{number}", override)):
            ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": image_id})
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"mixed-{number}", MinSize=0, MaxSize=1, VPCZoneIdentifier=subnet,
            MixedInstancesPolicy={"LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": f"mixed-{region}-{number}", "Version": "1"},
                "Overrides": [{"InstanceType": "m5.large", "LaunchTemplateSpecification": {
                    "LaunchTemplateName": f"override-{region}-{number}", "Version": "$Latest"}}]}})
        seed.used.update((main, override))
    for number in range(IMAGE_PARAMETERS):
        image_id = next(rest)
        ssm.put_parameter(Name=f"/bench/{number}/current", Value=image_id, Type="String", DataType="aws:ec2:image")
        seed.used.add(image_id)
    ec2.create_launch_template(LaunchTemplateName=f"ssm-{region}",
                               LaunchTemplateData={"ImageId": "resolve:ssm:/bench/0/current"})
    fleet_image, spot_image = next(rest), next(rest)
    fleet_template = ec2.create_launch_template(LaunchTemplateName=f"fleet-{region}",
                                                LaunchTemplateData={"ImageId": fleet_image})["LaunchTemplate"]
    ec2.create_fleet(LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {
        "LaunchTemplateId": fleet_template["LaunchTemplateId"], "Version": "1"},
        "Overrides": [{"InstanceType": "t3.micro"}]}], Type="maintain",
        TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "spot"})
    ec2.request_spot_fleet(SpotFleetRequestConfig={
        "IamFleetRole": f"arn:aws:iam::{ACCOUNT}:role/fleet", "AllocationStrategy": "lowestPrice", "TargetCapacity": 1,
        "LaunchSpecifications": [{"ImageId": spot_image, "InstanceType": "t3.micro"}]})
    seed.used.update((fleet_image, spot_image))


# Children are started by this small launcher, itself started before moto is imported: a process's peak RSS
# includes what it had before exec, and a child forked from this (moto-laden) process would start at its size.
LAUNCHER = r'''
import json, os, subprocess, sys, threading, time
for line in sys.stdin:
    job = json.loads(line)
    started = time.perf_counter()
    child = subprocess.Popen(job["command"], env=job["env"], cwd=job["cwd"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    out = {}
    readers = [threading.Thread(target=lambda n=n, s=s: out.__setitem__(n, s.read()))
               for n, s in (("stdout", child.stdout), ("stderr", child.stderr))]
    for reader in readers:
        reader.start()
    _pid, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN would mix them)
    wall = time.perf_counter() - started
    for reader in readers:
        reader.join()
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss,
                      "code": os.waitstatus_to_exitcode(status), "stdout": out["stdout"].decode(),
                      "stderr": out["stderr"].decode()}), flush=True)
'''


class Launcher:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def measure(self, command: list[str], env: dict[str, str]) -> Run:
        self.process.stdin.write(json.dumps({"command": command, "env": env, "cwd": str(ROOT)}) + "\n")
        self.process.stdin.flush()
        result = json.loads(self.process.stdout.readline())
        if result["code"] != 0:
            raise SystemExit(f"{' '.join(command[:5])}… exited {result['code']}:\n{result['stderr'][-3000:]}")
        return Run(result["wall"], result["cpu"], result["maxrss_kb"] / 1024, {}, result["stdout"], result["stderr"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def run_floor(launcher: Launcher, env: dict[str, str]) -> Run:
    run = launcher.measure([sys.executable, "-c", FLOOR, ",".join(REGIONS)], env)
    run.calls = json.loads(run.stdout)["calls"]
    return run


# `amibot digest`, with the floor's read timeout (boto3's default, 60 s) instead of amibot's 15 s: moto ignores
# DescribeImages' MaxResults and renders 5,000 images in one response, which takes it longer than 15 s (AWS pages).
DIGEST = ("import sys; import bot.aws.clients; bot.aws.clients.READ_TIMEOUT = 60; from bot.cli import main; "
          "sys.argv[0] = 'amibot'; sys.exit(main())")


def run_digest(launcher: Launcher, env: dict[str, str]) -> Run:
    run = launcher.measure([sys.executable, "-c", DIGEST, "--log-level", "WARNING", "digest", "--dry-run",
                            "--format", "json"], env)
    run.calls = json.loads(run.stdout)["aws_calls"]
    return run


def check(document: dict, seeds: dict[str, Seed], now: datetime) -> list[str]:
    problems = []
    items = document["items"]
    for region, seed in seeds.items():
        stale = {item["id"] for item in items if item["kind"] == "image" and item["region"] == region}
        orphans = {item["id"] for item in items if item["kind"] == "snapshot" and item["region"] == region}
        if stale & seed.used:
            problems.append(f"{region}: {len(stale & seed.used)} image(s) in use reported stale, e.g. "
                            f"{sorted(stale & seed.used)[:3]}")
        expected = seed.expected_stale(now)
        if stale != expected:
            problems.append(f"{region}: stale images differ: {len(stale - expected)} unexpected, "
                            f"{len(expected - stale)} missed")
        wrongly_kept = (seed.not_protecting & expected) - stale
        if wrongly_kept:
            problems.append(f"{region}: {len(wrongly_kept)} image(s) referenced only by terminated instances or "
                            "middle template versions were treated as in use")
        if orphans != seed.gone_snapshots:
            problems.append(f"{region}: orphans differ: {len(orphans - seed.gone_snapshots)} unexpected, "
                            f"{len(seed.gone_snapshots - orphans)} missed")
    return problems


def bench(launcher: Launcher, url: str, images: int, repeat: int) -> dict:
    now = datetime.now(UTC)
    rng = random.Random(images)
    started = time.perf_counter()
    seeds = {region: seed_region(url, region, images, now, rng) for region in REGIONS}
    print(f"seeded {images:,} images per region in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="amibot-bench-"))
    config = workdir / "amibot.toml"
    config.write_text(f'[aws]\nregions = {json.dumps(REGIONS)}\n[digest]\nstale_after_days = {STALE_AFTER_DAYS}\n'
                      f'keep_latest = {KEEP_LATEST}\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "SLACK_", "AMIBOT_"))}
    env.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": REGIONS[0], "AMIBOT_CONFIG": str(config),
                "AMIBOT_DB": str(workdir / "absent.db"), "PYTHONPATH": str(ROOT)})
    floors, digests = [], []
    for _ in range(repeat):  # alternate, so neither side always runs on a warmer server
        floors.append(run_floor(launcher, env))
        digests.append(run_digest(launcher, env))
    document = json.loads(digests[-1].stdout)
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).read()
    return {"images": images, "floor": floors, "digest": digests, "problems": check(document, seeds, now),
            "found": {r["region"]: (r["stale_images"], r["orphaned_snapshots"]) for r in document["regions"]},
            "expected": {region: (len(seed.expected_stale(now)), len(seed.gone_snapshots))
                         for region, seed in seeds.items()}}


def median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def report(results: list[dict]) -> int:
    print(f"\n{'images/region':>13}  {'run':<7}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}  {'AWS calls per region':<34}"
          f"{'stale (expected)':>22}{'orphans (expected)':>22}")
    verdicts = []
    for result in results:
        for name in ("floor", "digest"):
            runs = result[name]
            calls = ", ".join(f"{region} {count}" for region, count in sorted(runs[-1].calls.items()))
            found = " / ".join(f"{s:,} ({e[0]:,})" for (s, _o), e in
                               zip(result["found"].values(), result["expected"].values(), strict=True))
            orphans = " / ".join(f"{o:,} ({e[1]:,})" for (_s, o), e in
                                 zip(result["found"].values(), result["expected"].values(), strict=True))
            print(f"{result['images']:>13,}  {name:<7}{median(runs, 'wall'):>8.2f}{median(runs, 'cpu'):>8.2f}"
                  f"{median(runs, 'peak_mb'):>9.1f}  {calls:<34}"
                  f"{found if name == 'digest' else '':>22}{orphans if name == 'digest' else '':>22}")
        floor, digest = result["floor"], result["digest"]
        size = f"N={result['images']:,}"
        verdicts += [
            (f"{size}: digest CPU ≤ floor CPU", median(digest, "cpu") <= median(floor, "cpu")),
            (f"{size}: digest peak memory ≤ 1.1 × floor", median(digest, "peak_mb") <= 1.1 * median(floor, "peak_mb")),
            (f"{size}: digest wall time ≤ floor", median(digest, "wall") <= median(floor, "wall")),
            (f"{size}: findings exact, nothing in use reported stale", not result["problems"]),
        ]
        for problem in result["problems"]:
            print(f"  PROBLEM {problem}")
    if len(results) > 1:
        counts = {json.dumps(result["digest"][-1].calls, sort_keys=True) for result in results}
        verdicts.append(("AWS calls per region do not grow with N", len(counts) == 1))
    print()
    for label, ok in verdicts:
        print(f"  {'met   ' if ok else 'MISSED'}  {label}")
    return 0 if all(ok for _label, ok in verdicts) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="5000", help="images per region; a comma list runs several sizes")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per size (medians are shown)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.images.split(",")]
    if min(sizes) < MIN_IMAGES:
        parser.error(f"--images must be at least {MIN_IMAGES} (the references seeded need distinct images)")
    launcher = Launcher()  # first, while this process is still small
    server, url = start_server()
    try:
        return report([bench(launcher, url, size, args.repeat) for size in sizes])
    finally:
        server.stop()
        launcher.close()


if __name__ == "__main__":
    sys.exit(main())
