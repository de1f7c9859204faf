"""Issue 23 §1: the rollout plan, shown before anything changes — as data, from the running app's context over moto
in three accounts (bake owns the family's images and shares them; prod and staging run them in Auto Scaling
groups of every shape). moto has no instance refresh: DescribeInstanceRefreshes is answered by a before-call
handler on every session the app makes (as AWS answers it), or left to moto to show the feature detection."""

from __future__ import annotations

import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse

from bot.core.errors import AwsError
from bot.services import rollout
from tests.support import seed
from tests.support.rollout import POLICY, answered_refreshes, fleet, group, template


def by_name(plan) -> dict[str, rollout.GroupPlan]:
    return {group.group: group for group in plan.groups}


@pytest.fixture
def world(aws, make_harness, monkeypatch):
    answered_refreshes(monkeypatch, {"web-busy": "InProgress"})
    old, new = fleet(aws)
    return make_harness(POLICY), old, new


def test_the_plan_says_how_every_group_of_two_accounts_gets_the_current_version(world):
    app, old, new = world
    plan = rollout.plan(app.ctx, "web")
    groups = by_name(plan)
    assert set(groups) == {"web-pinned", "web-ssm", "web-classic", "legacy-web", "web-mixed", "web-done", "web-busy"}
    assert plan.targets["us-east-1"]["image_id"] == new and plan.targets["us-east-1"]["version"] == "1.5.0"
    assert {name: group.method for name, group in groups.items()} == {
        "web-pinned": rollout.PINNED, "web-ssm": rollout.SSM, "web-classic": rollout.LAUNCH_CONFIGURATION,
        "legacy-web": rollout.SKIPPED, "web-mixed": rollout.MIXED, "web-done": rollout.CURRENT,
        "web-busy": rollout.IN_PROGRESS}
    pinned = groups["web-pinned"]
    assert (pinned.account_label, pinned.instances, pinned.on_target) == ("prod (111111111111)", 2, 0)
    assert [(s.path, s.template_name, s.number, s.image_id) for s in pinned.sources] == [
        ("launch template", "web-lt", 1, old)]
    assert groups["web-ssm"].sources[0].via == "/amibot/web/current"
    assert groups["web-done"].on_target == groups["web-done"].instances == 1
    assert groups["web-mixed"].account_label == "staging (222222222222)"
    assert {s.path for s in groups["web-mixed"].sources} == {"mixed instances policy", "override t3.small"}
    assert "launch template" in groups["web-classic"].reason and "deprecates" in groups["web-classic"].reason
    assert groups["legacy-web"].reason == "[rollout].skip_groups: legacy-*"
    assert groups["web-busy"].refresh_id and "InProgress" in groups["web-busy"].reason
    assert [g.group for g in plan.to_roll] == ["web-pinned", "web-ssm", "web-mixed"]
    assert plan.totals() == "7 groups, 8 instances, 2 accounts; 1 group already current"
    assert plan.failures == {}
    assert rollout.RolloutPlan.from_data(plan.to_data()) == plan  # it can be stored with a request


def test_desired_configurations_and_preferences_follow_each_path(world):
    app, old, new = world
    groups = by_name(rollout.plan(app.ctx, "web"))
    pinned, ssm, mixed = groups["web-pinned"], groups["web-ssm"], groups["web-mixed"]
    lt = pinned.sources[0].template_id
    assert rollout.desired_configuration(pinned, {lt: 2}) == {"LaunchTemplate": {"LaunchTemplateId": lt,
                                                                                 "Version": "2"}}
    assert rollout.desired_configuration(ssm, {}) is None
    ids = {s.path: s.template_id for s in mixed.sources}
    desired = rollout.desired_configuration(mixed, {ids["mixed instances policy"]: 2, ids["override t3.small"]: 5})
    policy = desired["MixedInstancesPolicy"]["LaunchTemplate"]
    assert policy["LaunchTemplateSpecification"] == {"LaunchTemplateId": ids["mixed instances policy"],
                                                     "Version": "2"}
    assert [o["InstanceType"] for o in policy["Overrides"]] == ["t3.micro", "t3.small"]
    assert policy["Overrides"][1]["LaunchTemplateSpecification"] == {"LaunchTemplateId": ids["override t3.small"],
                                                                     "Version": "5"}
    settings = app.ctx.policy.rollout
    assert rollout.preferences(ssm, settings)["SkipMatching"] is False  # else nothing would be replaced
    chosen = rollout.preferences(pinned, settings, min_healthy=50, checkpoints=[20, 50])
    assert chosen["SkipMatching"] is True and chosen["MinHealthyPercentage"] == 50
    assert chosen["InstanceWarmup"] == 300 and chosen["CheckpointPercentages"] == [20, 50]
    assert chosen["CheckpointDelay"] == 600


