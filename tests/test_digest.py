"""The digest end to end: moto behind, the real app over signed HTTP in front, the fake Slack recording
what people see — `/ami digest`, the buttons and the approvals they open, the daily run (once per day
and channel across restarts and processes, in the configured time zone), and `amibot digest`."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import boto3
import botocore.client
import botocore.exceptions
import pytest
from botocore.stub import ANY, Stubber

from bot import cli, wiring
from bot.aws.clients import Aws, AwsAccounts
from bot.core.config import parse_policy
from bot.render.approvals import APPROVE
from bot.services import approvals, digest
from tests.support import seed
from tests.support.digest import DIGEST, daily_policy, digest_posts, registered
from tests.support.harness import REGIONS

ACCOUNT = "123456789012"


@pytest.fixture
def policy_data():
    return {"aws": {"regions": REGIONS}, "digest": dict(DIGEST)}


def snapshot(aws, description: str, size: int = 100, region: str = "us-east-1") -> str:
    ec2 = aws.client("ec2", region)
    volume = ec2.create_volume(Size=size, AvailabilityZone=f"{region}a")["VolumeId"]
    return ec2.create_snapshot(VolumeId=volume, Description=description)["SnapshotId"]


def snapshots_of(aws, image_id: str, region: str = "us-east-1") -> list[str]:
    image = aws.client("ec2", region).describe_images(ImageIds=[image_id])["Images"][0]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]


def existing_snapshots(aws, region: str = "us-east-1") -> set[str]:
    return {s["SnapshotId"] for s in aws.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"]}


@pytest.fixture
def world(aws):
    """One family in us-east-1 where every image is old, each kept (or not) by exactly one rule."""
    ec2 = aws.client("ec2")
    ids = {name: registered(aws, f"app-{name}", 200, family="app")
           for name in ("stale", "stopped", "lt-default", "lt-middle", "lt-latest", "lc", "disabled", "gone")}
    ids["newest"] = registered(aws, "app-newest", 100, family="app")  # keep_latest = 1
    ids["young"] = registered(aws, "other-v1", 10)
    instance = seed.instance(aws, image_id=ids["stopped"])
    ec2.stop_instances(InstanceIds=[instance])
    template = seed.launch_template(aws, "app-lt", ids["lt-default"])
    for version in ("lt-middle", "lt-latest"):  # v2 is neither default nor latest: not protected
        ec2.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={"ImageId": ids[version]})
    aws.client("autoscaling").create_launch_configuration(LaunchConfigurationName="app-lc", ImageId=ids["lc"],
                                                          InstanceType="t3.micro")
    ec2.disable_image(ImageId=ids["disabled"])
    ids["orphan-register"] = snapshots_of(aws, ids["gone"])[0]
    ec2.deregister_image(ImageId=ids["gone"])
    created = seed.image(aws, "made-from-instance")  # its snapshot: "Created by CreateImage(i-…) for ami-…"
    ids["orphan-create"] = snapshots_of(aws, created)[0]
    ec2.deregister_image(ImageId=created)
    ids["orphan-copy"] = snapshot(aws, "Copied for DestinationAmi ami-0123456789abcdef0 from SourceAmi "
                                       "ami-0fedcba9876543210 for SourceSnapshot snap-0123456789abcdef0", 100)
    ids["backup"] = snapshot(aws, "nightly backup", 500)
    ids["eu-stale"] = registered(aws, "eu-v1", 300, region="eu-west-1")
    ids["eu-newest"] = registered(aws, "eu-v2", 200, region="eu-west-1")
    return ids


def test_digest_command_posts_what_can_go_with_its_cost(harness, world):
    harness.command("digest", channel="C0OPS")
    [post] = digest_posts(harness)
    text = post.text
    for listed in ("stale", "lt-middle", "disabled", "eu-stale", "orphan-register", "orphan-create", "orphan-copy"):
        assert world[listed] in text, listed
    for kept in ("stopped", "lt-default", "lt-latest", "lc", "newest", "young", "backup", "eu-newest"):
        assert world[kept] not in text, kept
    assert "disabled, ready to deregister" in text
    # us-east-1: 3 stale images × 15 GiB, orphans 15 + 15 + 100 GiB; eu-west-1: one image
    assert "*us-east-1*: 3 stale images (45 GiB), 3 orphaned snapshots (130 GiB) — *$8.75/month*" in text
    assert "*eu-west-1*: 1 stale image (15 GiB), 0 orphaned snapshots (0 GiB) — *$0.75/month*" in text
    assert "save about *$9.50 a month*" in text
    assert text.index("*us-east-1*: 3 stale") < text.index(world["stale"])  # totals before items
    assert harness.fake.calls_to("file_upload") == []  # everything fits: no attachment
    row = harness.ctx.store.one("SELECT outcome, detail FROM audit WHERE action = 'command.digest'")
    assert row["outcome"] == "ok" and json.loads(row["detail"])["stale_images"] == 4


def test_nothing_stale_says_all_clean(harness, aws):
    registered(aws, "fresh-v1", 5)
    harness.command("digest", channel="C0OPS")
    [post] = digest_posts(harness)
    assert "All clean" in post.text and "1 image checked" in post.text


def test_the_full_list_is_attached_as_csv_when_it_does_not_fit(harness, aws):
    images = [registered(aws, f"bulk-{n:03d}", 100 + n, family="bulk") for n in range(40)]
    harness.command("digest", channel="C0OPS")
    [post] = digest_posts(harness)
    assert len(post.params["blocks"]) <= 50
    [upload] = harness.fake.calls_to("file_upload")
    rows = list(csv.DictReader(io.StringIO(upload.params["content"])))
    assert {row["id"] for row in rows} == set(images[1:])  # bulk-000 is the newest: kept
    assert all(row["monthly_cost_usd"] == "0.75" and row["size_gb"] == "15" for row in rows)
    day = datetime.now(UTC).date().isoformat()
    assert upload.params["filename"] == f"amibot-digest-{day}.csv"
    shown = sum(image in post.text for image in images)
    assert f"and {39 - shown} more" in post.text
    [complete] = harness.fake.calls_to("files.completeUploadExternal")
    assert complete.params["channel_id"] == "C0OPS" and complete.params["thread_ts"] == post.ts
    assert "39 stale images" in complete.params["initial_comment"]


def _digest_message(harness) -> tuple[str, dict]:
    harness.command("digest", channel="C0OPS")
    post = digest_posts(harness)[-1]
    return post.ts, {"ts": post.ts, "text": post.params["text"], "blocks": post.params["blocks"]}


def test_request_deregistration_opens_a_real_approval_that_then_deregisters(harness, aws, world):
    ts, message = _digest_message(harness)
    harness.click("digest.deregister", f"us-east-1:{world['stale']}", user="U0OPS", channel="C0OPS",
                  message_ts=ts, message=message)
    [request] = approvals.pending(harness.ctx)
    assert request.kind == "deregister" and request.params["image_id"] == world["stale"]
    assert request.requester == "U0OPS"
    assert request.id in harness.last_reply().text
    assert any(c.params.get("ts") == ts and "asked to deregister" in c.text
               for c in harness.fake.calls_to("chat.update"))  # the buttons gave way to who asked
    harness.click(APPROVE, request.id, user="U0LEAD", channel="C0OPS")
    harness.wait_idle()
    assert approvals.get(harness.ctx, request.id).state == "succeeded"
    assert aws.client("ec2").describe_images(ImageIds=[world["stale"]])["Images"] == []


def test_request_deregistration_of_an_image_in_use_is_refused(harness, world):
    harness.click("digest.deregister", f"us-east-1:{world['stopped']}", user="U0OPS", channel="C0OPS")
    assert "is in use" in harness.last_reply().text
    assert approvals.pending(harness.ctx) == []
    row = harness.ctx.store.one("SELECT actor, outcome FROM audit WHERE action = 'digest.deregister'")
    assert row["actor"] == "U0OPS" and row["outcome"].startswith("refused:")


def test_buttons_respect_operators(make_harness, world):
    running = make_harness({"aws": {"regions": REGIONS}, "digest": DIGEST, "access": {"operators": ["U0OPS"]}})
    running.click("digest.snooze", f"us-east-1:{world['stale']}", user="U0RANDOM", channel="C0OPS")
    assert "Only amibot operators" in running.last_reply().text
    assert running.ctx.store.query("SELECT * FROM snoozes") == []


def test_a_snoozed_image_stays_out_of_the_digest_for_thirty_days(make_harness, world):
    now = [datetime.now(UTC)]
    running = make_harness({"aws": {"regions": REGIONS}, "digest": DIGEST}, clock=lambda: now[0])
    running.click("digest.snooze", f"us-east-1:{world['stale']}", user="U0OPS", channel="C0OPS")
    assert "stays out of the digest until" in running.last_reply().text
    row = running.ctx.store.one("SELECT * FROM snoozes")
    assert row["image_id"] == world["stale"] and row["by"] == "U0OPS"
    audit = running.ctx.store.one("SELECT * FROM audit WHERE action = 'digest.snooze'")
    assert audit["target"] == world["stale"] and audit["outcome"].startswith("snoozed until")
    running.command("digest", channel="C0OPS")
    assert world["stale"] not in digest_posts(running)[-1].text
    assert world["lt-middle"] in digest_posts(running)[-1].text
    now[0] += timedelta(days=31)
    running.command("digest", channel="C0OPS")
    assert world["stale"] in digest_posts(running)[-1].text


def test_request_cleanup_opens_one_approval_and_deletes_each_snapshot(harness, aws, world):
    ts, message = _digest_message(harness)
    cleanup = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == "digest.cleanup")
    assert set(cleanup["value"].split(":")[1].split(",")) == {
        world["orphan-register"], world["orphan-create"], world["orphan-copy"]}
    harness.click("digest.cleanup", cleanup["value"], user="U0OPS", channel="C0OPS", message_ts=ts, message=message)
    [request] = approvals.pending(harness.ctx)
    assert request.kind == "snapshot-cleanup" and request.params["region"] == "us-east-1"
    approval_message = harness.fake.wait_for_method("chat.postMessage", where=lambda c: request.id in c.text)
    assert "130 GiB" in approval_message.text
    harness.click(APPROVE, request.id, user="U0LEAD", channel="C0OPS")
    harness.wait_idle()
    done = approvals.get(harness.ctx, request.id)
    assert done.state == "succeeded", done.outcome
    assert "Deleted 3 of 3 snapshots in us-east-1 (130 GiB, $6.50/month saved)" in done.outcome
    left = existing_snapshots(aws)
    assert not {world["orphan-register"], world["orphan-create"], world["orphan-copy"]} & left
    assert world["backup"] in left
    thread = [c.text for c in harness.fake.calls_to("chat.postMessage") if c.params.get("thread_ts")]
    assert any(f"Deleted {world['orphan-copy']}" in text for text in thread)


def test_cleanup_skips_snapshots_in_use_or_gone_and_reports_each(harness, aws, world):
    in_use = snapshots_of(aws, world["stale"])[0]
    request = approvals.Request(
        id="req-test", kind="snapshot-cleanup", title="t", details=[], reason=None, danger=False, requester="U0OPS",
        channel="C0OPS", message_ts=None, state="executing", required=1, created_at="", updated_at="",
        params={"region": "us-east-1", "snapshot_ids": [world["orphan-copy"], in_use, "snap-0123456789abcdef0"],
                "sizes": {world["orphan-copy"]: 100}})
    notes = []
    outcome = digest.execute_cleanup(harness.ctx, request, notes.append)
    assert outcome.startswith("Deleted 1 of 3 snapshots in us-east-1 (100 GiB, $5.00/month saved)")
    assert f"{in_use} (in use)" in outcome and "snap-0123456789abcdef0 (already gone)" in outcome
    assert len(notes) == 3
    assert in_use in existing_snapshots(aws)
    # and a cleanup request leaves out what is no longer orphaned
    refused = harness.click("digest.cleanup", f"us-east-1:{in_use}", user="U0OPS", channel="C0OPS")
    assert refused.status == 200 and "Nothing to clean up" in harness.last_reply().text


def test_malformed_button_values_get_a_clear_answer(harness):
    harness.click("digest.deregister", "nonsense", user="U0OPS", channel="C0OPS")
    assert "does not name what to act on" in harness.last_reply().text


# --- the daily run --------------------------------------------------------------------------------------


def daily_job(running):
    job = wiring.build_scheduler(running.ctx).get_job(digest.SCHEDULE_ID)
    assert job is not None
    return job


def test_the_daily_time_is_in_the_configured_time_zone(make_harness, aws):
    registered(aws, "tz-v1", 300, now=datetime(2026, 3, 1, tzinfo=UTC))
    # 2026-03-28 07:30 UTC is 08:30 in Berlin (CET): not yet due; the next run is 09:00 CET = 08:00 UTC
    before = datetime(2026, 3, 28, 7, 30, tzinfo=UTC)
    first = make_harness(daily_policy(), clock=lambda: before)
    first.wait_idle()
    assert digest_posts(first, "C0DIGEST") == []
    job = daily_job(first)
    assert job.trigger.get_next_fire_time(None, before) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    assert (job.coalesce, job.misfire_grace_time, job.max_instances) == (True, 3600, 1)
    # after the switch to summer time 09:00 in Berlin is 07:00 UTC
    after_switch = datetime(2026, 3, 29, 7, 30, tzinfo=UTC)
    assert job.trigger.get_next_fire_time(None, datetime(2026, 3, 29, 0, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    first.stop()
    second = make_harness(daily_policy(), clock=lambda: after_switch)  # started late: catches up once
    second.wait_idle()
    [post] = digest_posts(second, "C0DIGEST")
    assert "AMI digest for 2026-03-29" in post.text and "1 stale image" in post.text
    assert second.ctx.store.one("SELECT date, channel, message_ts FROM digest_runs") == {
        "date": "2026-03-29", "channel": "C0DIGEST", "message_ts": post.ts}


def test_the_day_is_the_local_day(make_harness, aws):
    # 21:00 UTC on 30 June is 09:00 on 1 July in Auckland
    late = datetime(2026, 6, 30, 21, 0, tzinfo=UTC)
    running = make_harness(daily_policy("08:30", "Pacific/Auckland"), clock=lambda: late)
    running.wait_idle()
    assert running.ctx.store.one("SELECT date FROM digest_runs")["date"] == "2026-07-01"
    assert "all clean" in digest_posts(running, "C0DIGEST")[0].params["text"]


def test_posted_once_across_a_restart(make_harness, aws):
    at = datetime(2026, 5, 4, 9, 15, tzinfo=UTC)
    registered(aws, "once-v1", 300, now=at)
    first = make_harness(daily_policy("09:00", "UTC"), clock=lambda: at)
    first.wait_idle()
    assert digest.run_daily(first.ctx) == "already posted"  # the schedule firing as well changes nothing
    first.stop()
    second = make_harness(daily_policy("09:00", "UTC"), clock=lambda: at + timedelta(hours=2))
    second.wait_idle()
    assert len(digest_posts(second, "C0DIGEST")) == 1
    rows = second.ctx.store.query("SELECT outcome FROM audit WHERE action = 'digest.daily'")
    assert len(rows) == 1 and rows[0]["outcome"].startswith("posted: 1 stale")


def test_posted_once_by_two_schedulers_on_one_database(make_harness, aws):
    now = [datetime(2026, 5, 4, 8, 0, tzinfo=UTC)]  # before 09:00: neither catches up at start
    registered(aws, "twice-v1", 300, now=now[0])
    first = make_harness(daily_policy("09:00", "UTC"), clock=lambda: now[0])
    second = make_harness(daily_policy("09:00", "UTC"), clock=lambda: now[0])
    jobs = [daily_job(first), daily_job(second)]
    now[0] = datetime(2026, 5, 4, 9, 0, 1, tzinfo=UTC)
    outcomes = []
    threads = [threading.Thread(target=lambda job=job: outcomes.append(job.func(*job.args))) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcome.split(":")[0] for outcome in outcomes) == ["already posted", "posted"]
    [post] = digest_posts(first, "C0DIGEST")
    assert "1 stale image" in post.text


def test_no_channel_means_no_daily_job(harness):
    assert wiring.build_scheduler(harness.ctx).get_job(digest.SCHEDULE_ID) is None


# --- LastLaunchedTime and pagination, which moto does not do ------------------------------------------------

def test_inventory_pages_through_everything_and_honours_last_launched_time():
    aws = Aws(["us-east-1"], session=boto3.session.Session(region_name="us-east-1"))
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = (now - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def image(number: int, launched_days: int | None) -> dict:
        data = {"ImageId": f"ami-{number:017x}", "Name": f"job-{number}", "State": "available", "OwnerId": ACCOUNT,
                "CreationDate": old, "Tags": [{"Key": "Family", "Value": f"f{number}"}],
                "BlockDeviceMappings": [{"DeviceName": "/dev/sda1",
                                         "Ebs": {"SnapshotId": f"snap-{number:017x}", "VolumeSize": 20}}]}
        if launched_days is not None:
            data["LastLaunchedTime"] = (now - timedelta(days=launched_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return data

    orphan = {"SnapshotId": "snap-0000000000000000f", "OwnerId": ACCOUNT, "VolumeSize": 8, "StartTime": now,
              "Description": "Auto-created snapshot for AMI ami-0000000000000000e", "State": "completed"}
    ec2, autoscaling = aws.ec2("us-east-1"), aws.client("autoscaling", "us-east-1")
    ssm, imagebuilder = aws.client("ssm", "us-east-1"), aws.client("imagebuilder", "us-east-1", max_attempts=1)
    checks = aws.client("ec2", "us-east-1", max_attempts=1)  # AWS's own reference check has its own client
    # no STS stub: the account id for the snapshot filter comes from the images' owner
    with Stubber(ec2) as ec2_stub, Stubber(autoscaling) as asg_stub, Stubber(ssm) as ssm_stub, \
            Stubber(imagebuilder) as recipes_stub, Stubber(checks) as checks_stub:
        ec2_stub.add_response("describe_instances", {"Reservations": []}, {"Filters": ANY})
        ec2_stub.add_response("describe_launch_template_versions", {"LaunchTemplateVersions": []},
                              {"Versions": ["$Default", "$Latest"], "MaxResults": 200})
        ec2_stub.add_response("describe_fleets", {"Fleets": []}, {})
        ec2_stub.add_response("describe_spot_fleet_requests", {"SpotFleetRequestConfigs": []}, {})
        ssm_stub.add_response("describe_parameters", {"Parameters": []}, {"ParameterFilters": ANY, "MaxResults": 50})
        recipes_stub.add_response("list_image_recipes", {"imageRecipeSummaryList": []}, {"owner": "Self"})
        ec2_stub.add_response("describe_images", {"Images": [image(1, 10)], "NextToken": "page2"},
                              {"Owners": ["self"], "IncludeDisabled": True})
        ec2_stub.add_response("describe_images", {"Images": [image(2, 200), image(3, None)]},
                              {"Owners": ["self"], "IncludeDisabled": True, "NextToken": "page2"})
        ec2_stub.add_response("describe_snapshots", {"Snapshots": [], "NextToken": "s2"}, {
            "OwnerIds": ["self"], "MaxResults": 1000, "Filters": [{"Name": "owner-id", "Values": [ACCOUNT]},
                                              {"Name": "description", "Values": ANY}]})
        ec2_stub.add_response("describe_snapshots", {"Snapshots": [orphan]}, {
            "OwnerIds": ["self"], "MaxResults": 1000, "Filters": ANY, "NextToken": "s2"})
        # AWS's own reference check, asked about the stale candidates only (one batch of up to 10)
        checks_stub.add_response("describe_image_references", {"ImageReferences": []},
                              {"ImageIds": [f"ami-{2:017x}", f"ami-{3:017x}"], "ResourceTypes": ANY})
        asg_stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": []}, {})
        asg_stub.add_response("describe_launch_configurations", {"LaunchConfigurations": []}, {})
        findings = digest.compute(AwsAccounts(aws), parse_policy({"digest": {"keep_latest": 0}}), now)
        for stub in (ec2_stub, asg_stub, ssm_stub, recipes_stub, checks_stub):
            stub.assert_no_pending_responses()
    [region] = findings.regions
    assert [item.image.id for item in region.stale] == [f"ami-{2:017x}", f"ami-{3:017x}"]
    assert region.kept == {"launched within stale_after_days": 1}
    assert [orphan.snapshot.id for orphan in region.orphans] == ["snap-0000000000000000f"]
    assert region.monthly_cost == pytest.approx((20 + 20 + 8) * 0.05)


# --- `amibot digest` ---------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    config = tmp_path / "amibot.toml"
    config.write_text('[aws]\nregions = ["us-east-1", "eu-west-1"]\n[digest]\nkeep_latest = 1\nchannel = "C0DIGEST"\n')
    monkeypatch.setenv("AMIBOT_CONFIG", str(config))
    monkeypatch.setenv("AMIBOT_DB", str(tmp_path / "cli.db"))
    return tmp_path


def test_cli_dry_run_prints_json_csv_and_a_table_with_progress(aws, world, cli_env, capsys):
    assert cli.main(["digest", "--dry-run", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["totals"]["stale_images"] == 4 and document["totals"]["orphaned_snapshots"] == 3
    assert {item["id"] for item in document["items"]} >= {world["stale"], world["orphan-copy"]}
    regions = {region["region"]: region for region in document["regions"]}
    # images, snapshots, and one listing per reference source (instances, templates, groups, launch configurations,
    # EC2 Fleets, Spot Fleets, SSM parameters, Image Builder recipes), then AWS's own check for the candidates,
    # and the fleet-health part: the Recycle Bin, instance image metadata for drift (moto has none: the scan's own
    # instance listing stands in), one Inspector probe (moto has none: no more), Allowed AMIs
    assert regions["us-east-1"]["aws_calls"] >= 15 and regions["eu-west-1"]["aws_calls"] == 15
    assert "us-east-1: scanning" in err and "eu-west-1: done: 1 stale image" in err
    assert cli.main(["digest", "--dry-run", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 4 + 3
    assert cli.main(["digest", "--dry-run"]) == 0
    table = capsys.readouterr().out
    assert "TOTAL" in table and world["eu-stale"] in table and "disabled, ready to deregister" in table


def test_cli_dry_run_without_any_region_says_so_in_one_line(aws, tmp_path, monkeypatch, capsys):
    config = tmp_path / "amibot.toml"
    config.write_text("[digest]\nkeep_latest = 1\n")  # no [aws].regions
    monkeypatch.setenv("AMIBOT_CONFIG", str(config))
    monkeypatch.setenv("AMIBOT_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert cli.main(["digest", "--dry-run"]) == 1
    out, err = capsys.readouterr()
    assert err.strip() == "amibot: no AWS region configured: set AWS_DEFAULT_REGION or [aws].regions in the policy file"
    assert out == ""


def test_cli_posts_to_the_digest_channel(aws, world, cli_env, fake_slack, monkeypatch, capsys):
    assert cli.main(["digest"]) == 2
    assert "SLACK_BOT_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-cli-test")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.url)
    assert cli.main(["digest"]) == 0
    [post] = fake_slack.calls_to("chat.postMessage")
    assert post.params["channel"] == "C0DIGEST" and world["stale"] in post.text


def test_cli_dry_run_with_a_region_not_checked_is_never_all_clean(aws, cli_env, monkeypatch, capsys):
    """Nothing stale where it could look, and eu-west-1 refused: the terminal says first what was not checked,
    and "all clean" only where checked — as the Slack digest does."""
    real_call = botocore.client.BaseClient._make_api_call

    def refuse_eu(client, operation, params):
        if client.meta.region_name == "eu-west-1":
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "UnauthorizedOperation", "Message": "not for you"}}, operation)
        return real_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse_eu)
    assert cli.main(["digest", "--dry-run"]) == 1  # documented: a region that could not be checked
    table = capsys.readouterr().out
    assert "eu-west-1" in table and "not checked" in table
    assert "All clean: nothing stale" not in table
    summary = table.strip().splitlines()[-1]
    assert summary.startswith("Not checked: eu-west-1") and "all clean where checked" in summary.lower()


def test_families_whose_current_version_is_old_and_not_baked_are_advice_not_a_stale_image(make_harness, aws):
    registered(aws, "web-v1", 200, family="web")  # current (its newest), old, no [[bakes]] entry: listed
    registered(aws, "api-v1", 200, family="api")  # old too, but baked: not listed
    registered(aws, "fresh-v1", 5, family="fresh")  # young: not listed
    running = make_harness({"aws": {"regions": REGIONS}, "digest": dict(DIGEST),
                            "bakes": [{"family": "api", "instance": "i-0123456789abcdef0"}]})
    running.command("digest", channel="C0OPS")
    [post] = digest_posts(running)
    assert "All clean" in post.text  # advice: it does not make a clean fleet unclean
    shown = str(post.params["blocks"])
    assert "Families without a bake (1)" in shown
    assert "*web* (us-east-1): current web-v1" in shown and "200 days old" in shown
    assert "no [[bakes]] entry: see docs/baking.md" in shown
    assert "*api*" not in shown and "*fresh*" not in shown
