"""The IAM policy in the repo is exactly what the code declares, and the code declares every AWS call it makes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import boto3
from botocore import xform_name

from bot.aws import PERMISSIONS, iam_policy

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"ec2": "ec2", "autoscaling": "autoscaling", "ssm": "ssm", "sts": "sts", "rbin": "rbin", "s3": "s3",
            "imagebuilder": "imagebuilder"}
# Operations whose IAM action is not named after them (S3's listings are authorised by s3:ListBucket).
ACTION_OF = {"s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket"}


def operations() -> dict[str, set[str]]:
    """python operation name -> {"ec2:DescribeImages", …} across the services the bot uses."""
    found: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        client = boto3.client(service, region_name="us-east-1")
        for name in client.meta.service_model.operation_names:
            action = f"{prefix}:{name}"
            found.setdefault(xform_name(name), set()).add(ACTION_OF.get(action, action))
        for waiter in client.waiter_names:
            operation = client.get_waiter(waiter).config.operation
            found.setdefault(f"waiter:{waiter}", set()).add(f"{prefix}:{operation}")
    return found


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
            if isinstance(node.func, ast.Attribute) and node.func.attr in known:
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
    from bot.services import load_all

    load_all()  # every @requires

    known = operations()
    missing = {name: where for name, where in calls_in_code().items() if not (known[name] & set(PERMISSIONS))}
    assert not missing, f"AWS calls without a @requires declaration: {missing}"


def test_every_declared_action_is_a_real_action():
    known = set().union(*operations().values())
    assert set(PERMISSIONS) <= known, set(PERMISSIONS) - known


def test_committed_policy_matches_the_code():
    committed = json.loads((ROOT / "iam-policy.json").read_text())
    assert committed == iam_policy(), "regenerate it: amibot iam-policy > iam-policy.json"
