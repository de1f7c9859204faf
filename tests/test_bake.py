"""`/ami bake` end to end through the real app over HTTP: a builder instance in moto (CreateImage), an Image Builder
pipeline and an SSM Automation runbook through botocore's Stubber (moto has neither), the promotion request, cancel,
replays, restarts and schedules."""

from __future__ import annotations

import dataclasses
import json

from tests.support import seed
from tests.support.approvals import approval_message

OPERATORS = ["U0OPS", "U0LEAD"]


def policy(bakes, **extra):
    return {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "access": {"operators": OPERATORS},
            "approvals": {"approvers": ["U0LEAD"]}, "bakes": bakes, **extra}


def quick(harness):
    """Polls in milliseconds, not half-minutes."""
    ctx = harness.ctx
    ctx.waits = dataclasses.replace(ctx.waits, bake_poll_seconds=0.02, create_poll_seconds=0.02,
                                    create_wait_seconds=5.0)
    return harness


def own_images(aws, region="us-east-1"):
    return aws.client("ec2", region).describe_images(Owners=["self"])["Images"]


def tags(image):
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


def baked(aws, region="us-east-1"):
    return [image for image in own_images(aws, region) if "amibot:bake" in tags(image)]


def bake_messages(harness):
    posts = [c for c in harness.fake.calls_to("chat.postMessage") if "Bake of" in c.text]
    updates = [c for c in harness.fake.calls_to("chat.update") if "Bake of" in c.text]
    return posts, updates


def audit_actions(harness):
    return [(row["action"], row["outcome"]) for row in
            harness.ctx.store.query("SELECT action, outcome FROM audit ORDER BY id")]


# --- the builder instance (moto does CreateImage) ---------------------------------------------------------

def test_bake_from_an_instance_joins_the_family_copies_and_asks_to_promote_then_someone_else_approves(
        make_harness, aws):
    seed.family(aws, ["1.4.2"], name="web")
    builder = seed.instance(aws, name="web-builder")
    harness = quick(make_harness(policy([{"family": "web", "region": "us-east-1", "instance": builder,
                                          "copy_to": ["eu-west-1"]}])))
    harness.command("bake web")
    posts, updates = bake_messages(harness)
    assert len(posts) == 1 and updates, [c.text[:80] for c in harness.fake.calls]
    assert all(update.params["ts"] == posts[0].ts for update in updates)  # one message, updated in place
    final = updates[-1].text
    assert "builder instance" in final and builder in final and "1.4.3" in final and "done" in final
    [new] = baked(aws)
    assert tags(new)["Family"] == "web" and tags(new)["Version"] == "1.4.3"
    assert tags(new)["amibot:bake"].startswith(f"instance:{builder}/bake-")
    [copy] = baked(aws, "eu-west-1")
    assert tags(copy)["Version"] == "1.4.3" and tags(copy)["Family"] == "web"
    call, request_id = approval_message(harness.fake)
    assert "1.4.3" in call.text and "New" in json.dumps(call.params["blocks"])
    # the one who baked it cannot approve it
    harness.click("approval.approve", request_id, user="U0OPS")
    assert "someone else has to approve" in harness.fake.calls_to("response_url")[-1].text
    ssm = aws.client("ssm", "us-east-1")
    assert not ssm.describe_parameters()["Parameters"]
    harness.click("approval.approve", request_id, user="U0LEAD")
    assert ssm.get_parameter(Name="/amibot/web/current")["Parameter"]["Value"] == new["ImageId"]
    assert aws.client("ssm", "eu-west-1").get_parameter(Name="/amibot/web/current")["Parameter"]["Value"] == \
        copy["ImageId"]
    actions = audit_actions(harness)
    assert ("bake.started", "started") in actions
    assert any(action == "bake.succeeded" for action, _ in actions)
    assert ("request.approved", "approved") in actions
    harness.command(f"show {new['ImageId']}")  # the lineage tags read back: what it was baked from, and how
    shown = harness.last_reply().text
    source = aws.client("ec2").describe_instances(InstanceIds=[builder])["Reservations"][0]["Instances"][0]["ImageId"]
    assert f"baked from *seed-base* (`{source}`) by instance `{builder}`" in shown, shown  # what the builder ran