def test_groups_whose_instances_cannot_be_read_are_unknown_never_current(aws, make_harness, monkeypatch):
    answered_refreshes(monkeypatch, {})
    old, new = fleet(aws)
    prod = seed.account_session(aws, seed.PROD)
    unreadable = group(prod, "web-late", [new], LaunchTemplate={"LaunchTemplateId": template(prod, "web-late-lt", new),
                                                                "Version": "1"})[0]

    def without_image(parsed, **_):  # AWS's answer names the instance but not its image
        for reservation in parsed.get("Reservations") or []:
            for instance in reservation.get("Instances") or []:
                if instance.get("InstanceId") == unreadable:
                    instance.pop("ImageId", None)

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
        *botocore.handlers.BUILTIN_HANDLERS, ("after-call.ec2.DescribeInstances", without_image)])
    app = make_harness(POLICY)
    groups = by_name(rollout.plan(app.ctx, "web"))
    late = groups["web-late"]
    assert late.method == rollout.UNKNOWN and late.on_target is None and "could not be read" in late.reason
    assert groups["web-pinned"].method == rollout.UNKNOWN  # the same listing of prod: none of it is known
    assert groups["web-done"].method == rollout.CURRENT  # staging read fine
    assert groups["web-busy"].method == rollout.PINNED  # no refresh on it this time


def test_without_instance_refresh_at_the_endpoint_a_group_to_roll_is_unknown(aws, make_harness):
    old, new = fleet(aws)  # moto itself: DescribeInstanceRefreshes is not implemented
    groups = by_name(rollout.plan(make_harness(POLICY).ctx, "web"))
    assert groups["web-pinned"].method == rollout.UNKNOWN
    assert "does not support autoscaling:DescribeInstanceRefreshes" in groups["web-pinned"].reason
    assert groups["web-done"].method == rollout.CURRENT  # nothing to start there: not asked


def test_only_the_named_groups_and_accounts(world):
    app, old, new = world
    staging = [account for account in app.ctx.aws.accounts if account.name == "staging"]
    plan = rollout.plan(app.ctx, "web", accounts=staging, groups=["web-mixed", "web-pinned"])
    assert [g.group for g in plan.groups] == ["web-mixed"]
    assert plan.totals() == "1 group, 1 instance, 1 account"


class Handle:
    """What start_refresh needs of an Aws handle: its clients (here one stubbed by botocore's Stubber)."""

    def __init__(self, client):
        self._client = client

    def client(self, service, region=None, max_attempts=6):
        return self._client


def test_a_refresh_starts_with_the_desired_configuration_and_preferences_asked():
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client("autoscaling", "us-east-1", aws_access_key_id="x",
                                                          aws_secret_access_key="x")
    prefs = {"MinHealthyPercentage": 90, "InstanceWarmup": 300, "SkipMatching": True, "AutoRollback": True}
    desired = {"LaunchTemplate": {"LaunchTemplateId": "lt-0123456789abcdef0", "Version": "2"}}
    with Stubber(client) as stub:
        stub.add_response("start_instance_refresh", {"InstanceRefreshId": "refresh-1"},
                          {"AutoScalingGroupName": "web-pinned", "Strategy": "Rolling", "Preferences": prefs,
                           "DesiredConfiguration": desired})
        stub.add_response("start_instance_refresh", {"InstanceRefreshId": "refresh-2"},
                          {"AutoScalingGroupName": "web-ssm", "Strategy": "Rolling",
                           "Preferences": {**prefs, "SkipMatching": False}})
        stub.add_response("cancel_instance_refresh", {"InstanceRefreshId": "refresh-2"},
                          {"AutoScalingGroupName": "web-ssm"})
        stub.add_response("rollback_instance_refresh", {"InstanceRefreshId": "refresh-1"},
                          {"AutoScalingGroupName": "web-pinned"})
        handle = Handle(client)
        assert rollout.start_refresh(handle, "us-east-1", "web-pinned", desired, prefs) == "refresh-1"
        assert rollout.start_refresh(handle, "us-east-1", "web-ssm", None, {**prefs, "SkipMatching": False}) \
            == "refresh-2"
        assert rollout.cancel_refresh(handle, "us-east-1", "web-ssm") == "refresh-2"
        assert rollout.rollback_refresh(handle, "us-east-1", "web-pinned") == "refresh-1"
        stub.assert_no_pending_responses()


