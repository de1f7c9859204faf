"""The IAM policies amibot needs, generated from the code's ``@requires`` declarations (bot/aws/clients.py).

``DECLARING`` names every module that declares permissions, so the policy is complete without importing the
whole application first; tests/test_iam_policy.py fails when a module with a ``@requires`` is missing here.
`amibot iam-policy` prints these; the committed iam-policy.json is ``iam_policy()``, and deploy/amibot-role.yaml and
deploy/amibot-member-role.yaml are ``cloudformation()`` and ``cloudformation(member=True)`` (docs/iam.md).

Least privilege: an action whose ``@requires`` names a resource pattern is granted on that resource only, filled in
from the policy file when one is given (the anchor bucket, the member roles' name, every configured role ARN) and
with a placeholder otherwise; an action whose resource is not known stays on "*" (STAR_WHY says why).
"""

from __future__ import annotations

import json
import re
import string
import textwrap
from types import ModuleType
from typing import Any

from bot.aws import clients
from bot.aws.clients import PERMISSIONS, RESOURCES
from bot.durable import anchors, backup
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
    lineage,
    organization,
    recycle_bin,
    references,
    revoke,
    rollout,
    share,
    snapshots,
    stages,
    usage_reports,
    versions,
)

# Imported above, so their @requires have run: listed here so that no import looks unused and the list is visible.
DECLARING: tuple[ModuleType, ...] = (
    clients, anchors, backup, allowed, bake, base_images, copy, create, deregister, digest, drift, findings,
    images, inventory, launch, lineage, organization, recycle_bin, references, revoke, rollout, share, snapshots,
    stages, usage_reports, versions,
)

# What only the bot's own account needs: assuming the member roles, listing the organisation, the audit anchors
# and the backups.
HOME_ONLY_ACTIONS = ("sts:AssumeRole", "organizations:", "s3:")

# Why the rest is granted on every resource (a comment in the templates).
STAR_WHY = ('Resource "*": EC2, Auto Scaling, SSM and Image Builder Describe*/List*/Get* calls and Organizations\' '
            "ListAccounts support no resource-level permissions, and the image, snapshot and instance actions act "
            "on whichever image a user asks about, in any region (amibot's approvals, operators and tags decide, "
            "not IAM); sts:GetCallerIdentity needs no permission at all.")

# The statement of each resource pattern (bot/aws/clients.py requires(resource=…)); another one gets "AmibotScopedN".
SIDS = {"{assumed_role}": "AmibotAssumeRoles", anchors.ANCHOR_BUCKET: "AmibotAnchorBucket",
        anchors.ANCHOR_OBJECTS: "AmibotAnchorObjects", versions.PARAMETERS: "AmibotParameters",
        backup.BACKUP_OBJECTS: "AmibotBackups"}
# What stands for [audit].anchor_bucket without a policy file: not a bucket name (no capitals), so it grants nothing.
BUCKET_PLACEHOLDER = "ANCHOR-BUCKET"
BACKUP_PLACEHOLDER = "BACKUP-BUCKET"  # the same for an s3:// [backup].destination
DEFAULT_ROLE_NAME = "amibot"

Value = str | dict  # a string, or a CloudFormation intrinsic ({"Fn::Sub": …}, {"Fn::If": …})


def pass_role_statement(policy: Any) -> dict[str, Any] | None:
    """iam:PassRole limited to the roles the configured [[bakes]] hand to AWS (AutomationAssumeRole, the
    instance profile's role), to SSM and EC2 only; None when no bake passes one."""
    roles = sorted({role for bake in getattr(policy, "bakes", None) or [] for role in bake.passed_roles()})
    if not roles:
        return None
    return {"Sid": "AmibotBakePassRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": roles,
            "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ssm.amazonaws.com"]}}}


def _with_pass_role(statements: list[dict[str, Any]], policy: Any, sid_prefix: str = "Amibot") -> list[dict]:
    passed = pass_role_statement(policy)
    if passed:
        statements.append({**passed, "Sid": passed["Sid"].replace("Amibot", sid_prefix, 1)})
    return statements


def _sid(template: str, number: int) -> str:
    return SIDS.get(template, f"AmibotScoped{number}")


