"""Configuration: secrets and paths from the environment, policy from a TOML file.

The policy schema is declared once, as data (``SCHEMA``), so that validation, defaults, the
``check-config`` printout and docs/configuration.md all come from the same place.  Every problem is
reported on its own line naming the key and what was expected; nothing is silently ignored.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import regions
from bot.core.accounts import Account, parse_accounts
from bot.core.errors import ConfigError
from bot.core.families import FamilyTag, pattern_problem

DEFAULT_SLACK_API_URL = "https://slack.com/api/"

USER_OR_GROUP = re.compile(r"^[UWS][A-Z0-9]{2,}$")
CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
ACCOUNT = re.compile(r"^\d{12}$")
REGION = regions.WELL_FORMED  # what a region name looks like; whether it exists: bot.core.regions
CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _pattern(regex: re.Pattern, what: str):
    def check(value: str) -> str | None:
        return None if regex.match(value) else f"{what}, got {value!r}"

    return check


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"an IANA time zone such as 'Europe/Berlin', got {value!r}"
    return None


def _glob_like(example: str):
    def check(value: str) -> str | None:
        try:
            fnmatch.translate(value)
        except re.error:  # pragma: no cover - fnmatch.translate accepts nearly anything
            return f"a glob such as {example!r}, got {value!r}"
        return None if value.strip() else f"a non-empty glob such as {example!r}, got {value!r}"

    return check


_glob = _glob_like("t3.*")


def _percentage(low: int):
    def check(value: int) -> str | None:
        return None if low <= value <= 100 else f"a percentage {low}–100, got {value!r}"

    return check


def _ascending(values: list[int]) -> str | None:
    return None if values == sorted(set(values)) else f"percentages in ascending order, got {values!r}"


ALARM = re.compile(r"^[^\x00-\x1f]{1,255}$")  # CloudWatch: 1-255 characters, no control characters


def _at_least(minimum: float):
    def check(value: float) -> str | None:
        return None if value >= minimum else f"a number >= {minimum}, got {value!r}"

    return check


def _backup_destination(value: str) -> str | None:
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        if not BUCKET.match(bucket) or not key or key.endswith("/"):
            return f"s3://BUCKET/KEY (a key, not a prefix), got {value!r}"
        return None
    return None if value.strip() and not value.endswith("/") else f"a file path or s3://BUCKET/KEY, got {value!r}"


@dataclass(frozen=True)
class Key:
    """One policy key: its type, default, an optional per-item check and a line for the docs."""

    type: str  # "str", "int", "float", "bool", "list[str]", "list[int]", "str?" (optional string)
    default: Any
    doc: str
    check: Any = None  # callable(value) -> error text or None; applied to each list item
    check_all: Any = None  # callable(the whole list) -> error text or None (e.g. ascending order)


SCHEMA: dict[str, dict[str, Key]] = {
    "aws": {
        "regions": Key("list[str]", [], "regions to work in; empty: the session's region (a name botocore's "
                       "region data does not know is a `check-config` warning)",
                       _pattern(REGION, "an AWS region such as 'eu-west-1'")),
        "max_concurrency": Key("int", 16, "AWS listings run at once when fanning out over accounts × regions (one "
                               "bounded pool; botocore's adaptive retries slow it down on throttling)", _at_least(1)),
        "max_cached_account_regions": Key("int", 32, "account-regions whose AWS clients `serve` and `socket` keep for "
                                          "reuse; the least recently used beyond this are dropped and made again "
                                          "when next needed", _at_least(1)),
    },
    "access": {
        "operators": Key("list[str]", [], "user (U…) or user-group (S…) ids allowed to run changing "
                         "commands; empty: everyone", _pattern(USER_OR_GROUP, "a Slack user or group id")),
        "channels": Key("list[str]", [], "channel ids where the bot acts; empty: anywhere",
                        _pattern(CHANNEL, "a Slack channel id such as 'C0123ABCD'")),
    },
    "approvals": {
        "approvers": Key("list[str]", [], "user (U…) or user-group (S…) ids who may approve",
                         _pattern(USER_OR_GROUP, "a Slack user or group id")),
        "required": Key("int", 1, "distinct approvals needed", _at_least(1)),
        "expire_after_hours": Key("float", 72.0, "pending requests expire after this", _at_least(0.01)),
        "remind_after_hours": Key("float", 24.0, "approvers are reminded once after this", _at_least(0.01)),
        "channel": Key("str?", None, "post approval requests here instead of where they were made",
                       _pattern(CHANNEL, "a Slack channel id such as 'C0123ABCD'")),
    },
    "sharing": {
        "allowed_accounts": Key("list[str]", [], "accounts an image may be shared with without approval",
                                _pattern(ACCOUNT, "a 12-digit AWS account id")),
        "allow_public": Key("bool", False, "whether images may be made public (always with approval)"),
        "allow_configured_accounts": Key("bool", False, "share with any account in [[accounts]] (or the "
                                         "organisation amibot manages) without approval"),
    },
    "launch": {
        "default_instance_type": Key("str", "t3.micro", "instance type when none is given"),
        "allowed_instance_types": Key("list[str]", ["t3.*", "t3a.*", "t4g.*"],
                                      "globs of instance types allowed without approval", _glob),
        "max_count": Key("int", 5, "instances per launch without approval", _at_least(1)),
        "subnet_id": Key("str?", None, "subnet for launches", _pattern(SUBNET, "a subnet id 'subnet-…'")),
        "security_group_ids": Key("list[str]", [], "security groups for launches",
                                  _pattern(SECURITY_GROUP, "a security group id 'sg-…'")),
        "key_name": Key("str?", None, "EC2 key pair name for launches"),
    },
    "digest": {
        "channel": Key("str?", None, "channel for the daily digest; unset: no daily digest",
                       _pattern(CHANNEL, "a Slack channel id such as 'C0123ABCD'")),
        "at": Key("str", "09:00", "time of day of the digest, HH:MM", _pattern(CLOCK, "a time 'HH:MM'")),
        "timezone": Key("str", "UTC", "time zone of 'at'", _timezone),
        "stale_after_days": Key("int", 90, "images older than this are candidates", _at_least(1)),
        "keep_latest": Key("int", 2, "newest images per family that are never stale", _at_least(0)),
        "family_tag": Key("str", "Family", "tag naming an image's family"),
        "snapshot_price_per_gb_month": Key("float", 0.05, "EBS snapshot price, USD per GB-month",
                                           _at_least(0)),
    },
    "families": {
        "patterns": Key("list[str]", [], "regular expressions with a named group `family`, tried in order on "
                        "an image's name before the built-in rule (the family tag still wins), e.g. "
                        "`^(?P<family>.+)-v\\d+$`", pattern_problem),
    },
    "audit": {
        "channel": Key("str?", None, "channel where audit anchors (row count and head hash) are posted daily and "
                       "after every approval decision", _pattern(CHANNEL, "a Slack channel id such as 'C0123ABCD'")),
        "anchor_bucket": Key("str?", None, "S3 bucket with Object Lock enabled where anchors are written "
                             "(amibot/anchors/…); `audit verify` checks against every one",
                             _pattern(BUCKET, "an S3 bucket name such as 'acme-amibot-anchors'")),
        "anchor_retention_days": Key("int", 365, "Object Lock COMPLIANCE retention of each anchor object, days",
                                     _at_least(1)),
    },
    "backup": {
        "destination": Key("str?", None, "where the daily backup goes: a file path or s3://bucket/key; `{date}` "
                           "becomes the UTC day (YYYY-MM-DD), so each day keeps its own copy; unset: no daily "
                           "backup", _backup_destination),
        "at": Key("str", "03:00", "time of day (UTC) of the daily backup, HH:MM", _pattern(CLOCK, "a time 'HH:MM'")),
    },
    "organization": {
        "enabled": Key("bool", False, "manage every active member account of the AWS Organization "
                       "(organizations:ListAccounts, refreshed hourly); [[accounts]] entries override members"),
        "role_name": Key("str", "amibot", "role assumed in each member account: arn:aws:iam::<member>:role/<name>",
                         _pattern(re.compile(r"^[\w+=,.@/-]{1,512}$"), "an IAM role name such as 'amibot'")),
        "exclude": Key("list[str]", [], "member account ids or names left out"),
        "external_id": Key("str?", None, "sts:ExternalId given when assuming each member's role (the member "
                           "roles' StackSet's ExternalId, docs/iam.md); an `[[accounts]]` entry's own wins"),
        "role_arn": Key("str?", None, "role assumed to list the organisation when the bot runs in neither the "
                        "management account nor a delegated administrator (only they may call ListAccounts); "
                        "unset: listed with the bot's own credentials",
                        _pattern(ROLE_ARN, "a role ARN such as 'arn:aws:iam::123456789012:role/amibot-org'")),
    },
    "jobs": {
        "workers": Key("int", 32, "worker threads for background jobs that call AWS (work that needs no AWS has "
                       "its own small pool)", _at_least(1)),
        "per_user": Key("int", 4, "AWS jobs one user may have running at once; the rest wait their turn, users "
                        "served round-robin", _at_least(1)),
        "deadline_seconds": Key("float", 120.0, "a command not answered after this many seconds tells its user "
                                "AWS is slow (the answer still follows when it arrives)", _at_least(1)),
    },
    "rollout": {
        "min_healthy_percentage": Key("int", 90, "instance refresh's MinHealthyPercentage: the share of a group "
                                      "kept in service while it is replaced (`/ami rollout --min-healthy`)",
                                      _percentage(0)),
        "instance_warmup_seconds": Key("int", 300, "instance refresh's InstanceWarmup: seconds before a new "
                                       "instance counts as healthy (`--warmup`)", _at_least(0)),
        "checkpoints": Key("list[int]", [], "pause points, percentages ascending in 1–100, e.g. [20, 50]: amibot "
                           "reports each and goes on after checkpoint_delay_seconds (`--checkpoints`)",
                           _percentage(1), _ascending),
        "checkpoint_delay_seconds": Key("int", 600, "how long a refresh waits at each checkpoint", _at_least(0)),
        "max_parallel_groups": Key("int", 5, "Auto Scaling groups refreshed at once in one rollout", _at_least(1)),
        "alarms": Key("list[str]", [], "CloudWatch alarm names that stop and roll back a refresh (AutoRollback)",
                      _pattern(ALARM, "a CloudWatch alarm name (1-255 characters)")),
        "skip_groups": Key("list[str]", [], "globs of Auto Scaling group names amibot never rolls, e.g. "
                           "[\"legacy-*\"]: listed in the plan as skipped", _glob_like("legacy-*")),
    },
}


class Section(dict):
    """A policy section: a dict whose keys can also be read as attributes (policy.launch.max_count)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# [[bakes]]: how a family's next version is made (bot/services/bake.py). One table per baked family (and account,