def test_the_promotion_approval_says_to_roll_it_out_when_an_auto_scaling_group_runs_an_older_version(
        make_harness, aws):
    [old] = seed.family(aws, ["1.4.2"], name="web")
    aws.client("ec2").create_tags(Resources=[seed.instance(aws, image_id=old)],
                                  Tags=[{"Key": "aws:autoscaling:groupName", "Value": "web-asg"}])
    builder = seed.instance(aws, name="web-builder")
    harness = quick(make_harness(policy([{"family": "web", "region": "us-east-1", "instance": builder}])))
    harness.command("bake web")
    _call, request_id = approval_message(harness.fake)
    harness.click("approval.approve", request_id, user="U0LEAD")
    said = "\n".join(c.text for c in harness.fake.calls_to("chat.postMessage") + harness.fake.calls_to("chat.update"))
    assert "1 instance(s) of web in us-east-1 run another version" in said, said
    assert "roll it out: `/ami rollout web` (1 Auto Scaling group: web-asg)" in said


def test_a_replayed_bake_command_starts_one_run(make_harness, aws):
    builder = seed.instance(aws)
    harness = quick(make_harness(policy([{"family": "web", "instance": builder}])))
    body = harness.command_body("bake web")
    harness.post(body)
    harness.post(body)  # Slack's retry, or a replay of the same signed request
    harness.wait_idle()
    assert len(baked(aws)) == 1
    assert len(bake_messages(harness)[0]) == 1


def test_a_non_operator_is_refused_before_any_aws_call(make_harness, aws):
    builder = seed.instance(aws)
    harness = quick(make_harness(policy([{"family": "web", "instance": builder}])))
    calls = []
    harness.ctx.aws.observers.append(lambda service, operation, error: calls.append((service, operation)))
    harness.command("bake web", user="U0STRANGER")
    assert "operator" in harness.last_reply().text
    assert calls == [] and baked(aws) == []


def test_a_family_without_a_bake_gets_the_entry_to_add(make_harness, aws):
    harness = quick(make_harness(policy([])))
    harness.command("bake api")
    text = harness.last_reply().text
    assert "No bake is configured for family “api”" in text and "[[bakes]]" in text and 'family = "api"' in text


def test_bakes_lists_the_bake_and_the_next_scheduled_run(make_harness, aws):
    builder = seed.instance(aws)
    harness = quick(make_harness(policy([{"family": "web", "instance": builder, "schedule": "0 3 * * mon"}])))
    harness.command("bake web")
    harness.command("bakes")
    text = harness.last_reply().text
    assert "web" in text and "succeeded" in text and "next Mon" in text


