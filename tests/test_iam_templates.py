"""Least privilege from the code: the resources amibot knows are narrowed (its member roles, the anchor bucket,
its SSM parameters), filled in from the policy file when there is one, and both roles come as CloudFormation
templates (the member role ready for a service-managed StackSet), committed under deploy/ and checked by cfn-lint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bot.core.config import parse_policy
from bot.iam_policy import cloudformation, iam_policy, member_policy

ROOT = Path(__file__).resolve().parents[1]
BOT_TEMPLATE, MEMBER_TEMPLATE = ROOT / "deploy" / "amibot-role.yaml", ROOT / "deploy" / "amibot-member-role.yaml"


def resources_of(document: dict, action: str) -> set[str]:
    """Every resource a policy document grants `action` on (empty: not granted)."""
    found: set[str] = set()
    for statement in document["Statement"]:
        if action in statement["Action"]:
            resource = statement["Resource"]
            found.update([resource] if isinstance(resource, str) else resource)
    return found


def _cli(*args: str, config: str = "/nonexistent.toml") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", "iam-policy", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "AMIBOT_CONFIG": config}, timeout=60)


def test_the_generic_policy_narrows_what_amibot_knows_and_keeps_the_describes_on_every_resource():
    policy = iam_policy()
    assert resources_of(policy, "sts:AssumeRole") == {"arn:aws:iam::*:role/amibot"}
    assert resources_of(policy, "ssm:PutParameter") == {"arn:aws:ssm:*:*:parameter/amibot/*"}
    assert resources_of(policy, "s3:PutObject") == {"arn:aws:s3:::ANCHOR-BUCKET/amibot/anchors/*",
                                                    "arn:aws:s3:::BACKUP-BUCKET/*"}
    assert resources_of(policy, "s3:ListBucketVersions") == {"arn:aws:s3:::ANCHOR-BUCKET"}
    for action in ("ec2:DescribeImages", "ec2:DeregisterImage", "organizations:ListAccounts"):
        assert resources_of(policy, action) == {"*"}
    assert not resources_of(policy, "iam:PassRole")  # amibot passes no role to anything
    member = member_policy()
    assert resources_of(member, "ssm:PutParameter") == {"arn:aws:ssm:*:*:parameter/amibot/*"}
    assert not resources_of(member, "sts:AssumeRole") and not resources_of(member, "s3:PutObject")


def test_a_policy_file_fills_in_the_bucket_and_every_role_amibot_assumes():
    policy = parse_policy({
        "audit": {"anchor_bucket": "acme-amibot-anchors"},
        "organization": {"enabled": True, "role_name": "amibot-ro",
                         "role_arn": "arn:aws:iam::444444444444:role/org-reader"},
        "accounts": [{"id": "111111111111", "name": "prod", "role_arn": "arn:aws:iam::111111111111:role/special"}]})
    document = iam_policy(policy)
    assert resources_of(document, "sts:AssumeRole") == {
        "arn:aws:iam::*:role/amibot-ro", "arn:aws:iam::111111111111:role/special",
        "arn:aws:iam::444444444444:role/org-reader"}
    assert resources_of(document, "s3:PutObject") == {"arn:aws:s3:::acme-amibot-anchors/amibot/anchors/*"}
    assert resources_of(document, "s3:GetObjectVersion") == {"arn:aws:s3:::acme-amibot-anchors/amibot/anchors/*"}
    # an s3:// daily backup: PutObject on its bucket too; a backup to a file needs no S3
    backed_up = iam_policy(parse_policy({"backup": {"destination": "s3://acme-backups/amibot/{date}.db"}}))
    assert resources_of(backed_up, "s3:PutObject") == {"arn:aws:s3:::acme-backups/*"}
    assert not resources_of(iam_policy(parse_policy({"backup": {"destination": "/var/backups/amibot.db"}})),
                            "s3:PutObject")
    # one account, no anchors: no role to assume and no bucket, so neither is granted
    alone = iam_policy(parse_policy({}))
    assert not resources_of(alone, "sts:AssumeRole") and not resources_of(alone, "s3:PutObject")
    assert resources_of(alone, "ec2:DescribeImages") == {"*"}
    unused = iam_policy(parse_policy({"organization": {"role_arn": "arn:aws:iam::444444444444:role/org-reader"}}))
    assert not resources_of(unused, "sts:AssumeRole")  # no organisation enabled: its role is never assumed


def test_cloudformation_is_not_a_trust_policy():
    result = _cli("--trust", "123456789012", "--cloudformation")
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip() == "amibot: --cloudformation goes with no option or --member, not --trust"


def test_iam_policy_reads_the_policy_file(tmp_path):
    config = tmp_path / "amibot.toml"
    config.write_text('[audit]\nanchor_bucket = "acme-amibot-anchors"\n[organization]\nenabled = true\n')
    result = _cli(config=str(config))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert resources_of(printed, "s3:PutObject") == {"arn:aws:s3:::acme-amibot-anchors/amibot/anchors/*"}
    assert resources_of(printed, "sts:AssumeRole") == {"arn:aws:iam::*:role/amibot"}


def test_the_committed_templates_are_what_the_code_generates():
    assert BOT_TEMPLATE.read_text() == _cli("--cloudformation").stdout == cloudformation(), \
        "regenerate it: amibot iam-policy --cloudformation > deploy/amibot-role.yaml"
    assert MEMBER_TEMPLATE.read_text() == _cli("--cloudformation", "--member").stdout == cloudformation(member=True), \
        "regenerate it: amibot iam-policy --cloudformation --member > deploy/amibot-member-role.yaml"


def test_the_templates_pass_cfn_lint():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    # W3037 (an IAM action cfn-lint's own list does not know): its list lags botocore's models (ec2:GetImageFindings);
    # that every action is real is checked against botocore by test_iam_policy.py
    result = subprocess.run([str(cfn_lint), "--ignore-checks", "W3037", "--", str(BOT_TEMPLATE), str(MEMBER_TEMPLATE)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_member_template_suits_a_service_managed_stack_set():
    from cfnlint.decode import decode_str

    text = MEMBER_TEMPLATE.read_text()
    template, problems = decode_str(text)
    assert not problems
    assert {"BotRoleArn", "ExternalId", "RoleName"} <= set(template["Parameters"])
    assert template["Parameters"]["RoleName"]["Default"] == "amibot"
    assert template["Parameters"]["ExternalId"]["Default"] == ""
    assert "HasExternalId" in template["Conditions"]
    role = template["Resources"]["AmibotMemberRole"]["Properties"]
    assert role["RoleName"] == {"Ref": "RoleName"}  # the same name in every account of the organisation
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"AWS": {"Ref": "BotRoleArn"}}
    assert not re.search(r"\d{12}", text)  # nothing account-specific
    actions = {action for statement in role["Policies"][0]["PolicyDocument"]["Statement"]
               for action in statement["Action"]}
    assert actions == {action for statement in member_policy()["Statement"] for action in statement["Action"]}
    assert "# " in text and "resource-level" in text  # what stays on every resource says why


def test_the_member_templates_role_name_comes_from_the_policy_file(tmp_path):
    config = tmp_path / "amibot.toml"
    config.write_text('[organization]\nenabled = true\nrole_name = "amibot-member"\n')
    assert '"amibot-member"' in _cli("--cloudformation", "--member", config=str(config)).stdout