def test_a_new_template_version_changes_only_the_image(world):
    app, old, new = world
    pinned = by_name(rollout.plan(app.ctx, "web"))["web-pinned"]
    source = pinned.sources[0]
    prod = app.ctx.aws.of(seed.PROD)
    number = rollout.new_template_version(prod, "us-east-1", source, new, "rollout-1-web-pinned")
    assert number == 2
    versions = prod.ec2("us-east-1").describe_launch_template_versions(LaunchTemplateId=source.template_id)
    data = {v["VersionNumber"]: v["LaunchTemplateData"] for v in versions["LaunchTemplateVersions"]}
    assert data[2]["ImageId"] == new and data[1]["ImageId"] == old


def test_groups_that_cannot_be_told_apart_make_their_place_a_failure_not_a_silence(aws, make_harness, monkeypatch):
    answered_refreshes(monkeypatch, {})
    fleet(aws)

    def refused(model, **_):  # prod's endpoint fails both the instances and the launch templates
        return (AWSResponse("https://ec2.us-east-1.amazonaws.com/", 500, {}, None),
                {"Error": {"Code": "InternalError", "Message": "We encountered an internal error."},
                 "ResponseMetadata": {"HTTPStatusCode": 500}})

    app = make_harness(POLICY)
    prod = app.ctx.aws.of(seed.PROD)
    for operation in ("DescribeInstances", "DescribeLaunchTemplateVersions"):
        prod._session.events.register(f"before-call.ec2.{operation}", refused)
    plan = rollout.plan(app.ctx, "web")
    groups = by_name(plan)
    assert groups["web-classic"].method == rollout.LAUNCH_CONFIGURATION  # its launch configuration was read
    assert "web-pinned" not in groups  # nothing says it runs the family…
    assert "could not be told" in plan.failures["prod (111111111111), us-east-1"]  # …so prod says what it missed
    assert "web-pinned" in plan.failures["prod (111111111111), us-east-1"]
    assert groups["web-done"].method == rollout.CURRENT


def test_single_account_the_bots_own_groups(aws, make_harness, monkeypatch):
    answered_refreshes(monkeypatch, {})
    old, new = seed.family(aws, ["1.4.0", "1.5.0"])
    group(aws, "web-asg", [old, new], LaunchTemplate={"LaunchTemplateId": template(aws, "web-lt", new),
                                                      "Version": "$Latest"})
    plan = rollout.plan(make_harness().ctx, "web")
    [only] = plan.groups
    assert (only.group, only.method, only.account_label, only.instances, only.on_target) == (
        "web-asg", rollout.PINNED, "", 2, 1)
    assert only.sources[0].version == "$Latest" and only.sources[0].number == 1
    assert set(plan.targets) == {"us-east-1"} and plan.failures == {}
    assert plan.totals() == "1 group, 2 instances, 1 account"


def test_an_endpoint_that_refuses_auto_rollback_gets_the_refresh_without_it_and_says_so():
    """AutoRollback is on "where the endpoint has it": a validation error about it started nothing, so the same
    refresh is asked once more without it — and the caller is told, never silently."""
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client("autoscaling", "us-east-1", aws_access_key_id="x",
                                                          aws_secret_access_key="x")
    prefs = {"MinHealthyPercentage": 90, "InstanceWarmup": 300, "SkipMatching": True, "AutoRollback": True}
    without = {key: value for key, value in prefs.items() if key != "AutoRollback"}
    with Stubber(client) as stub:
        stub.add_client_error("start_instance_refresh", service_error_code="ValidationError",
                              service_message="AutoRollback is not supported in this Region.",
                              expected_params={"AutoScalingGroupName": "web-pinned", "Strategy": "Rolling",
                                               "Preferences": prefs})
        stub.add_response("start_instance_refresh", {"InstanceRefreshId": "refresh-3"},
                          {"AutoScalingGroupName": "web-pinned", "Strategy": "Rolling", "Preferences": without})
        stub.add_client_error("start_instance_refresh", service_error_code="ValidationError",
                              service_message="An instance refresh is already in progress.")
        notes: list[str] = []
        assert rollout.start_refresh(Handle(client), "us-east-1", "web-pinned", None, prefs, notes) == "refresh-3"
        assert notes == [rollout.NO_AUTO_ROLLBACK]
        with pytest.raises(AwsError, match="already in progress"):  # any other refusal is not retried
            rollout.start_refresh(Handle(client), "us-east-1", "web-pinned", None, prefs, [])
        stub.assert_no_pending_responses()
