"""Configuration: the policy schema, the environment, and `amibot check-config`."""

from __future__ import annotations

import pytest

from bot.core.config import Settings, load_policy, mask, parse_policy
from bot.core.errors import ConfigError
from tests.support.processes import run_cli


def test_empty_policy_is_all_defaults():
    policy = parse_policy({})
    assert policy.aws.regions == [] and policy.approvals.required == 1
    assert policy.launch.max_count == 5 and policy.digest.at == "09:00"
    assert policy.digest.snapshot_price_per_gb_month == 0.05 and policy.sharing.allow_public is False


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.toml")


def test_empty_file_works(tmp_path):
    path = tmp_path / "amibot.toml"
    path.write_text("")
    assert load_policy(path).launch.default_instance_type == "t3.micro"


def test_every_problem_is_named(tmp_path):
    with pytest.raises(ConfigError) as raised:
        parse_policy({"aws": {"regions": "eu-west-1"}, "approvals": {"required": 0, "approverz": []},
                      "launch": {"max_count": "five"}, "digest": {"at": "25:00", "timezone": "Mars/Olympus"},
                      "sharing": {"allowed_accounts": ["1234"]}, "access": {"operators": ["bob"]}, "extra": {}})
    problems = raised.value.problems
    assert "[aws].regions: expected a list of strings, got str 'eu-west-1'" in problems
    assert "[approvals].required: expected a number >= 1, got 0" in problems
    assert any(p.startswith("unknown key [approvals].approverz") for p in problems)
    assert "[launch].max_count: expected a whole number, got str 'five'" in problems
    assert "[digest].at: expected a time 'HH:MM', got '25:00'" in problems
    assert any("[digest].timezone: expected an IANA time zone" in p for p in problems)
    assert "[sharing].allowed_accounts: expected a 12-digit AWS account id, got '1234'" in problems
    assert any(p.startswith("[access].operators: expected a Slack user or group id") for p in problems)
    assert any(p.startswith("unknown section [extra]") for p in problems)


def test_bad_toml_says_where(tmp_path):
    path = tmp_path / "amibot.toml"
    path.write_text("[aws\nregions = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(path)


def test_full_policy_parses(tmp_path):
    path = tmp_path / "amibot.toml"
    path.write_text("""
[aws]
regions = ["eu-west-1", "us-east-1"]
[access]
operators = ["U0123ABC", "S0PLATFORM"]
channels = ["C0OPS"]
[approvals]
approvers = ["U0LEAD"]
required = 2
expire_after_hours = 48
remind_after_hours = 12
[sharing]
allowed_accounts = ["210987654321"]
allow_public = false
[launch]
default_instance_type = "t3.small"
allowed_instance_types = ["t3.*", "m7g.large"]
max_count = 3
subnet_id = "subnet-0123456789abcdef0"
security_group_ids = ["sg-0123456789abcdef0"]
key_name = "ops"
[digest]
channel = "C0DIGEST"
at = "08:30"
timezone = "Europe/Berlin"
stale_after_days = 60
keep_latest = 3
family_tag = "family"
snapshot_price_per_gb_month = 0.055
""")
    policy = load_policy(path)
    assert policy.approvals.required == 2 and policy.approvals.expire_after_hours == 48.0
    assert policy.launch.allowed_instance_types == ["t3.*", "m7g.large"]
    assert policy.digest.timezone == "Europe/Berlin"


def test_secrets_are_masked():
    assert mask("xoxb-1234567890-abcdefghijkl") == "xoxb-****ijkl"
    assert mask("short") == "****"
    assert mask(None) == "(not set)"
    settings = Settings(bot_token="xoxb-1234567890-abcdefghijkl", signing_secret="0123456789abcdef0123")
    assert "abcdefghijkl" not in repr(settings) and "0123456789abcdef0123" not in repr(settings)


def test_settings_problems_per_mode():
    assert Settings(bot_token="xoxb-1", signing_secret="s").problems("http") == []
    assert any("SLACK_APP_TOKEN" in p for p in Settings(bot_token="xoxb-1").problems("socket"))
    assert any("start with 'xoxb-'" in p for p in Settings(bot_token="xoxp-1", signing_secret="s").problems("http"))
    assert any("SLACK_SIGNING_SECRET" in p for p in Settings(bot_token="xoxb-1").problems("http"))


def test_check_config_prints_masked_settings_and_ok(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "xoxb-1111-2222-secretsecret",
           "SLACK_SIGNING_SECRET": "abcdef0123456789abcdef", "AMIBOT_DB": str(tmp_path / "a.db")}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "xoxb-****cret" in result.stdout and "secretsecret" not in result.stdout
    assert "abcdef0123456789abcdef" not in result.stdout
    assert "[launch].max_count = 5" in result.stdout and "configuration OK" in result.stdout


def test_check_config_fails_with_one_line_per_problem(tmp_path):
    config = tmp_path / "amibot.toml"
    config.write_text('[launch]\nmax_count = "lots"\nbogus = 1\n')
    env = {"PATH": "/usr/bin:/bin", "AMIBOT_CONFIG": str(config)}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip().startswith("- ")]
    assert len(lines) == 4
    assert any("SLACK_BOT_TOKEN is not set" in line for line in lines)
    assert any("[launch].max_count: expected a whole number" in line for line in lines)
    assert any("unknown key [launch].bogus" in line for line in lines)