def _fillings(policy, cfn: bool) -> dict[str, list[tuple[str, str | None]]]:
    """placeholder -> its values, each (text, the CloudFormation condition it needs or None). No value: what
    needs it is not granted (no anchor bucket configured: no S3 at all)."""
    partition = "${AWS::Partition}" if cfn else "aws"
    role_name = (policy.organization.role_name if policy is not None else DEFAULT_ROLE_NAME)
    roles: list[tuple[str, str | None]] = []
    if cfn:
        roles.append((f"arn:{partition}:iam::*:role/${{MemberRoleName}}", None))
    elif policy is None or policy.organization.enabled:
        roles.append((f"arn:{partition}:iam::*:role/{role_name}", None))
    if policy is not None:
        roles += [(account.role_arn, None) for account in policy.accounts if account.role_arn]
        if policy.organization.enabled and policy.organization.role_arn and not cfn:
            roles.append((policy.organization.role_arn, None))
    if cfn:
        roles.append(("${OrganizationRoleArn}", "HasOrganizationRole"))
        bucket = [("${AnchorBucket}", "HasAnchorBucket")]
        backups = [("${BackupBucket}", "HasBackupBucket")]
    elif policy is None:
        bucket, backups = [(BUCKET_PLACEHOLDER, None)], [(BACKUP_PLACEHOLDER, None)]
    else:
        bucket = [(policy.audit.anchor_bucket, None)] if policy.audit.anchor_bucket else []
        backups = [(_backup_bucket(policy), None)] if _backup_bucket(policy) else []
    return {"partition": [(partition, None)], "anchor_bucket": bucket, "backup_bucket": backups,
            "assumed_role": list(dict.fromkeys(roles))}


def _backup_bucket(policy) -> str | None:
    """The bucket of an s3:// [backup].destination; None for a file (or no backup): no S3 for it."""
    destination = policy.backup.destination or ""
    return backup.split_s3(destination)[0] if destination.startswith(backup.S3) else None


def _expand(template: str, fillings: dict[str, list[tuple[str, str | None]]]) -> list[tuple[str, str | None]]:
    """The resources one pattern names: every combination of its placeholders' values."""
    results: list[tuple[str, str | None]] = [("", None)]
    for literal, field, _, _ in string.Formatter().parse(template):
        options = fillings[field] if field else [("", None)]
        results = [(text + literal + value, condition or own) for text, condition in results
                   for value, own in options]
    return results