def test_a_manual_bake_ends_with_a_promote_button_for_operators_only(make_harness, aws):
    builder = seed.instance(aws)
    harness = quick(make_harness(policy([{"family": "web", "instance": builder, "promote": "manual"}])))
    harness.command("bake web")
    final = bake_messages(harness)[1][-1]
    buttons = [e for b in final.params["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == ["bake.promote"]
    assert not [c for c in harness.fake.calls_to("chat.postMessage") if "Promote web" in c.text]  # no request
    [new] = baked(aws)
    ssm = aws.client("ssm", "us-east-1")
    harness.click("bake.promote", buttons[0]["value"], user="U0STRANGER")
    assert "operator" in harness.last_reply().text and not ssm.describe_parameters()["Parameters"]
    harness.click("bake.promote", buttons[0]["value"], user="U0LEAD")
    assert ssm.get_parameter(Name="/amibot/web/current")["Parameter"]["Value"] == new["ImageId"]
    assert "promoted" in harness.last_reply().text


def test_bakes_are_counted_in_the_metrics(make_harness, aws):
    builder = seed.instance(aws)
    harness = quick(make_harness(policy([{"family": "web", "instance": builder}])))
    harness.command("bake web")
    registry = harness.ctx.metrics.registry
    assert registry.get_sample_value("amibot_bakes_total", {"outcome": "started"}) == 1
    assert registry.get_sample_value("amibot_bakes_total", {"outcome": "succeeded"}) == 1
    assert registry.get_sample_value("amibot_bake_duration_seconds_count", {"outcome": "succeeded"}) == 1


def test_a_crash_right_after_the_bake_was_recorded_is_finished_at_the_next_start(make_harness, aws):
    """In process: the steps a crash leaves right after they were written (nothing posted, nothing started); the
    next start posts the message, starts the run once, and proposes once."""
    from bot.core.config import bake_of
    from bot.durable.steps import Steps
    from bot.services import bake as baking

    builder = seed.instance(aws)
    data = policy([{"family": "web", "instance": builder}])
    first = make_harness(data)
    ctx = first.ctx
    [entry] = bake_of(ctx.policy, "web")
    handle = ctx.aws.of(None)
    record = baking.new_record(ctx, entry, "bake-00000000aa", "U0OPS", "C0OPS", None,
                               baking.source_of(ctx, handle, entry), handle)
    Steps(ctx.store, "bake:bake-00000000aa").plan(baking.plan_steps(record))
    second = make_harness(data)
    second.wait_idle()
    assert len(bake_messages(second)[0]) == 1
    assert len(baked(aws)) == 1
    assert len([c for c in second.fake.calls_to("chat.postMessage") if "Promote web" in c.text]) == 1
    assert "done" in bake_messages(second)[1][-1].text


def test_the_home_tab_shows_running_bakes_and_the_promotion_waiting_for_an_approver(make_harness, aws):
    from bot.core.config import bake_of
    from bot.durable.steps import DONE, Steps
    from bot.services import bake as baking
    from tests.support.home import open_home, view_text

    builder = seed.instance(aws)
    harness = quick(make_harness(policy([{"family": "web", "instance": builder}])))
    harness.command("bake web")  # finished: its promotion request waits for U0LEAD
    ctx = harness.ctx
    [entry] = bake_of(ctx.policy, "web")
    handle = ctx.aws.of(None)
    record = baking.new_record(ctx, entry, "bake-00000000bb", "U0OPS", "C0OPS", None,
                               baking.source_of(ctx, handle, entry), handle)
    steps = Steps(ctx.store, "bake:bake-00000000bb")
    planned = steps.plan(baking.plan_steps(record))  # a second one, running (its watch is not started here)
    steps.mark(planned[1], DONE, "started", run_id="ami-0123456789abcdef0")
    home = open_home(harness, "U0LEAD")[-1]
    text = view_text(home)
    assert "Bakes running (1)" in text and "bake-00000000bb" in text
    assert "Promote web" in text  # waiting for them, with its buttons


def test_a_version_built_elsewhere_is_proposed_once_across_two_apps_and_later_passes(make_harness, aws):
    from handlers.commands import bake as bake_command

    [current] = seed.family(aws, ["1.0.0"], name="web")
    builder = seed.instance(aws)
    data = policy([{"family": "web", "instance": builder}], approvals={"approvers": ["U0LEAD"], "channel": "C0BAKES"})
    first = quick(make_harness(data))
    first.command(f"promote {current}")
    packer = seed.image(aws, "web-1.0.1", tags={"Family": "web", "Version": "1.0.1"})  # CI's Packer build
    second = quick(make_harness(data))
    for app in (first, second, first):
        bake_command.discover(app.ctx)
        app.wait_idle()
    second.wait_idle()
    requests = [c for c in first.fake.calls_to("chat.postMessage") if "Promote web 1.0.1" in c.text]
    assert len(requests) == 1 and "built elsewhere" in requests[0].text and requests[0].params["channel"] == "C0BAKES"
    assert "requested by amibot (built elsewhere) at" in str(requests[0].params["blocks"])
    assert len([c for c in first.fake.calls_to("chat.postMessage") if "Promote web" in c.text]) == 1
    _, request_id = approval_message(first.fake)
    first.click("approval.approve", request_id, user="U0LEAD")
    assert aws.client("ssm", "us-east-1").get_parameter(Name="/amibot/web/current")["Parameter"]["Value"] == packer
