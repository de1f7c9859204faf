"""The IAM policies amibot needs, generated from the code's ``@requires`` declarations (bot/aws/clients.py).

``DECLARING`` names every module that declares permissions, so the policy is complete without importing the
whole application first; tests/test_iam_policy.py fails when a module with a ``@requires`` is missing here.
`amibot iam-policy` prints these; the committed iam-policy.json is ``iam_policy()``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from bot.aws import clients
from bot.aws.clients import PERMISSIONS
from bot.durable import anchors
from bot.services import (
    allowed,
    bake,
    base_images,
    copy,
    create,
    deregister,
    digest,
    drift,
    findings,
    images,
    inventory,
    launch,
    organization,
    recycle_bin,
    references,
    share,
    snapshots,
    stages,
    usage_reports,
    versions,
)

# Imported above, so their @requires have run: listed here so that no import looks unused and the list is visible.
DECLARING: tuple[ModuleType, ...] = (
    clients, anchors, allowed, bake, base_images, copy, create, deregister, digest, drift, findings, images, inventory,
    launch, organization, recycle_bin, references, share, snapshots, stages, usage_reports, versions,
)

# What only the bot's own account needs: assuming the member roles, listing the organisation, the audit anchors.
HOME_ONLY_ACTIONS = ("sts:AssumeRole", "organizations:", "s3:")


def iam_policy(policy: Any = None) -> dict[str, Any]:
    """The least-privilege policy document for everything the bot's code declares; with a policy whose [[bakes]]
    run runbooks, also iam:PassRole of exactly the roles they hand to AWS (AutomationAssumeRole, the instance
    profile's role), to SSM and EC2 only."""
    statements = [{"Sid": "Amibot", "Effect": "Allow", "Action": sorted(PERMISSIONS), "Resource": "*"}]
    passed = pass_role_statement(policy)
    if passed:
        statements.append(passed)
    return {"Version": "2012-10-17", "Statement": statements}


def pass_role_statement(policy: Any) -> dict[str, Any] | None:
    """iam:PassRole limited to the configured bakes' roles; None when no bake passes one."""
    roles = sorted({role for bake in getattr(policy, "bakes", None) or [] for role in bake.passed_roles()})
    if not roles:
        return None
    return {"Sid": "AmibotBakePassRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": roles,
            "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ssm.amazonaws.com"]}}}


def member_policy() -> dict[str, Any]:
    """The policy for the role amibot assumes in each member account: every action the code declares except
    those only its own account needs (sts:AssumeRole, organizations:*, the S3 audit anchors)."""
    actions = [action for action in iam_policy()["Statement"][0]["Action"] if not action.startswith(HOME_ONLY_ACTIONS)]
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": "AmibotMember", "Effect": "Allow", "Action": actions, "Resource": "*"}]}


def trust_policy(principal: str, external_id: str | None = None) -> dict[str, Any]:
    """The trust policy of a member account's role: the bot's account (a 12-digit id: any role there that its
    own IAM allows to assume it) or the bot's role ARN may assume it, with the external id when one is set."""
    arn = f"arn:aws:iam::{principal}:root" if principal.isdigit() else principal
    statement: dict[str, Any] = {"Sid": "AmibotAssume", "Effect": "Allow", "Principal": {"AWS": arn},
                                 "Action": "sts:AssumeRole"}
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}