def test_the_shipped_example_policy_is_valid():
    from pathlib import Path

    policy = load_policy(Path(__file__).resolve().parents[1] / "amibot.example.toml")
    assert policy.access.operators == ["U012ABCDEF", "S0PLATFORM"] and policy.digest.timezone == "Europe/Berlin"


def test_rollout_defaults_are_the_issues_contract():
    rollout = parse_policy({}).rollout
    assert rollout.min_healthy_percentage == 90 and rollout.instance_warmup_seconds == 300
    assert rollout.checkpoints == [] and rollout.checkpoint_delay_seconds == 600
    assert rollout.max_parallel_groups == 5 and rollout.alarms == [] and rollout.skip_groups == []


def test_a_valid_rollout_section_parses():
    rollout = parse_policy({"rollout": {"min_healthy_percentage": 100, "checkpoints": [20, 50, 100],
                                        "max_parallel_groups": 1, "alarms": ["web-5xx"],
                                        "skip_groups": ["legacy-*"]}}).rollout
    assert rollout.checkpoints == [20, 50, 100] and rollout.skip_groups == ["legacy-*"]


def test_rollout_problems_are_each_named():
    with pytest.raises(ConfigError) as raised:
        parse_policy({"rollout": {"min_healthy_percentage": 101, "instance_warmup_seconds": -1,
                                  "checkpoints": [50, 20, 0], "checkpoint_delay_seconds": -5,
                                  "max_parallel_groups": 0, "alarms": [""], "skip_groups": [" "]}})
    problems = raised.value.problems
    assert "[rollout].min_healthy_percentage: expected a percentage 0–100, got 101" in problems
    assert "[rollout].instance_warmup_seconds: expected a number >= 0, got -1" in problems
    assert "[rollout].checkpoints: expected a percentage 1–100, got 0" in problems
    assert "[rollout].checkpoints: expected percentages in ascending order, got [50, 20, 0]" in problems
    assert "[rollout].checkpoint_delay_seconds: expected a number >= 0, got -5" in problems
    assert "[rollout].max_parallel_groups: expected a number >= 1, got 0" in problems
    assert any(p.startswith("[rollout].alarms: expected a CloudWatch alarm name") for p in problems)
    assert "[rollout].skip_groups: expected a non-empty glob such as 't3.*'" not in problems  # says what it globs
    assert any(p.startswith("[rollout].skip_groups: expected a non-empty glob") for p in problems)


def test_rollout_checkpoints_must_be_whole_numbers():
    with pytest.raises(ConfigError) as raised:
        parse_policy({"rollout": {"checkpoints": [20, "50"]}})
    assert "[rollout].checkpoints: expected a list of whole numbers, got list [20, '50']" in raised.value.problems