# region); exactly one of pipeline / automation / instance. (name, type, default, meaning) for the docs.
BAKE_KEYS: tuple[tuple[str, str, str, str], ...] = (
    ("family", "str", "required", "the family the result joins (its `Family` tag)"),
    ("account", "str?", "the bot's own", "a managed account's name or id to bake in"),
    ("region", "str?", "the first of [aws].regions", "the region the bake runs in"),
    ("pipeline", "str?", "null", "an EC2 Image Builder image pipeline ARN (its region and account must match)"),
    ("automation", "str?", "null", "an SSM Automation runbook, e.g. `AWS-UpdateLinuxAmi`; SourceAmiId = the "
                                   "family's current version"),
    ("parameters", "table", "{}", "the runbook's parameters other than SourceAmiId (strings or lists of strings)"),
    ("instance", "str?", "null", "a builder instance: CreateImage from it (what `/ami create` does)"),
    ("copy_to", "list[str]", "[]", "regions every new version is copied to before it is proposed"),
    ("schedule", "str?", "null", "crontab (5 fields) in [digest].timezone: bake on a schedule"),
    ("promote", "str", '"approval"', '"approval": a promotion request; "manual": a message with a Promote button'),
)
PIPELINE_ARN = re.compile(r"^arn:aws[a-z-]*:imagebuilder:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                          r"image-pipeline/(?P<name>[a-z0-9_-]+)$")
RUNBOOK = re.compile(r"^([\w.-]{3,128}|arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:document/[\w.-]{3,128})$")
INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")
# What AWS's own patch runbooks require besides SourceAmiId (their documents mark these required).
RUNBOOK_REQUIRED = {"AWS-UpdateLinuxAmi": ("IamInstanceProfileName", "AutomationAssumeRole"),
                    "AWS-UpdateWindowsAmi": ("IamInstanceProfileName", "AutomationAssumeRole")}
MECHANISMS = ("pipeline", "automation", "instance")


@dataclass(frozen=True)
class Bake:
    """One [[bakes]] table: how the family's next version is made, where, and what happens to it."""

    family: str
    mechanism: str  # "pipeline" | "automation" | "instance"
    source: str  # the pipeline ARN, the runbook name or the instance id
    account: str | None = None  # as written (a name or id); None: the bot's own
    region: str | None = None  # None: the first of [aws].regions (or the session's)
    parameters: tuple[tuple[str, Any], ...] = ()
    copy_to: tuple[str, ...] = ()
    schedule: str | None = None
    promote: str = "approval"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.parameters)

    @property
    def pipeline_name(self) -> str:
        match = PIPELINE_ARN.match(self.source)
        return match.group("name") if match else self.source

    def passed_roles(self) -> list[str]:
        """The roles this bake hands to AWS (iam:PassRole): the runbook's AutomationAssumeRole and its instance
        profile's role (by the profile's name: a role of the same name, as AWS's own setup makes it)."""
        params = self.params
        roles = []
        for key in ("AutomationAssumeRole",):
            value = params.get(key)
            if isinstance(value, str) and value.startswith("arn:"):
                roles.append(value)
        profile = params.get("IamInstanceProfileName")
        if isinstance(profile, str) and profile:
            account = self.account if self.account and ACCOUNT.match(self.account) else "*"
            roles.append(f"arn:aws:iam::{account}:role/{profile}")
        return roles


