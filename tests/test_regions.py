"""Regions are checked in one place against botocore's region data: `--region`, copy's target and
[aws].regions; a typo gets "eu-wset-1 is not an AWS region — did you mean eu-west-1?", never a crash."""

from __future__ import annotations

import pytest

from bot.core import regions
from bot.core.config import parse_policy, policy_warnings
from bot.core.errors import ConfigError
from tests.support import seed
from tests.support.processes import run_cli

TYPO = "eu-wset-1 is not an AWS region — did you mean eu-west-1?"


def test_every_partition_and_its_opt_in_regions_are_known():
    assert {"aws", "aws-cn", "aws-us-gov"} <= set(regions.partitions())
    for region in ("us-east-1", "eu-west-1", "af-south-1", "me-central-1", "ap-east-1", "cn-north-1",
                   "us-gov-west-1"):
        assert regions.is_region(region), region
    assert regions.partition_of("cn-north-1") == "aws-cn" and regions.partition_of("eu-west-1") == "aws"
    assert regions.problem("eu-wset-1") == TYPO
    assert regions.problem("olympus-mons-9") == "olympus-mons-9 is not an AWS region (e.g. eu-west-1)"
    assert regions.problem("cn-north-1", "aws").startswith("cn-north-1 is in the aws-cn partition")


def test_list_with_a_mistyped_region_answers_with_the_suggestion(harness):
    response = harness.command("list --region eu-wset-1")
    assert response.status == 200
    reply = harness.last_reply().text
    assert TYPO in reply and "Usage:" in reply


def test_any_region_flag_is_checked_the_same_way(harness):
    harness.command("versions web --region us-eats-1")
    assert "us-eats-1 is not an AWS region — did you mean us-east-1?" in harness.last_reply().text


def test_copy_to_a_mistyped_region_answers_with_the_suggestion(harness, aws):
    image_id = seed.image(aws, "copy-me")
    harness.command(f"copy {image_id} eu-wset-1")
    assert TYPO in harness.last_reply().text
    harness.command(f"copy {image_id} eu-west-2 --source-region eu-wset-1")
    assert TYPO in harness.last_reply().text
    assert aws.client("ec2", "eu-west-1").describe_images(Owners=["self"])["Images"] == []


def test_copy_never_crosses_a_partition(harness, aws):
    image_id = seed.image(aws, "stay-home")
    harness.command(f"copy {image_id} cn-north-1")
    assert "cn-north-1 is in the aws-cn partition" in harness.last_reply().text


def test_a_malformed_configured_region_is_an_error_and_an_unknown_one_a_warning():
    with pytest.raises(ConfigError) as raised:
        parse_policy({"aws": {"regions": ["eu-west-1", "Europe"]}})
    assert raised.value.problems == ["[aws].regions: expected an AWS region such as 'eu-west-1', got 'Europe'"]
    policy = parse_policy({"aws": {"regions": ["eu-west-1", "eu-wset-1"]},
                           "access": {"operators": ["U0OPS"]}, "approvals": {"approvers": ["U0LEAD"]}})
    assert policy_warnings(policy) == [f"[aws].regions: {TYPO}"]


def test_check_config_warns_about_a_region_that_does_not_exist_without_failing(tmp_path):
    config = tmp_path / "amibot.toml"
    config.write_text('[aws]\nregions = ["eu-west-1", "eu-wset-1"]\n'
                      '[access]\noperators = ["U0OPS"]\n[approvals]\napprovers = ["U0LEAD"]\n')
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "xoxb-1111-2222-secretsecret",
           "SLACK_SIGNING_SECRET": "abcdef0123456789abcdef", "AMIBOT_CONFIG": str(config),
           "AMIBOT_DB": str(tmp_path / "a.db")}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: [aws].regions: {TYPO}" in result.stderr
    assert "configuration OK" in result.stdout
