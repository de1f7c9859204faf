"""Issue 23: `/ami rollout <family>` through the real app — the plan in a four-eyes request, then, once approved, one
instance refresh per group (never a second: not on a replayed approval, not after a restart), watched to the end in
the request's thread. moto has no instance refresh: the plan tests answer DescribeInstanceRefreshes with a
before-call handler (tests/test_rollout_plan.py), the rest run on bot.devtools.refresh_emulation installed on every
session the app makes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.devtools.refresh_emulation import ACTIVE
from bot.services import approvals, rollout, rollout_watch
from tests.support import seed
from tests.support.approvals import approval_message
from tests.support.rollout import POLICY as ACCOUNTS_POLICY
from tests.support.rollout import answered_refreshes, emulated_refreshes, fleet, group, template
from tests.support.waiting import until

REGION = "us-east-1"
PEOPLE = {"access": {"operators": ["U0OPS"]}, "approvals": {"approvers": ["U0LEAD"]}}
POLICY = {"aws": {"regions": [REGION]}, **PEOPLE}


def texts(fake, method: str) -> list[str]:
    return [call.text for call in fake.calls_to(method)]


def test_the_plan_across_two_accounts_is_one_request_grouped_by_account(aws, make_harness, monkeypatch):
    answered_refreshes(monkeypatch, {"web-busy": "InProgress"})
    fleet(aws)
    app = make_harness({**ACCOUNTS_POLICY, **PEOPLE})
    app.command("rollout web")
    assert "Asked for approval" in app.last_reply().text
    message, request_id = approval_message(app.fake)
    text = message.text
    assert "7 groups, 8 instances, 2 accounts; 1 group already current" in text
    assert text.index("prod (111111111111)") < text.index("web-pinned") < text.index("staging (222222222222)") \
        < text.index("web-mixed")
    assert "web-classic" in text and "deprecates" in text  # a launch configuration, with why
    assert "a refresh is in progress" in text  # web-busy
    posted = [c for c in app.fake.calls_to("chat.postMessage") if "approval.approve" in json.dumps(c.params)]
    assert len(posted) == 1  # ONE request for both accounts
    stored = app.ctx.store.one("SELECT params FROM requests WHERE id = ?", (request_id,))
    params = json.loads(stored["params"])
    assert params["accounts"] == [seed.PROD, seed.STAGING]
    assert params["groups"] == [f"{seed.PROD}/{REGION}/web-pinned", f"{seed.PROD}/{REGION}/web-ssm",
                                f"{seed.STAGING}/{REGION}/web-mixed"]


def test_nothing_to_roll_opens_no_request(aws, make_harness, monkeypatch):
    answered_refreshes(monkeypatch, {})
    old, new = seed.family(aws, ["1.4.0", "1.5.0"])
    group(aws, "web-asg", [new], LaunchTemplate={"LaunchTemplateId": template(aws, "web-lt", new), "Version": "1"})
    app = make_harness(POLICY)
    app.command("rollout web")
    assert "Nothing to roll out" in app.last_reply().text and "already-current" in app.last_reply().text
    assert app.ctx.store.one("SELECT count(*) AS n FROM requests")["n"] == 0


# --- on the emulated instance refresh --------------------------------------------------------------------

@pytest.fixture
def emulation(monkeypatch):
    """The refresh emulation on every botocore session (the app's too), replacing an instance every 50 ms."""
    emulated = emulated_refreshes(monkeypatch, step_seconds=0.05)
    starts = []
    original = emulated._start

    def counted(region, params):
        starts.append(params)
        running = [r for refreshes in emulated._refreshes.values() for r in refreshes if r.status in ACTIVE]
        emulated.most_at_once = max(emulated.most_at_once, len(running) + 1)
        return original(region, params)

    emulated._operations["StartInstanceRefresh"] = counted
    emulated.starts = starts
    emulated.most_at_once = 0  # refreshes running at once, this one included, at its start
    return emulated


@pytest.fixture
def web(aws):
    """web-1.4.0 and web-1.5.0 (current); web-asg pinned to 1.4.0 with two instances on it."""
    old, new = seed.family(aws, ["1.4.0", "1.5.0"])
    ec2 = aws.client("ec2", REGION)
    lt = ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={
        "ImageId": old, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    aws.client("autoscaling", REGION).create_auto_scaling_group(
        AutoScalingGroupName="web-asg", MinSize=0, MaxSize=6, DesiredCapacity=2, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"})
    return old, new, lt


def images_of(aws, name: str = "web-asg") -> list[str]:
    ids = [i["InstanceId"] for i in aws.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"]]
    found = aws.client("ec2", REGION).describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return sorted(i["ImageId"] for r in found for i in r["Instances"])


def fast(app):
    app.ctx.waits = dataclasses.replace(app.ctx.waits, rollout_poll_seconds=0.05)
    return app


def approve(app, request_id, message):
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts)
    app.wait_idle()


def thread(app) -> str:
    return "\n".join(c.text for c in app.fake.calls_to("chat.postMessage") if c.params.get("thread_ts"))


def test_approval_starts_one_refresh_per_group_and_watches_it_to_the_new_image(aws, make_harness, emulation, web):
    old, new, lt = web
    app = fast(make_harness(POLICY))
    app.command("rollout web --min-healthy 50 --warmup 60")
    message, request_id = approval_message(app.fake)
    assert "web-asg" in message.text and "1 group, 2 instances, 1 account" in message.text
    assert not emulation.starts  # nothing changes before the approval
    approve(app, request_id, message)
    [start] = emulation.starts
    assert start["AutoScalingGroupName"] == "web-asg"
    assert start["DesiredConfiguration"] == {"LaunchTemplate": {"LaunchTemplateId": lt, "Version": "2"}}
    assert start["Preferences"]["MinHealthyPercentage"] == 50 and start["Preferences"]["InstanceWarmup"] == 60
    assert start["Preferences"]["SkipMatching"] is True and start["Preferences"]["AutoRollback"] is True
    assert images_of(aws) == [new, new]  # AWS state: the group's instances end on the new image
    versions = aws.client("ec2", REGION).describe_launch_template_versions(LaunchTemplateId=lt)
    assert {v["VersionNumber"]: v["LaunchTemplateData"]["ImageId"] for v in
            versions["LaunchTemplateVersions"]} == {1: old, 2: new}
    said = thread(app)
    assert "Rollout succeeded" in said and "web-asg" in said and "Successful" in said
    assert "0 of 2 instances behind web-1.5.0" in said
    last = app.fake.calls_to("chat.update")[-1]
    assert "Successful 100 %" in last.text  # the request's message, in place
    rows = [r["action"] for r in app.ctx.store.db.query("SELECT action FROM audit ORDER BY id")]
    assert "rollout.start" in rows and "rollout.finish" in rows
    scraped = app.ctx.metrics.rollouts.labels("succeeded")._value.get()
    assert scraped == 1


def test_a_replayed_approval_starts_nothing_more(aws, make_harness, emulation, web):
    app = fast(make_harness(POLICY))
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    approve(app, request_id, message)
    approve(app, request_id, message)
    app.ctx.jobs.submit("approval.execute", {"request_id": request_id})  # a replayed execution, too
    app.wait_idle()
    assert len(emulation.starts) == 1
    versions = aws.client("ec2", REGION).describe_launch_template_versions(LaunchTemplateId=web[2])
    assert len(versions["LaunchTemplateVersions"]) == 2  # one new version, never a second


def aws_calls(app) -> float:
    return sum(sample.value for metric in app.ctx.metrics.aws_calls.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


def test_self_approval_and_non_operators_are_refused(aws, make_harness, emulation, web):
    app = fast(make_harness(POLICY))
    app.wait_idle()
    before = aws_calls(app)
    app.command("rollout web", user="U0STRANGER")
    assert "operator" in app.last_reply().text.lower()
    assert app.ctx.store.one("SELECT count(*) AS n FROM requests")["n"] == 0
    assert aws_calls(app) == before  # refused before AWS was asked anything
    app.command("rollout web")
    assert aws_calls(app) > before  # (an operator's plan reads AWS: the count above would have seen it)
    message, request_id = approval_message(app.fake)
    app.click("approval.approve", request_id, user="U0OPS", message_ts=message.ts)
    app.wait_idle()
    assert not emulation.starts
    assert app.ctx.store.one("SELECT state FROM requests WHERE id = ?", (request_id,))["state"] == "pending"


def test_a_failed_refresh_is_reported_with_its_reason(aws, make_harness, emulation, web):
    emulation.fail_next_refresh("Instance i-0abc failed health checks", after=1)
    app = fast(make_harness(POLICY))
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    approve(app, request_id, message)
    said = thread(app)
    assert "Rollout failed" in said and "failed health checks" in said
    assert app.ctx.metrics.rollouts.labels("failed")._value.get() == 1


def test_a_restart_mid_rollout_starts_no_second_refresh_and_watching_resumes(aws, make_harness, emulation, web,
                                                                            monkeypatch):
    """In process: the first app's watch is lost (as a kill would leave it: the finish step open); a second app on
    the same database resumes watching at start and finishes the thread once, starting nothing new."""
    from bot.services import rollout, rollout_watch

    first = fast(make_harness(POLICY))
    watch = rollout_watch.watch
    monkeypatch.setattr(rollout_watch, "watch", lambda ctx, payload: None)  # the first process dies before watching
    first.command("rollout web")
    message, request_id = approval_message(first.fake)
    approve(first, request_id, message)
    assert len(emulation.starts) == 1 and "Rollout succeeded" not in thread(first)
    first.ctx.store.execute("UPDATE jobs SET state = 'running' WHERE kind = ?", (rollout.WATCH_JOB,))
    monkeypatch.setattr(rollout_watch, "watch", watch)
    second = make_harness(POLICY)
    second.wait_idle()
    assert len(emulation.starts) == 1
    finished = [c for c in second.fake.calls_to("chat.postMessage")
                if c.params.get("thread_ts") and "Rollout succeeded" in c.text]
    assert len(finished) == 1



def started_and_held(app, emulation):
    """A rollout approved whose refresh stays in progress (an instance every hour) until the test lets it go."""
    from datetime import timedelta

    emulation.step = timedelta(hours=1)
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts, wait=False)
    until(lambda: len(emulation.starts) == 1)
    return request_id


def test_status_then_cancel_stops_the_refresh_and_the_thread_says_so(aws, make_harness, emulation, web):
    from datetime import timedelta

    old, new, lt = web
    app = fast(make_harness(POLICY))
    request_id = started_and_held(app, emulation)
    app.command("rollout status web", wait=False)
    until(lambda: any("web-asg" in c.text and request_id in c.text for c in app.fake.calls_to("chat.postEphemeral")
                      + app.fake.calls_to("chat.postMessage") if not c.params.get("thread_ts")))
    app.command("rollout cancel web", user="U0STRANGER", wait=False)  # not an operator: nothing is cancelled
    app.command(f"rollout cancel {request_id}", wait=False)
    until(lambda: "asked to cancel this rollout" in thread(app))
    emulation.step = timedelta(milliseconds=10)  # AWS moves on: Cancelling → Cancelled
    app.wait_idle()
    said = thread(app)
    assert "Rollout cancelled" in said and "Cancelled" in said
    assert images_of(aws) == [old, old]  # nothing was replaced before the cancel
    rows = [r["actor"] for r in app.ctx.store.db.query("SELECT actor FROM audit WHERE action = 'rollout.cancel'")]
    assert rows == ["U0OPS"]


def test_rollback_rolls_the_refresh_back(aws, make_harness, emulation, web):
    from datetime import timedelta

    old, new, lt = web
    app = fast(make_harness(POLICY))
    started_and_held(app, emulation)
    app.command("rollout rollback web", wait=False)
    until(lambda: "asked to rollback this rollout" in thread(app))
    emulation.step = timedelta(milliseconds=10)
    app.wait_idle()
    said = thread(app)
    assert "RollbackSuccessful" in said and "Rollout failed" in said
    assert images_of(aws) == [old, old]
    assert [r["action"] for r in app.ctx.store.db.query("SELECT action FROM audit WHERE action LIKE 'rollout.%'")] \
        == ["rollout.plan", "rollout.start", "rollout.rollback", "rollout.finish"]


def killed_after_starting_web_b(app, emulation, monkeypatch):
    """`/ami rollout web` approved in `app`, whose process "dies" the moment AWS started web-b's refresh — before
    amibot recorded it; the request stays executing, as after a kill -9. Undone for the restart that follows."""
    real_start, real_finish = rollout.start_refresh, approvals._finish

    def dies_after_web_b(handle, region, group, desired, prefs, notes=None):
        refresh_id = real_start(handle, region, group, desired, prefs, notes)
        if group == "web-b":
            raise RuntimeError("killed")
        return refresh_id

    monkeypatch.setattr(rollout, "start_refresh", dies_after_web_b)
    monkeypatch.setattr(approvals, "_finish", lambda *args: None)
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    approve(app, request_id, message)
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b"]
    monkeypatch.setattr(rollout, "start_refresh", real_start)
    monkeypatch.setattr(approvals, "_finish", real_finish)
    return request_id


def test_killed_between_a_start_and_its_record_the_restart_adopts_it_and_starts_the_rest_once(
        aws, make_harness, emulation, web, monkeypatch):
    """Two groups. The first process starts web-asg's refresh, then web-b's — and dies the moment AWS answered,
    before recording it (the request left executing, as kill -9 leaves it). The restart adopts web-b's refresh (one
    in progress that this rollout started) instead of starting another, and watches both to the end."""

    old, new, lt = web
    ec2 = aws.client("ec2", REGION)
    lt_b = ec2.create_launch_template(LaunchTemplateName="web-b-lt", LaunchTemplateData={
        "ImageId": old, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("autoscaling", REGION).create_auto_scaling_group(
        AutoScalingGroupName="web-b", MinSize=0, MaxSize=4, DesiredCapacity=1,
        VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        LaunchTemplate={"LaunchTemplateId": lt_b, "Version": "1"})
    first = fast(make_harness(POLICY))
    killed_after_starting_web_b(first, emulation, monkeypatch)
    second = make_harness(POLICY)
    second.wait_idle()
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b"]  # no third start
    assert images_of(aws) == [new, new] and images_of(aws, "web-b") == [new]
    said = thread(second)
    assert "adopted" in said and "Rollout succeeded" in said
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt_b)["LaunchTemplateVersions"]
    assert len(versions) == 2  # one new version of web-b's template, not a second after the restart


def test_request_rollout_narrowed_to_the_groups_on_given_images(aws, make_harness, monkeypatch):
    """What `/ami revoke` calls: only the groups still running or launching the revoked image are rolled."""
    from bot.core.errors import PolicyViolation
    from bot.services import rollout

    answered_refreshes(monkeypatch, {})
    old, new = fleet(aws)
    app = make_harness({**ACCOUNTS_POLICY, **PEOPLE})
    with pytest.raises(PolicyViolation, match="Nothing to roll out"):
        rollout.request_rollout(app.ctx, "web", "U0OPS", "C0OPS", image_ids=["ami-0000000000000000f"])
    request = rollout.request_rollout(app.ctx, "web", "U0OPS", "C0OPS", image_ids=[old])
    assert request.kind == "rollout" and request.state == "pending"
    assert [key.rsplit("/", 1)[1] for key in request.params["groups"]] == ["web-pinned", "web-ssm", "web-busy",
                                                                           "web-mixed"]


# --- groups in parallel up to [rollout].max_parallel_groups ----------------------------------------------

def more_groups(aws, old: str, *names: str) -> None:
    """More groups pinned to `old` through templates of their own, one instance each."""
    ec2 = aws.client("ec2", REGION)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    for name in names:
        lt = ec2.create_launch_template(LaunchTemplateName=f"{name}-lt", LaunchTemplateData={
            "ImageId": old, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        aws.client("autoscaling", REGION).create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=4, DesiredCapacity=1, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"})


TWO_AT_ONCE = {**POLICY, "rollout": {"max_parallel_groups": 2}}


def held_with_three_groups(aws, app, emulation, web):
    """web-asg, web-b, web-c; the refreshes held (an instance an hour) once approved: two start, one waits."""
    from datetime import timedelta

    more_groups(aws, web[0], "web-b", "web-c")
    emulation.step = timedelta(hours=1)
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts, wait=False)
    until(lambda: len(emulation.starts) == 2 and "web-c: waiting" in thread(app))
    return message, request_id


def test_groups_start_at_most_max_parallel_at_once_and_the_rest_as_running_ones_finish(
        aws, make_harness, emulation, web):
    import time
    from datetime import timedelta

    app = fast(make_harness(TWO_AT_ONCE))
    message, request_id = held_with_three_groups(aws, app, emulation, web)
    time.sleep(0.3)  # the watch has polled a few times: nothing more starts while two run
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b"]
    shown = [c.text for c in app.fake.calls_to("chat.update") if c.params.get("ts") == message.ts][-1]
    assert "Waiting (2 of 2 running)" in shown and "NotStarted" not in shown and "Failed" not in shown
    emulation.step = timedelta(milliseconds=10)  # AWS moves on
    app.wait_idle()
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b", "web-c"]
    [third] = emulation.refreshes_of(REGION, "web-c")
    firsts = [emulation.refreshes_of(REGION, name)[0] for name in ("web-asg", "web-b")]
    assert min(first.ended for first in firsts) <= third.started  # only after one of the first two had finished
    said = thread(app)
    assert "Rollout succeeded" in said and "web-c: refresh started" in said
    assert images_of(aws, "web-c") == [web[1]]
    approve(app, request_id, message)  # replayed approval and execution: still three starts in all
    app.ctx.jobs.submit("approval.execute", {"request_id": request_id})
    app.wait_idle()
    assert len(emulation.starts) == 3 and emulation.most_at_once == 2


def test_a_restart_with_groups_waiting_adopts_the_half_started_one_and_never_runs_more_than_the_limit(
        aws, make_harness, emulation, web, monkeypatch):
    """Three groups, two at once. The first process starts web-asg's refresh, then web-b's — and dies the moment AWS
    answered, before recording it. The restart adopts web-b's (no second start), leaves web-c waiting while two
    run, then starts it once; all three end on the new image."""
    from datetime import timedelta

    from bot.services import rollout_watch

    more_groups(aws, web[0], "web-b", "web-c")
    emulation.step = timedelta(hours=1)  # the refreshes run on until the test lets them go
    first = fast(make_harness(TWO_AT_ONCE))
    killed_after_starting_web_b(first, emulation, monkeypatch)
    watch = rollout_watch.watch

    def quick(ctx, payload):  # the restart's watch starts with the app: its waits shortened from the start
        ctx.waits = dataclasses.replace(ctx.waits, rollout_poll_seconds=0.05)
        return watch(ctx, payload)

    monkeypatch.setattr(rollout_watch, "watch", quick)
    second = make_harness(TWO_AT_ONCE)
    until(lambda: "web-c: waiting (2 of 2 groups running)" in thread(second))
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b"]
    emulation.step = timedelta(milliseconds=10)  # AWS moves on: a slot frees up
    second.wait_idle()
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b", "web-c"]
    assert emulation.most_at_once == 2
    said = thread(second)
    assert "web-b: refresh" in said and "adopted" in said and "Rollout succeeded" in said
    assert [images_of(aws, name) for name in ("web-asg", "web-b", "web-c")] == [[web[1]] * 2, [web[1]], [web[1]]]


def test_cancel_while_a_group_waits_never_starts_it(aws, make_harness, emulation, web):
    from datetime import timedelta

    app = fast(make_harness(TWO_AT_ONCE))
    message, request_id = held_with_three_groups(aws, app, emulation, web)
    app.command("rollout cancel web", wait=False)
    until(lambda: "asked to cancel this rollout" in thread(app))
    emulation.step = timedelta(milliseconds=10)
    app.wait_idle()
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b"]
    said = thread(app)
    assert "web-c: waiting, will not be started" in said
    assert "Rollout cancelled" in said and "web-c" in said.split("Rollout cancelled")[1]
    assert "never started" in said.split("Rollout cancelled")[1]
    assert images_of(aws, "web-c") == [web[0]]


def test_each_checkpoint_is_reported_once_per_group_in_the_thread_and_the_audit(aws, make_harness, emulation, web):
    """[rollout].checkpoints = [50]: AWS (emulated) pauses web-asg's refresh at 50 % for the delay and goes on; the
    thread says so once and the audit has one rollout.checkpoint row — though a second watch (a restart's) looks too."""
    from bot.services import rollout

    app = fast(make_harness({**POLICY, "rollout": {"checkpoints": [50], "checkpoint_delay_seconds": 1}}))
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    app.click("approval.approve", request_id, user="U0LEAD", message_ts=message.ts, wait=False)
    until(lambda: len(emulation.starts) == 1)
    app.ctx.jobs.submit(rollout.WATCH_JOB, {"request_id": request_id})  # a second watcher
    app.wait_idle()
    assert emulation.starts[0]["Preferences"]["CheckpointPercentages"] == [50]
    said = thread(app)
    posts = [c for c in app.fake.calls_to("chat.postMessage") if c.params.get("thread_ts")]
    assert len([c for c in posts if "reached the 50 % checkpoint" in c.text]) == 1
    assert len([c for c in posts if "*web-asg*: Successful (100 %)" in c.text]) == 1  # said once, by one watcher
    assert "*web-asg* reached the 50 % checkpoint; goes on in 1 s" in said
    assert said.index("50 % checkpoint") < said.index("Rollout succeeded")
    rows = list(app.ctx.store.db.query("SELECT outcome, detail FROM audit WHERE action = 'rollout.checkpoint'"))
    assert [row["outcome"] for row in rows] == ["50 %"] and json.loads(rows[0]["detail"])["group"] == "web-asg"


def test_the_audit_trail_of_a_whole_rollout_says_plan_decision_start_checkpoint_and_finish(
        aws, make_harness, emulation, web):
    from bot.durable import audit

    app = fast(make_harness({**POLICY, "rollout": {"checkpoints": [50], "checkpoint_delay_seconds": 0}}))
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    approve(app, request_id, message)
    trail = [(row["action"], row["actor"]) for row in audit.rows(app.ctx.store, target=request_id)]
    assert trail == [("request.created", "U0OPS"), ("rollout.plan", "U0OPS"), ("command.rollout", "U0OPS"),
                     ("request.approval", "U0LEAD"), ("request.approved", "U0LEAD"),
                     ("request.executing", "amibot"), ("rollout.start", "amibot"), ("request.succeeded", "amibot"),
                     ("rollout.checkpoint", "amibot"), ("rollout.finish", "amibot")]
    [plan] = [row for row in audit.rows(app.ctx.store, target=request_id) if row["action"] == "rollout.plan"]
    assert plan["outcome"] == "1 group, 2 instances, 1 account"
    assert plan["detail"]["groups"] == {"pinned-template": ["web-asg"]} and plan["detail"]["instances"] == 2


def scraped(app) -> dict[tuple[str, frozenset], float]:
    """GET /metrics from the running app, parsed by prometheus_client's parser."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{app.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_rollouts_by_outcome_and_the_instances_replaced(aws, make_harness, emulation, web):
    """Two rollouts of web: one succeeds replacing web-asg's 2 instances; one (after web-1.6.0) fails."""
    app = fast(make_harness(POLICY))
    app.command("rollout web")
    message, request_id = approval_message(app.fake)
    approve(app, request_id, message)
    approve(app, request_id, message)  # a replayed approval counts nothing more
    seed.image(aws, "web-1.6.0", tags={"Family": "web", "Version": "1.6.0"})
    emulation.fail_next_refresh("Instance failed health checks", after=0)
    app.command("rollout web")
    second = [c for c in app.fake.calls_to("chat.postMessage") if "approval.approve" in json.dumps(c.params)][-1]
    second_id = next(e["value"] for b in second.params["blocks"] if b.get("type") == "actions"
                     for e in b["elements"] if e["action_id"] == "approval.approve")
    approve(app, second_id, second)
    samples = scraped(app)
    counts = {outcome: samples.get(("amibot_rollouts_total", frozenset({("outcome", outcome)})), 0.0)
              for outcome in ("started", "succeeded", "failed", "cancelled")}
    assert counts == {"started": 2.0, "succeeded": 1.0, "failed": 1.0, "cancelled": 0.0}
    assert samples[("amibot_rollout_instances_replaced_total", frozenset())] == 2.0


def test_a_group_in_an_account_the_new_version_is_not_shared_with_is_not_rolled_and_says_how_to_share_it(
        aws, make_harness, monkeypatch):
    """Rolling it would replace staging's instances with ones that cannot launch: the plan says so before anyone
    approves, with the command that fixes it."""
    answered_refreshes(monkeypatch, {})
    old, new = seed.family(aws, ["1.4.0", "1.5.0"])  # owned by prod
    aws.client("ec2").modify_image_attribute(ImageId=old, LaunchPermission={"Add": [{"UserId": seed.STAGING}]})
    staging = seed.account_session(aws, seed.STAGING)
    group(staging, "web-staging", [old], LaunchTemplate={"LaunchTemplateId": template(staging, "web-st-lt", old),
                                                          "Version": "1"})
    app = make_harness({**ACCOUNTS_POLICY, **PEOPLE})
    app.command("rollout web")
    reply = app.last_reply().text
    assert "Nothing to roll out" in reply and "web-staging: not-shared" in reply
    assert f"/ami share {new} {seed.STAGING}" in reply
    assert app.ctx.store.one("SELECT count(*) AS n FROM requests")["n"] == 0
    aws.client("ec2").modify_image_attribute(ImageId=new, LaunchPermission={"Add": [{"UserId": seed.STAGING}]})
    app.command("rollout web")
    assert "Asked for approval" in app.last_reply().text
    message, _ = approval_message(app.fake)
    assert "web-staging" in message.text and "not shared" not in message.text


def test_the_watch_starts_the_next_groups_only_within_the_accounts_the_rollout_was_approved_for(
        aws, make_harness, emulation, web, monkeypatch):
    """web-c starts from the watch job, not from the approval: it runs in the approved request's scope (a
    changing call anywhere else is refused by every client amibot makes), as the approval's own execution does."""
    from datetime import timedelta

    from bot.core import authority

    scopes = []
    real = rollout_watch.start_groups

    def recorded(ctx, request, **kwargs):
        acting = authority.current()
        scopes.append(None if acting is None else (acting.user, sorted(acting.authorized)))
        return real(ctx, request, **kwargs)

    monkeypatch.setattr(rollout_watch, "start_groups", recorded)
    app = fast(make_harness(TWO_AT_ONCE))
    held_with_three_groups(aws, app, emulation, web)
    emulation.step = timedelta(milliseconds=10)
    app.wait_idle()
    assert [s["AutoScalingGroupName"] for s in emulation.starts] == ["web-asg", "web-b", "web-c"]
    own = app.ctx.aws.of(None).account.id
    assert scopes and all(scope == ("U0OPS", [own]) for scope in scopes)