def _crontab_problem(text: str, timezone: str) -> str | None:
    if len(text.split()) != 5:
        return f"a crontab of 5 fields such as '0 3 * * mon', got {text!r}"
    from apscheduler.triggers.cron import CronTrigger  # only when a schedule is configured

    try:
        CronTrigger.from_crontab(text, timezone=ZoneInfo(timezone))
    except (ValueError, ZoneInfoNotFoundError) as error:
        return f"a crontab such as '0 3 * * mon', got {text!r} ({error})"
    return None


def parse_bakes(raw: Any, problems: list[str], accounts: list[Account], aws: dict, timezone: str) -> list[Bake]:
    """Every [[bakes]] table, each problem named: exactly one source, the pipeline's region and account those the
    bake runs in, the runbook's required parameters given, one bake per family, account and region."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append("[[bakes]]: expected an array of tables ([[bakes]] blocks)")
        return []
    configured = aws.get("regions") if isinstance(aws, dict) and isinstance(aws.get("regions"), list) else []
    bakes: list[Bake] = []
    seen: set[tuple] = set()
    for index, item in enumerate(raw):
        where = f"[[bakes]] #{index + 1}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a table")
            continue
        family = item.get("family")
        if isinstance(family, str) and family.strip():
            where = f"[[bakes]] {family}"
        else:
            problems.append(f"{where}.family: required, the family the result joins (a string)")
            family = ""
        before = len(problems)
        known = {name for name, *_ in BAKE_KEYS}
        for name in item:
            if name not in known:
                problems.append(f"{where}: unknown key {name} (expected one of: {', '.join(sorted(known))})")
        for name in ("account", "region", "pipeline", "automation", "instance", "schedule", "promote"):
            if name in item and not isinstance(item[name], str):
                problems.append(f"{where}.{name}: expected a string, got {item[name]!r}")
        if len(problems) > before:
            continue
        sources = [name for name in MECHANISMS if item.get(name)]
        if len(sources) != 1:
            given = ", ".join(sources) if sources else "none"
            problems.append(f"{where}: give exactly one of pipeline, automation, instance (given: {given})")
            continue
        mechanism = sources[0]
        source = item[mechanism]
        account_ref = item.get("account")
        account_id = None
        if account_ref:
            found = next((a for a in accounts if a.matches(account_ref)), None)
            if found is not None:
                account_id = found.id
            elif ACCOUNT.match(account_ref):
                account_id = account_ref
            else:
                problems.append(f"{where}.account: {account_ref!r} is not a 12-digit id or the name of an "
                                "[[accounts]] entry")
        region = item.get("region")
        if region is not None and not REGION.match(region):
            problems.append(f"{where}.region: expected an AWS region such as 'eu-west-1', got {region!r}")
        runs_in = region or (configured[0] if configured else None)
        if mechanism == "pipeline":
            match = PIPELINE_ARN.match(source)
            if not match:
                problems.append(f"{where}.pipeline: expected an image pipeline ARN "
                                f"'arn:aws:imagebuilder:REGION:ACCOUNT:image-pipeline/NAME', got {source!r}")
            else:
                if runs_in and match.group("region") != runs_in:
                    problems.append(f"{where}.pipeline: the pipeline is in {match.group('region')} but the bake "
                                    f"runs in {runs_in} (set region = \"{match.group('region')}\")")
                if account_id and match.group("account") != account_id:
                    problems.append(f"{where}.pipeline: the pipeline is in account {match.group('account')} but "
                                    f"the bake runs in {account_id}")
        elif mechanism == "automation" and not RUNBOOK.match(source):
            problems.append(f"{where}.automation: expected an SSM document name such as 'AWS-UpdateLinuxAmi', "
                            f"got {source!r}")
        elif mechanism == "instance" and not INSTANCE.match(source):
            problems.append(f"{where}.instance: expected an instance id 'i-…', got {source!r}")
        parameters = item.get("parameters", {})
        if not isinstance(parameters, dict) or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                for v in parameters.values()):
            problems.append(f"{where}.parameters: expected a table of strings (or lists of strings)")
            parameters = {}
        if parameters and mechanism != "automation":
            problems.append(f"{where}.parameters: only an automation bake takes parameters")
        if mechanism == "automation":
            if "SourceAmiId" in parameters:
                problems.append(f"{where}.parameters: leave SourceAmiId out; amibot passes the family's current "
                                "version")
            missing = [name for name in RUNBOOK_REQUIRED.get(source, ()) if name not in parameters]
            if missing:
                problems.append(f"{where}.parameters: {source} requires {', '.join(missing)}")
        copy_to = item.get("copy_to", [])
        if not isinstance(copy_to, list) or not all(isinstance(r, str) and REGION.match(r) for r in copy_to):
            problems.append(f"{where}.copy_to: expected a list of regions such as [\"eu-west-1\"]")
            copy_to = []
        schedule = item.get("schedule")
        if schedule is not None:
            problem = _crontab_problem(schedule, timezone)
            if problem:
                problems.append(f"{where}.schedule: expected {problem}")
        promote = item.get("promote", "approval")
        if promote not in ("approval", "manual"):
            problems.append(f"{where}.promote: expected \"approval\" or \"manual\", got {promote!r}")
        key = (family, account_id, runs_in)
        if family and key in seen:
            problems.append(f"{where}: baked twice in the same account and region")
        seen.add(key)
        bakes.append(Bake(family, mechanism, source, account_ref, region,
                          tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in parameters.items())),
                          tuple(copy_to), schedule, promote))
    return bakes


def bake_of(policy: Policy, family: str) -> list[Bake]:
    """The [[bakes]] entries of a family (several: one per account or region)."""
    return [bake for bake in policy.bakes if bake.family == family]


@dataclass
class Policy:
    aws: Section
    access: Section
    approvals: Section
    sharing: Section
    launch: Section
    digest: Section
    families: Section
    audit: Section
    backup: Section
    organization: Section
    jobs: Section
    rollout: Section
    source: str = "defaults"
    accounts: list[Account] = field(default_factory=list)  # [[accounts]]; empty: the bot's own account only
    bakes: list[Bake] = field(default_factory=list)  # [[bakes]]; empty: nothing is baked

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(getattr(self, name)) for name in SCHEMA}


def _type_error(kind: str, value: Any) -> str | None:
    if kind == "str" or kind == "str?":
        return None if isinstance(value, str) else "a string"
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if kind == "float":
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "a list of strings"
    if kind == "list[int]":
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        return None if ok else "a list of whole numbers"
    raise AssertionError(f"unknown schema type {kind}")


def _validate_key(section: str, name: str, key: Key, value: Any, problems: list[str]) -> Any:
    where = f"[{section}].{name}"
    expected = _type_error(key.type, value)
    if expected:
        problems.append(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")
        return key.default
    if key.type == "float":
        value = float(value)
    if key.check:
        for item in value if isinstance(value, list) else [value]:
            error = key.check(item)
            if error:
                problems.append(f"{where}: expected {error}")
    if key.check_all:
        error = key.check_all(value)
        if error:
            problems.append(f"{where}: expected {error}")
    return value


def parse_policy(data: dict[str, Any], source: str = "defaults") -> Policy:
    """Validate a parsed TOML document against SCHEMA; raise ConfigError listing every problem."""
    problems: list[str] = []
    sections: dict[str, Section] = {}
    data = dict(data)
    organization = data.get("organization")
    accounts = parse_accounts(data.pop("accounts", None), problems,
                              organization=isinstance(organization, dict) and organization.get("enabled") is True)
    digest = data.get("digest") if isinstance(data.get("digest"), dict) else {}
    timezone = digest.get("timezone") if isinstance(digest.get("timezone"), str) else "UTC"
    bakes = parse_bakes(data.pop("bakes", None), problems, accounts, data.get("aws") or {},
                        timezone if _timezone(timezone) is None else "UTC")
    for section_name in data:
        if section_name not in SCHEMA:
            problems.append(f"unknown section [{section_name}] (expected one of: {', '.join(SCHEMA)})")
        elif not isinstance(data[section_name], dict):
            problems.append(f"[{section_name}] must be a table, got {data[section_name]!r}")
    for section_name, keys in SCHEMA.items():
        given = data.get(section_name, {})
        given = given if isinstance(given, dict) else {}
        for name in given:
            if name not in keys:
                problems.append(f"unknown key [{section_name}].{name} (expected one of: {', '.join(keys)})")
        values = Section()
        for name, key in keys.items():
            default = list(key.default) if isinstance(key.default, list) else key.default
            values[name] = (_validate_key(section_name, name, key, given[name], problems)
                            if name in given else default)
        sections[section_name] = values
    if problems:
        raise ConfigError(problems)
    # The family tag carries the team's naming patterns to every caller that passes it (bot.core.families).
    sections["digest"]["family_tag"] = FamilyTag(sections["digest"]["family_tag"], sections["families"]["patterns"])
    return Policy(**sections, source=source, accounts=accounts, bakes=bakes)


def load_policy(path: str | os.PathLike | None) -> Policy:
    """Load the TOML policy file; a missing path means defaults."""
    if path is None:
        return parse_policy({})
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"AMIBOT_CONFIG: file {str(path)!r} does not exist"]) from None
    except OSError as error:
        raise ConfigError([f"AMIBOT_CONFIG: cannot read {str(path)!r}: {error.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: not valid TOML: {error}"]) from None
    return parse_policy(data, source=str(path))


def policy_warnings(policy: Policy) -> list[str]:
    """A valid policy that is probably not what the operator meant: `check-config` prints each, one per line,
    without failing. Each check is a short block here; add new ones at the end."""
    warnings: list[str] = []
    if not policy.access.operators:
        warnings.append("[access].operators is empty: anyone in the workspace can run changing commands "
                        "(launch, share, copy, deregister, …)")
    if not policy.approvals.approvers:
        who = "any operator" if policy.access.operators else "anyone (no operators either)"
        warnings.append(f"[approvals].approvers is empty: {who} can approve another person's request")
    for region in policy.aws.regions:  # well-formed (checked at load) but unknown to botocore's region data
        unknown = regions.unknown_warning(region)
        if unknown:
            warnings.append(f"[aws].regions: {unknown}")
    return warnings


def mask(secret: str | None) -> str:
    """Show enough of a secret to recognise it, never enough to use it."""
    if not secret:
        return "(not set)"
    if len(secret) <= 12:
        return "****"
    prefix = secret[:5] if secret[:5] in ("xoxb-", "xapp-", "xoxp-") else ""
    return f"{prefix}****{secret[-4:]}"


@dataclass
class Settings:
    """What comes from the environment. Secrets live here and nowhere else."""

    bot_token: str | None = None
    signing_secret: str | None = None
    app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    db_path: str = "amibot.db"
    config_path: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        config_path = env.get("AMIBOT_CONFIG") or None
        if config_path is None and Path("amibot.toml").exists():
            config_path = "amibot.toml"
        api_url = env.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        return cls(
            bot_token=env.get("SLACK_BOT_TOKEN") or None,
            signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            app_token=env.get("SLACK_APP_TOKEN") or None,
            slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
            db_path=env.get("AMIBOT_DB") or "amibot.db",
            config_path=config_path,
        )

    def problems(self, mode: str) -> list[str]:
        """What is missing or malformed for running in `mode` ('http', 'socket' or 'any')."""
        found = []
        if not self.bot_token:
            found.append("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…, from OAuth & Permissions)")
        elif not self.bot_token.startswith("xoxb-"):
            found.append("SLACK_BOT_TOKEN should start with 'xoxb-' (a bot token, not a user or app token)")
        if mode == "http" and not self.signing_secret:
            found.append("SLACK_SIGNING_SECRET is not set (Basic Information → Signing Secret); HTTP mode needs it")
        if mode == "socket":
            if not self.app_token:
                found.append("SLACK_APP_TOKEN is not set (an app-level token, xapp-…, with connections:write);"
                             " Socket Mode needs it")
            elif not self.app_token.startswith("xapp-"):
                found.append("SLACK_APP_TOKEN should start with 'xapp-' (an app-level token)")
        if mode == "any" and not (self.signing_secret or self.app_token):
            found.append("neither SLACK_SIGNING_SECRET (HTTP mode) nor SLACK_APP_TOKEN (Socket Mode) is set")
        if not self.slack_api_url.startswith(("http://", "https://")):
            found.append(f"SLACK_API_URL must be an http(s) URL, got {self.slack_api_url!r}")
        return found

    def masked(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": mask(self.bot_token),
            "SLACK_SIGNING_SECRET": mask(self.signing_secret),
            "SLACK_APP_TOKEN": mask(self.app_token),
            "SLACK_API_URL": self.slack_api_url,
            "AMIBOT_DB": self.db_path,
            "AMIBOT_CONFIG": self.config_path or "(none: defaults)",
        }

    def __repr__(self) -> str:  # never let a secret reach a log through repr()
        return f"Settings({self.masked()})"