def _statements(fillings, cfn: bool, keep=lambda action: True) -> list[dict[str, Any]]:
    """The policy's statements: the actions on every resource first, then one statement per resource pattern."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for action in sorted(PERMISSIONS):
        if keep(action):
            declared = RESOURCES.get(action, {None})
            key = ("*",) if None in declared else tuple(sorted(declared))
            groups.setdefault(key, []).append(action)
    statements: list[dict[str, Any]] = []
    star = groups.pop(("*",), [])
    if star:
        statements.append({**({"# why": STAR_WHY} if cfn else {}), "Sid": "Amibot", "Effect": "Allow",
                           "Action": star, "Resource": "*"})
    for number, (templates, actions) in enumerate(groups.items(), start=1):
        resources = list(dict.fromkeys(item for template in templates for item in _expand(template, fillings)))
        if not resources:
            continue  # nothing it could act on: not granted
        statement: dict[str, Any] = {"Sid": _sid(templates[0], number), "Effect": "Allow", "Action": actions}
        conditions = {condition for _, condition in resources}
        if cfn and len(conditions) == 1 and None not in conditions:  # all or nothing: the whole statement
            statement["Resource"] = [_sub(text) for text, _ in resources]
            statements.append({"Fn::If": [conditions.pop(), statement, {"Ref": "AWS::NoValue"}]})
            continue
        statement["Resource"] = [_sub(text) if condition is None else
                                 {"Fn::If": [condition, _sub(text), {"Ref": "AWS::NoValue"}]}
                                 for text, condition in resources] if cfn else [text for text, _ in resources]
        statements.append(statement)
    return statements


def _sub(text: str) -> Value:
    whole = re.fullmatch(r"\$\{(\w+)\}", text)  # a parameter alone: a Ref
    return {"Ref": whole[1]} if whole else {"Fn::Sub": text} if "${" in text else text


def _home_only(action: str) -> bool:
    return action.startswith(HOME_ONLY_ACTIONS)


def iam_policy(policy=None) -> dict[str, Any]:
    """The least-privilege policy document of the bot's own role, for everything the code declares. With a
    policy file (bot.core.config.Policy): its anchor bucket and the roles it assumes; without: the generic one
    (the member roles' default name, a placeholder bucket)."""
    return {"Version": "2012-10-17",
            "Statement": _with_pass_role(_statements(_fillings(policy, cfn=False), cfn=False), policy)}


def member_policy(policy=None) -> dict[str, Any]:
    """The policy for the role amibot assumes in each member account: every action the code declares except
    those only its own account needs (sts:AssumeRole, organizations:*, the S3 audit anchors)."""
    statements = _statements(_fillings(policy, cfn=False), cfn=False, keep=lambda action: not _home_only(action))
    for statement in statements:
        statement["Sid"] = statement["Sid"].replace("Amibot", "AmibotMember", 1)
    return {"Version": "2012-10-17", "Statement": _with_pass_role(statements, policy, "AmibotMember")}


def trust_policy(principal: str, external_id: str | None = None) -> dict[str, Any]:
    """The trust policy of a member account's role: the bot's account (a 12-digit id: any role there that its
    own IAM allows to assume it) or the bot's role ARN may assume it, with the external id when one is set."""
    arn = f"arn:aws:iam::{principal}:root" if principal.isdigit() else principal
    statement: dict[str, Any] = {"Sid": "AmibotAssume", "Effect": "Allow", "Principal": {"AWS": arn},
                                 "Action": "sts:AssumeRole"}
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


# --- CloudFormation ----------------------------------------------------------------------------------------

def _parameter(description: str, default: str | None = None, **more: Any) -> dict[str, Any]:
    return {"Type": "String", **({"Default": default} if default is not None else {}), **more,
            "Description": description}


def _not_empty(name: str) -> dict[str, Any]:
    return {"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]}


def bot_template(policy=None) -> dict[str, Any]:
    """The bot's own role (and, on EC2, its instance profile) as a CloudFormation template."""
    role_name = policy.organization.role_name if policy is not None else DEFAULT_ROLE_NAME
    bucket = (policy.audit.anchor_bucket or "") if policy is not None else ""
    backup_bucket = (_backup_bucket(policy) or "") if policy is not None else ""
    organization_role = (policy.organization.role_arn or "") if policy is not None else ""
    fillings = _fillings(policy, cfn=True)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "amibot: the bot's own IAM role, least privilege, generated from the code's @requires "
                       "(amibot iam-policy --cloudformation)",
        "Parameters": {
            "BotRoleName": _parameter("name of the bot's role", "amibot-bot"),
            "PrincipalService": _parameter("the AWS service the bot runs on, which assumes this role",
                                           "ec2.amazonaws.com", AllowedValues=[
                                               "ec2.amazonaws.com", "ecs-tasks.amazonaws.com",
                                               "lambda.amazonaws.com"]),
            "MemberRoleName": _parameter("[organization].role_name: the role the bot assumes in each member "
                                         "account (deploy/amibot-member-role.yaml)", role_name),
            "AnchorBucket": _parameter("[audit].anchor_bucket, where audit anchors are written; empty: none",
                                       bucket),
            "BackupBucket": _parameter("the bucket of an s3:// [backup].destination, where the daily backup "
                                       "goes; empty: none (backups to a file)", backup_bucket),
            "OrganizationRoleArn": _parameter("[organization].role_arn, assumed to list the organisation when "
                                              "the bot runs outside its management account and delegated "
                                              "administrator; empty: none", organization_role),
        },
        "Conditions": {"HasAnchorBucket": _not_empty("AnchorBucket"), "HasBackupBucket": _not_empty("BackupBucket"),
                       "HasOrganizationRole": _not_empty("OrganizationRoleArn"),
                       "OnEc2": {"Fn::Equals": [{"Ref": "PrincipalService"}, "ec2.amazonaws.com"]}},
        "Resources": {
            "AmibotRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": {"Ref": "BotRoleName"},
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": [{"Ref": "PrincipalService"}]},
                    "Action": "sts:AssumeRole"}]},
                "Policies": [{"PolicyName": "amibot", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": _with_pass_role(_statements(fillings, cfn=True), policy)}}]}},
            "AmibotInstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Condition": "OnEc2", "Properties": {
                "InstanceProfileName": {"Ref": "BotRoleName"}, "Roles": [{"Ref": "AmibotRole"}]}},
        },
        "Outputs": {"BotRoleArn": {"Description": "the BotRoleArn parameter of the member roles' StackSet",
                                   "Value": {"Fn::GetAtt": ["AmibotRole", "Arn"]}}},
    }


