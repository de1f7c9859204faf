"""[[bakes]]: what `amibot check-config` refuses, what `amibot iam-policy` adds, the next version, and a scheduled bake
claimed once by two apps on one database."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from bot.core.config import parse_policy
from bot.core.errors import ConfigError
from bot.services.versions import next_version
from tests.support import seed
from tests.support.processes import run_cli

PIPELINE = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web"
ROLE = "arn:aws:iam::123456789012:role/AutomationServiceRole"


def problems_of(text: str, tmp_path) -> list[str]:
    config = tmp_path / "amibot.toml"
    config.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "AMIBOT_CONFIG": str(config), "SLACK_BOT_TOKEN": "xoxb-1111-2222-secretsecret",
           "SLACK_SIGNING_SECRET": "abcdef0123456789abcdef"}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    return [line.strip()[2:] for line in result.stderr.splitlines() if line.strip().startswith("- ")
            and "warning" not in line]


def test_check_config_names_each_bake_problem(tmp_path):
    problems = problems_of(f'''
[aws]
regions = ["us-east-1"]

[[bakes]]
family = "web"
pipeline = "{PIPELINE.replace("us-east-1", "eu-west-1")}"

[[bakes]]
family = "api"
automation = "AWS-UpdateLinuxAmi"
parameters = {{ IamInstanceProfileName = "ManagedInstanceProfile" }}

[[bakes]]
family = "db"
instance = "i-0123456789abcdef0"
pipeline = "{PIPELINE}"

[[bakes]]
family = "batch"
instance = "i-0123456789abcdef0"
schedule = "every monday"
promote = "maybe"
''', tmp_path)
    assert "[[bakes]] web.pipeline: the pipeline is in eu-west-1 but the bake runs in us-east-1 " \
           "(set region = \"eu-west-1\")" in problems
    assert "[[bakes]] api.parameters: AWS-UpdateLinuxAmi requires AutomationAssumeRole" in problems
    assert "[[bakes]] db: give exactly one of pipeline, automation, instance (given: pipeline, instance)" in problems
    assert any(p.startswith("[[bakes]] batch.schedule: expected a crontab of 5 fields") for p in problems)
    assert "[[bakes]] batch.promote: expected \"approval\" or \"manual\", got 'maybe'" in problems
    assert len(problems) == 5, problems


def test_a_valid_bake_is_printed_by_check_config(tmp_path):
    config = tmp_path / "amibot.toml"
    config.write_text(f'[[bakes]]\nfamily = "web"\nregion = "us-east-1"\npipeline = "{PIPELINE}"\n'
                      'copy_to = ["eu-west-1"]\nschedule = "0 3 * * mon"\n')
    env = {"PATH": "/usr/bin:/bin", "AMIBOT_CONFIG": str(config), "SLACK_BOT_TOKEN": "xoxb-1111-2222-secretsecret",
           "SLACK_SIGNING_SECRET": "abcdef0123456789abcdef"}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"[[bakes]] web: pipeline {PIPELINE}, region us-east-1, schedule '0 3 * * mon'" in result.stdout


def test_a_pipeline_in_another_account_than_the_bake_is_refused():
    with pytest.raises(ConfigError) as raised:
        parse_policy({"aws": {"regions": ["us-east-1"]}, "bakes": [
            {"family": "web", "account": "210987654321", "pipeline": PIPELINE}]})
    assert raised.value.problems == ["[[bakes]] web.pipeline: the pipeline is in account 123456789012 but the bake "
                                     "runs in 210987654321"]


def test_iam_policy_passes_only_the_configured_roles(tmp_path):
    config = tmp_path / "amibot.toml"
    config.write_text('[[bakes]]\nfamily = "web"\nautomation = "AWS-UpdateLinuxAmi"\n'
                      f'parameters = {{ IamInstanceProfileName = "ManagedInstanceProfile", AutomationAssumeRole = '
                      f'"{ROLE}" }}\n')
    result = run_cli("iam-policy", env={"PATH": "/usr/bin:/bin", "AMIBOT_CONFIG": str(config)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    statements = json.loads(result.stdout)["Statement"]
    assert {"ssm:StartAutomationExecution", "imagebuilder:StartImagePipelineExecution",
            "imagebuilder:GetImage"} <= set(statements[0]["Action"])
    assert "iam:PassRole" not in statements[0]["Action"]
    [passing] = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert passing["Resource"] == ["arn:aws:iam::*:role/ManagedInstanceProfile", ROLE]


@pytest.mark.parametrize(("versions", "expected"), [
    (["1.4.1", "1.4.2"], "1.4.3"), (["web-11", "web-12"], "web-13"), (["007"], "008"), ([], "2026.06.01"),
    (["2026.05.20"], "2026.06.01"), (["2026.06.01"], "2026.06.01.2"), (["2026.06.01.2"], "2026.06.01.3"),
    (["latest"], "2026.06.01"), (["1.9", "1.10"], "1.11")])
def test_the_next_version_follows_the_familys_own_scheme(versions, expected):
    assert next_version(versions, date(2026, 6, 1)) == expected


def test_a_scheduled_bake_fired_by_two_apps_on_one_database_runs_once(make_harness, aws):
    from bot.core.config import bake_of
    from handlers.commands import bake as bake_command

    builder = seed.instance(aws)
    data = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"channel": "C0BAKES"},
            "bakes": [{"family": "web", "instance": builder, "schedule": "0 3 * * mon"}]}
    monday = datetime(2026, 6, 1, 3, 0, 5, tzinfo=UTC)
    first = make_harness(data, clock=lambda: monday)
    second = make_harness(data, clock=lambda: monday)
    for app in (first, second):
        app.ctx.waits = dataclasses.replace(app.ctx.waits, bake_poll_seconds=0.02, create_poll_seconds=0.02)
    [entry] = bake_of(first.ctx.policy, "web")
    claimed = [bake_command.scheduled(app.ctx, entry) for app in (first, second)]
    first.wait_idle()
    second.wait_idle()
    assert len([c for c in claimed if c is not None]) == 1
    made = [image for image in aws.client("ec2", "us-east-1").describe_images(Owners=["self"])["Images"]
            if any(tag["Key"] == "amibot:bake" for tag in image.get("Tags", []))]
    assert len(made) == 1
    posts = [c for c in first.fake.calls_to("chat.postMessage") if "Bake of" in c.text]
    assert len(posts) == 1 and posts[0].params["channel"] == "C0BAKES" and "started by the schedule" in posts[0].text
    requests = [c for c in first.fake.calls_to("chat.postMessage") if "Promote web" in c.text]
    assert len(requests) == 1


def test_the_promotion_request_of_a_scheduled_bake_says_the_schedule_asked_not_a_user(make_harness, aws):
    from bot.core.config import bake_of
    from handlers.commands import bake as bake_command

    builder = seed.instance(aws)
    data = {"aws": {"regions": ["us-east-1", "eu-west-1"]}, "approvals": {"channel": "C0BAKES"},
            "bakes": [{"family": "web", "instance": builder, "schedule": "0 3 * * mon"}]}
    app = make_harness(data, clock=lambda: datetime(2026, 6, 1, 3, 0, 5, tzinfo=UTC))
    app.ctx.waits = dataclasses.replace(app.ctx.waits, bake_poll_seconds=0.02, create_poll_seconds=0.02)
    [entry] = bake_of(app.ctx.policy, "web")
    bake_command.scheduled(app.ctx, entry)
    app.wait_idle()
    [request] = [c for c in app.fake.calls_to("chat.postMessage") if "Promote web" in c.text]
    shown = str(request.params["blocks"])
    assert "requested by scheduled bake at" in shown and "<@amibot>" not in shown


def test_check_config_aws_says_an_automation_bake_has_no_version_to_patch(aws, monkeypatch, tmp_path, capsys):
    from bot import cli

    config = tmp_path / "amibot.toml"
    config.write_text('[aws]\nregions = ["us-east-1"]\n\n[[bakes]]\nfamily = "api"\n'
                      'automation = "AWS-UpdateLinuxAmi"\n'
                      f'parameters = {{ IamInstanceProfileName = "P", AutomationAssumeRole = "{ROLE}" }}\n\n'
                      '[[bakes]]\nfamily = "web"\nautomation = "AWS-UpdateLinuxAmi"\n'
                      f'parameters = {{ IamInstanceProfileName = "P", AutomationAssumeRole = "{ROLE}" }}\n')
    seed.family(aws, ["1.0.0"], name="web")
    for key, value in {"AMIBOT_CONFIG": str(config), "AMIBOT_DB": str(tmp_path / "amibot.db"),
                       "SLACK_BOT_TOKEN": "xoxb-test-1", "SLACK_SIGNING_SECRET": "secret-0123"}.items():
        monkeypatch.setenv(key, value)
    code = cli.main(["check-config", "--aws"])
    _out, err = capsys.readouterr()
    assert code == 1
    problems = [line.strip()[2:] for line in err.splitlines() if line.strip().startswith("- ")
                and "warning" not in line]
    assert problems == ["[[bakes]] api: automation patches the family's current version (SourceAmiId), and api has "
                        "none in us-east-1: bake it once with a pipeline or an instance, or promote an image of it "
                        "first"]


def test_check_config_aws_names_each_required_parameter_a_custom_runbook_is_not_given(aws, monkeypatch, tmp_path,
                                                                                      capsys):
    from bot import cli

    document = {"schemaVersion": "0.3", "description": "patch an AMI", "parameters": {
        "SourceAmiId": {"type": "String"}, "SubnetId": {"type": "String"}, "Role": {"type": "String"},
        "InstanceType": {"type": "String", "default": "t3.micro"}},
        "mainSteps": [{"name": "wait", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}}]}
    aws.client("ssm", "us-east-1").create_document(Content=json.dumps(document), Name="Team-PatchAmi",
                                                   DocumentType="Automation", DocumentFormat="JSON")
    config = tmp_path / "amibot.toml"
    config.write_text('[aws]\nregions = ["us-east-1"]\n\n[[bakes]]\nfamily = "web"\nautomation = "Team-PatchAmi"\n'
                      'parameters = { Role = "r" }\n\n'
                      '[[bakes]]\nfamily = "api"\nautomation = "Team-Missing"\n')
    seed.family(aws, ["1.0.0"], name="web")
    seed.family(aws, ["1.0.0"], name="api")
    for key, value in {"AMIBOT_CONFIG": str(config), "AMIBOT_DB": str(tmp_path / "amibot.db"),
                       "SLACK_BOT_TOKEN": "xoxb-test-1", "SLACK_SIGNING_SECRET": "secret-0123"}.items():
        monkeypatch.setenv(key, value)
    code = cli.main(["check-config", "--aws"])
    _out, err = capsys.readouterr()
    assert code == 1
    problems = [line.strip()[2:] for line in err.splitlines() if line.strip().startswith("- ")
                and "warning" not in line]
    assert "[[bakes]] web: the runbook Team-PatchAmi requires the parameter SubnetId, which `parameters` does not " \
           "give" in problems
    assert not [p for p in problems if "InstanceType" in p or "SourceAmiId" in p or "parameter Role" in p]
    assert [p for p in problems if p.startswith("[[bakes]] api: the runbook Team-Missing's required parameters "
                                                "could not be checked: ")]
