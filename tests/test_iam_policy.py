"""The IAM policy in the repo is exactly what the code declares, and the code declares every AWS call it makes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import boto3
from botocore import xform_name

from bot.aws.clients import PERMISSIONS
from bot.iam_policy import iam_policy

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"ec2": "ec2", "autoscaling": "autoscaling", "ssm": "ssm", "sts": "sts", "rbin": "rbin", "s3": "s3",
            "imagebuilder": "imagebuilder", "organizations": "organizations"}
# Operations whose IAM actions are not (only) named after them: S3's listings are authorised by s3:ListBucket, its
# listing of versions by s3:ListBucketVersions, and reading one version of an object by s3:GetObjectVersion.
ACTION_OF = {"s3:ListObjectsV2": {"s3:ListBucket"}, "s3:ListObjects": {"s3:ListBucket"},
             "s3:ListObjectVersions": {"s3:ListBucketVersions"},
             "s3:GetObject": {"s3:GetObject", "s3:GetObjectVersion"}}


def operations() -> dict[str, set[str]]:
    """python operation name -> {"ec2:DescribeImages", …} across the services the bot uses."""
    found: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        client = boto3.client(service, region_name="us-east-1")
        for name in client.meta.service_model.operation_names:
            action = f"{prefix}:{name}"
            found.setdefault(xform_name(name), set()).update(ACTION_OF.get(action, {action}))
        for waiter in client.waiter_names:
            operation = client.get_waiter(waiter).config.operation
            found.setdefault(f"waiter:{waiter}", set()).add(f"{prefix}:{operation}")
    return found


# Method names botocore's own objects have that are also operation names: botocore's Session.get_component (the
# shared model loader, bot.aws.clients.assumed_session) is not Image Builder's GetComponent.
NOT_AWS_CALLS = {"get_component"}


def calls_in_code() -> dict[str, list[str]]:
    """Every boto3 operation the code under bot/ invokes: client.op(...), call(c, "op"), paginate(c, "op"),
    get_paginator("op"), get_waiter("name")."""
    known = operations()
    used: dict[str, list[str]] = {}
    for path in sorted((ROOT / "bot").rglob("*.py")):
        if "devtools" in path.relative_to(ROOT).parts:  # the demo's fake world in moto, not calls the bot makes
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            names = []
            if isinstance(node.func, ast.Attribute) and node.func.attr in known and node.func.attr not in NOT_AWS_CALLS:
                names.append(node.func.attr)
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if function in ("call", "paginate", "get_paginator"):
                names += [s for s in strings if s in known]
            if function == "get_waiter":
                names += [f"waiter:{s}" for s in strings if f"waiter:{s}" in known]
            for name in names:
                used.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return used


def test_every_aws_call_in_the_code_is_declared():
    known = operations()
    missing = {name: where for name, where in calls_in_code().items() if not (known[name] & set(PERMISSIONS))}
    assert not missing, f"AWS calls without a @requires declaration: {missing}"


def test_every_declared_action_is_a_real_action():
    known = set().union(*operations().values())
    assert set(PERMISSIONS) <= known, set(PERMISSIONS) - known


def test_committed_policy_matches_the_code():
    committed = json.loads((ROOT / "iam-policy.json").read_text())
    assert committed == iam_policy(), "regenerate it: amibot iam-policy > iam-policy.json"


def test_the_member_policy_is_the_bots_without_what_only_its_own_account_needs():
    from bot.iam_policy import member_policy

    own = {action for statement in iam_policy()["Statement"] for action in statement["Action"]}
    member = {action for statement in member_policy()["Statement"] for action in statement["Action"]}
    assert {"sts:AssumeRole", "organizations:ListAccounts", "s3:PutObject"} <= own
    assert member == {action for action in own
                      if action != "sts:AssumeRole" and not action.startswith(("organizations:", "s3:"))}
    assert {"ec2:DescribeImages", "ec2:DeregisterImage", "autoscaling:DescribeAutoScalingGroups",
            "ssm:GetParameters", "sts:GetCallerIdentity"} <= member


def _cli(*args: str, env: dict | None = None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "bot.cli", "iam-policy", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "AMIBOT_CONFIG": "/nonexistent.toml", **(env or {})},
                          timeout=60)


def test_iam_policy_prints_the_trust_and_member_policies(tmp_path):
    from bot.iam_policy import member_policy

    assert json.loads(_cli().stdout) == json.loads((ROOT / "iam-policy.json").read_text())
    assert json.loads(_cli("--member").stdout) == member_policy()
    trust = json.loads(_cli("--trust", "123456789012").stdout)["Statement"]
    assert trust == [{"Sid": "AmibotAssume", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                      "Action": "sts:AssumeRole"}]
    role = "arn:aws:iam::123456789012:role/amibot-bot"
    trust = json.loads(_cli("--trust", role, "--external-id", "s3cret-ext").stdout)["Statement"][0]
    assert trust["Principal"] == {"AWS": role}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "s3cret-ext"}}
    config = tmp_path / "amibot.toml"
    config.write_text('[[accounts]]\nid = "111111111111"\nname = "prod"\n'
                      'role_arn = "arn:aws:iam::111111111111:role/amibot"\nexternal_id = "from-config"\n')
    trust = json.loads(_cli("--trust", role, "--account", "prod", env={"AMIBOT_CONFIG": str(config)}).stdout)
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"sts:ExternalId": "from-config"}}


def test_iam_policy_refuses_a_bad_principal_in_one_line(tmp_path):
    result = _cli("--trust", "not-an-account")
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().startswith("amibot: --trust expects the bot's 12-digit account id")
    assert len(result.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    unknown = _cli("--trust", "123456789012", "--account", "nosuch", env={"AMIBOT_CONFIG": str(empty)})
    assert unknown.returncode != 0 and "--account nosuch: not in [[accounts]]" in unknown.stderr


def modules_declaring_permissions() -> set[str]:
    """Every module under bot/ and handlers/ with a function decorated ``@requires(…)``."""
    found = set()
    for path in sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            decorators = getattr(node, "decorator_list", [])
            if any(isinstance(d, ast.Call) and getattr(d.func, "id", getattr(d.func, "attr", "")) == "requires"
                   for d in decorators):
                found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
                break
    return found


def test_the_policy_module_lists_every_module_that_declares_permissions():
    from bot.iam_policy import DECLARING

    assert modules_declaring_permissions() == {module.__name__ for module in DECLARING}


def test_the_policy_is_complete_in_a_fresh_interpreter_without_importing_the_app():
    import subprocess
    import sys

    code = ("import json, sys; from bot.iam_policy import iam_policy; print(json.dumps(iam_policy()));"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('bot.', 'handlers')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         check=True).stdout.splitlines()
    assert json.loads(out[0]) == json.loads((ROOT / "iam-policy.json").read_text())
    loaded = json.loads(out[1])
    assert not [name for name in loaded if name.startswith(("handlers", "bot.wiring", "bot.app"))]


def test_rollouts_actions_are_in_the_policy_and_the_member_policy():
    from bot.iam_policy import iam_policy, member_policy

    wanted = {"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeInstanceRefreshes",
              "autoscaling:StartInstanceRefresh", "autoscaling:CancelInstanceRefresh",
              "autoscaling:RollbackInstanceRefresh", "ec2:CreateLaunchTemplateVersion"}
    assert wanted <= set(iam_policy()["Statement"][0]["Action"])
    assert wanted <= set(member_policy()["Statement"][0]["Action"])