def member_template(policy=None) -> dict[str, Any]:
    """The role amibot assumes in each member account, for a service-managed StackSet over the organisation:
    nothing account-specific, the same role name everywhere (a parameter), trusting the bot's role."""
    role_name = policy.organization.role_name if policy is not None else DEFAULT_ROLE_NAME
    fillings = _fillings(policy, cfn=True)
    statements = _statements(fillings, cfn=True, keep=lambda action: not _home_only(action))
    for statement in statements:
        statement["Sid"] = statement["Sid"].replace("Amibot", "AmibotMember", 1)
    statements = _with_pass_role(statements, policy, "AmibotMember")
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "amibot: the role the bot assumes in each member account, for a service-managed StackSet "
                       "(amibot iam-policy --cloudformation --member)",
        "Parameters": {
            "BotRoleArn": _parameter("the bot's role (the BotRoleArn output of deploy/amibot-role.yaml), the "
                                     "only principal that may assume this role",
                                     AllowedPattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$"),
            "ExternalId": _parameter("sts:ExternalId the bot must give ([organization].external_id); empty: none",
                                     ""),
            "RoleName": _parameter("[organization].role_name: the same in every account", role_name),
        },
        "Conditions": {"HasExternalId": _not_empty("ExternalId")},
        "Resources": {
            "AmibotMemberRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": {"Ref": "RoleName"},
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "AmibotAssume", "Effect": "Allow", "Principal": {"AWS": {"Ref": "BotRoleArn"}},
                    "Action": "sts:AssumeRole",
                    "Condition": {"Fn::If": ["HasExternalId",
                                             {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
                                             {"Ref": "AWS::NoValue"}]}}]},
                "Policies": [{"PolicyName": "amibot-member", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": statements}}]}},
        },
        "Outputs": {"RoleArn": {"Description": "the role amibot assumes here",
                                "Value": {"Fn::GetAtt": ["AmibotMemberRole", "Arn"]}}},
    }


def cloudformation(member: bool = False, policy=None) -> str:
    """The bot's role, or with `member` the member accounts' role, as a CloudFormation template (YAML)."""
    template = member_template(policy) if member else bot_template(policy)
    header = ("# Generated by `amibot iam-policy --cloudformation" + (" --member" if member else "") +
              "` from the code's @requires: do not edit (docs/iam.md).\n")
    return header + "\n".join(_yaml(template, 0)) + "\n"


PLAIN_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]*(::[A-Za-z]+)?$")


def _yaml(value: Any, indent: int) -> list[str]:
    """A small YAML writer for templates: block mappings and lists, JSON-quoted scalars (valid YAML), and the
    keys that start with "#" written as comments."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("#"):
                lines += _comment(item, pad)
                continue
            name = key if PLAIN_KEY.match(key) else json.dumps(key)
            if _scalar(item):
                lines.append(f"{pad}{name}: {json.dumps(item)}")
            else:
                lines.append(f"{pad}{name}:")
                lines += _yaml(item, indent + 2)
    else:
        for item in value:
            if _scalar(item):
                lines.append(f"{pad}- {json.dumps(item)}")
                continue
            if isinstance(item, dict):
                for key in [key for key in item if key.startswith("#")]:
                    lines += _comment(item[key], pad)
                item = {key: part for key, part in item.items() if not key.startswith("#")}
            inner = _yaml(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
    return lines


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list) or not value


def _comment(text: str, pad: str) -> list[str]:
    return [f"{pad}# {line}" for line in textwrap.wrap(text, 110 - len(pad))]
