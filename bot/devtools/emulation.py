"""What moto lacks, emulated for `amibot demo`: on top of moto, through botocore's event system.

moto 5.2.5 has no deprecation, deregistration protection, Recycle Bin (rbin and the EC2 bin calls),
LastLaunchedTime, instance image metadata, Inspector image findings or Allowed AMIs. ``Emulation`` keeps a
small in-memory model of them and answers those calls itself, the way botocore's Stubber does: a
``before-call.<service>.<Operation>`` handler that returns ``(http response, parsed response)`` ends the call
before it is sent (so moto never sees it). Calls moto does serve go to moto, and ``after-call`` handlers
add what AWS would (DescribeImages' DeprecationTime, LastLaunchedTime, DeregistrationProtection, and a copy's
SourceImageId and SourceImageRegion, so lineage finds copies as it does in AWS) or follow
what happened (a deregistered image covered by a retention rule goes to the bin, with the snapshots deleted
after it). Restoring puts moto's own objects back into its in-process backend (``ec2_backends``); no file of
moto is patched. The handlers are registered on one boto3 session (``install``): every client made from it
— the app's ``Aws`` and the fleet's seeding both use it — gets them, and no other session does.

Behaviour follows AWS's documentation: rules without resource tags cover every resource of their type in
the region (less excluded tags), tag-level rules cover resources with any of their tags, the longest
covering retention wins; an image in the bin cannot be restored while its snapshots are still there;
deregistration protection refuses DeregisterImage (and keeps refusing for 24 hours after it is disabled
when it was enabled with a cooldown); items leave the bin for good when their retention ends.
Per account, as moto keeps a backend per account: a session is installed for one account (the demo's own
session for moto's default account, an assumed role's for its account), and each account's regions have their
own state. An account launches an image another one shares with it (moto alone launches its own images only);
such an instance's image metadata, and the image's LastLaunchedTime, are the owner's.
"""

from __future__ import annotations

import copy
import functools
import itertools
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from botocore.awsrequest import AWSResponse

IMAGE, SNAPSHOT = "EC2_IMAGE", "EBS_SNAPSHOT"
COOLDOWN = timedelta(hours=24)
MAX_DEPRECATION_AHEAD = timedelta(days=3650)
DEFAULT_PAGE = 1000
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")


class EmulatedError(Exception):
    """An error answer, as AWS would give it (code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def answered(operation: str, run: Callable[[], dict | None]):
    """What a before-call handler returns for an emulated call: `run()`'s parsed answer (with AWS's response
    metadata) or its EmulatedError as AWS's error answer; None when `run()` leaves the call to moto."""
    try:
        parsed = run()
    except EmulatedError as error:
        return (AWSResponse(f"https://emulated/{operation}", error.status, {}, None),
                {"Error": {"Code": error.code, "Message": error.message},
                 "ResponseMetadata": {"HTTPStatusCode": error.status}})
    if parsed is None:
        return None
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200, "RequestId": secrets.token_hex(8)})
    return AWSResponse(f"https://emulated/{operation}", 200, {}, None), parsed


@dataclass
class BinEntry:
    """A deregistered image or deleted snapshot in the Recycle Bin, with moto's object to put back."""

    resource: Any
    entered: datetime
    exits: datetime
    info: dict = field(default_factory=dict)


class Place(NamedTuple):
    """A region of one account: each has its own emulated state, as each has its own moto backend."""

    account: str
    region: str


@dataclass
class Region:
    """The emulated state of one region of the account."""

    rules: dict[str, dict] = field(default_factory=dict)
    images_in_bin: dict[str, BinEntry] = field(default_factory=dict)
    snapshots_in_bin: dict[str, BinEntry] = field(default_factory=dict)
    deprecation: dict[str, datetime] = field(default_factory=dict)
    protection: dict[str, str] = field(default_factory=dict)  # enabled | enabled-with-cooldown
    protected_until: dict[str, datetime] = field(default_factory=dict)  # cooldown after disabling
    last_launched: dict[str, datetime] = field(default_factory=dict)
    gone: dict[str, dict] = field(default_factory=dict)  # image id -> what was known of it when deregistered
    findings: dict[str, list[dict]] = field(default_factory=dict)
    copied_from: dict[str, tuple[str, str]] = field(default_factory=dict)  # a copy's id -> (source id, its region)
    allowed: dict = field(default_factory=lambda: {"State": "disabled", "ImageCriteria": [], "ManagedBy": "account"})


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _aware(moment) -> datetime | None:
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(moment, datetime):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def covers(rule: dict, tags: dict[str, str]) -> bool:
    """AWS's coverage: a tag-level rule covers resources with any of its tags; a region-level one (no tags)
    covers every resource of its type except those with one of its exclusion tags."""
    def pairs(key: str) -> set[tuple[str, str]]:
        return {(item["ResourceTagKey"], item.get("ResourceTagValue", "")) for item in rule.get(key) or []}

    have = set(tags.items())
    wanted, excluded = pairs("ResourceTags"), pairs("ExcludeResourceTags")
    if wanted:
        return bool(wanted & have)
    return not (excluded & have)


class Emulation:
    """The emulated APIs; ``install(session)`` makes every client of that session use them."""

    def __init__(self, account_id: str | None = None, clock: Callable[[], datetime] | None = None):
        from moto.core import DEFAULT_ACCOUNT_ID

        self.account_id = account_id or DEFAULT_ACCOUNT_ID
        self.clock = clock or (lambda: datetime.now(UTC))
        self._regions: dict[Place, Region] = {}
        self._accounts: set[str] = {self.account_id}  # every account a session was installed for
        self._lock = threading.RLock()
        self._rule_ids = itertools.count(1)
        self._pending: dict[tuple[str, str, str | None], tuple[Any, dict[str, str]]] = {}
        self._ec2: dict[str, Callable[[str, dict], dict | None]] = {
            "EnableImageDeprecation": self._enable_deprecation,
            "DisableImageDeprecation": self._disable_deprecation,
            "EnableImageDeregistrationProtection": self._enable_protection,
            "DisableImageDeregistrationProtection": self._disable_protection,
            "DescribeImageAttribute": self._describe_image_attribute,
            "DeregisterImage": self._check_deregister,
            "DeleteSnapshot": self._capture_snapshot,
            "ListImagesInRecycleBin": self._list_images_in_bin,
            "ListSnapshotsInRecycleBin": self._list_snapshots_in_bin,
            "RestoreImageFromRecycleBin": self._restore_image,
            "RestoreSnapshotFromRecycleBin": self._restore_snapshot,
            "GetImageFindings": self._get_image_findings,
            "DescribeInstanceImageMetadata": self._describe_instance_image_metadata,
            "GetAllowedImagesSettings": self._get_allowed,
            "EnableAllowedImagesSettings": self._enable_allowed,
            "DisableAllowedImagesSettings": self._disable_allowed,
            "ReplaceImageCriteriaInAllowedImagesSettings": self._replace_criteria,
            "RunInstances": self._launch_shared,
        }
        self._rbin: dict[str, Callable[[str, dict], dict | None]] = {
            "CreateRule": self._create_rule, "GetRule": self._get_rule, "ListRules": self._list_rules,
            "DeleteRule": self._delete_rule,
        }

    # --- wiring ------------------------------------------------------------------------------------------
    def install(self, session, account_id: str | None = None) -> Emulation:
        """Register the handlers on a boto3 (or botocore) session, before any client is made from it. Its calls
        are in ``account_id`` (the emulation's own account when not given): each account has its own emulated
        state, as moto keeps a backend per account (an assumed role's session is installed with its account)."""
        account = account_id or self.account_id
        with self._lock:
            self._accounts.add(account)
        events = getattr(session, "events", None) or session.get_component("event_emitter")
        events.register("before-parameter-build.ec2", self._remember_params, unique_id="amibot-emulation-p-ec2")
        events.register("before-parameter-build.rbin", self._remember_params, unique_id="amibot-emulation-p-rbin")
        events.register("before-call.ec2", functools.partial(self._before, self._ec2, account),
                        unique_id="amibot-emulation-ec2")
        events.register("before-call.rbin", functools.partial(self._before, self._rbin, account),
                        unique_id="amibot-emulation-rbin")
        events.register("after-call.ec2", functools.partial(self._after_ec2, account),
                        unique_id="amibot-emulation-after-ec2")
        return self

    @staticmethod
    def _remember_params(params, context, **_):
        # before-call sees the serialized request; the operation's own parameters are kept here for it
        context["amibot_emulation_params"] = copy.deepcopy(params)

    def _before(self, table, account, model, context, **_):
        return self._answer(table, Place(account, context.get("client_region") or "us-east-1"), model, context)

    def _answer(self, table, at, model, context):
        handler = table.get(model.name)
        if handler is None:
            return None  # moto serves it
        params = context.get("amibot_emulation_params") or {}

        def run():
            if params.get("DryRun"):
                raise EmulatedError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
            with self._lock:
                self._expire(at)
                return handler(at, params)
        return answered(model.name, run)

    def _after_ec2(self, account, model, http_response, parsed, context, **_):
        at = Place(account, context.get("client_region") or "us-east-1")
        params = context.get("amibot_emulation_params") or {}
        with self._lock:
            if model.name == "RunInstances":
                self._launched_shared(at, params.get("ImageId"))
            if getattr(http_response, "status_code", 500) >= 300:  # moto refused: nothing moved
                if model.name == "DeregisterImage":
                    self._pending.pop(("image", at, params.get("ImageId")), None)
                elif model.name == "DeleteSnapshot":
                    self._pending.pop(("snapshot", at, params.get("SnapshotId")), None)
            elif model.name == "DescribeImages":
                self._enrich_images(at, parsed.get("Images") or [])
            elif model.name == "DeregisterImage":
                self._deregistered(at, params.get("ImageId"))
            elif model.name == "DeleteSnapshot":
                self._snapshot_deleted(at, params.get("SnapshotId"))
            elif model.name == "CopyImage" and parsed.get("ImageId") and params.get("SourceImageId"):
                self.region(at).copied_from[parsed["ImageId"]] = (params["SourceImageId"],
                                                                  params.get("SourceRegion") or at.region)
            elif model.name == "RunInstances":
                for instance in parsed.get("Instances") or []:
                    if instance.get("ImageId"):
                        owner = self._owner(at, instance["ImageId"])  # a shared image's launch is its owner's
                        self.region(owner).last_launched[instance["ImageId"]] = self.clock()

    def _launch_shared(self, at: Place, params: dict) -> None:
        """Let moto launch an image another account shares with this one, as AWS does: moto's AMI check looks in
        the launching account's own images only, and takes an id it lists as deregistered there as known — so
        the id is listed so for the length of the call (``_launched_shared`` takes it back)."""
        image_id = params.get("ImageId")
        if not image_id or self._ec2_backend(at).amis.get(image_id) is not None:
            return None
        ami = self._find_ami(at, image_id)
        if ami is not None and ({"UserId": at.account} in ami.launch_permissions or ami.is_public):
            deleted = self._ec2_backend(at).deleted_amis
            if image_id not in deleted:
                deleted.append(image_id)
                self._pending[("launch", at, image_id)] = (ami, {})
        return None

    def _launched_shared(self, at: Place, image_id: str | None) -> None:
        if self._pending.pop(("launch", at, image_id), None) is not None:
            deleted = self._ec2_backend(at).deleted_amis
            if image_id in deleted:
                deleted.remove(image_id)

    # --- the model ---------------------------------------------------------------------------------------
    def region(self, name: str | Place, account: str | None = None) -> Region:
        """The emulated state of a region (of ``account``; the emulation's own account when not given)."""
        at = name if isinstance(name, Place) else Place(account or self.account_id, name)
        with self._lock:
            return self._regions.setdefault(at, Region())

    @staticmethod
    def backend(account_id: str, region: str):
        from moto.ec2.models import ec2_backends

        return ec2_backends[account_id][region]

    def _ec2_backend(self, at: Place):
        return self.backend(at.account, at.region)

    def _find_ami(self, at: Place, image_id: str | None):
        """The image wherever it is: the account's own, or one another account of the emulation owns (an
        instance may run a shared image). None when no account has it."""
        for account in [at.account, *sorted(self._accounts - {at.account})]:
            ami = self.backend(account, at.region).amis.get(image_id or "")
            if ami is not None:
                return ami
        return None

    def _owner(self, at: Place, image_id: str | None) -> Place:
        """Where the emulated state of an image lives: in its owner's account, when the emulation knows it."""
        ami = self._find_ami(at, image_id)
        owner = getattr(ami, "owner_id", None)
        return Place(owner, at.region) if owner in self._accounts else at

    def _ami(self, at: Place, image_id: str | None):
        ami = self._ec2_backend(at).amis.get(image_id or "")
        if ami is None:
            raise EmulatedError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
        return ami

    def _tags(self, at: Place, resource_id: str) -> dict[str, str]:
        return dict(self._ec2_backend(at).tags.get(resource_id, {}))

    def _expire(self, at: Place) -> None:
        """Items whose retention ended leave the bin for good (AWS deletes them permanently)."""
        state, now = self.region(at), self.clock()
        for bin_ in (state.images_in_bin, state.snapshots_in_bin):
            for key in [key for key, entry in bin_.items() if entry.exits <= now]:
                bin_.pop(key)

    def _retention(self, at: Place, resource_type: str, tags: dict[str, str]) -> int | None:
        days = [rule["RetentionPeriod"]["RetentionPeriodValue"] for rule in self.region(at).rules.values()
                if rule["ResourceType"] == resource_type and rule.get("Status") == "available" and covers(rule, tags)]
        return max(days) if days else None

    # seeding, for the demo's fleet and the tests
    def add_findings(self, region: str, image_id: str, findings: list[dict], account: str | None = None) -> None:
        with self._lock:
            self.region(region, account).findings[image_id] = [dict(finding) for finding in findings]

    def set_allowed(self, region: str, state: str, criteria: list[dict], account: str | None = None) -> None:
        with self._lock:
            self.region(region, account).allowed = {"State": state, "ImageCriteria": copy.deepcopy(criteria),
                                           "ManagedBy": "account"}

    def entered_bin(self, region: str, resource_id: str, moment: datetime, account: str | None = None) -> None:
        """Say an image or snapshot in the bin entered it at ``moment`` (its retention counts from then)."""
        with self._lock:
            state = self.region(region, account)
            entry = state.images_in_bin.get(resource_id) or state.snapshots_in_bin.get(resource_id)
            if entry is None:
                raise KeyError(f"{resource_id} is not in the Recycle Bin of {region}")
            entry.exits, entry.entered = moment + (entry.exits - entry.entered), moment

    def set_last_launched(self, region: str, image_id: str, moment: datetime, account: str | None = None) -> None:
        with self._lock:
            self.region(region, account).last_launched[image_id] = moment

    # --- deprecation and deregistration protection --------------------------------------------------------
    def _enable_deprecation(self, at: Place, params: dict) -> dict:
        self._ami(at, params.get("ImageId"))
        when = _aware(params.get("DeprecateAt"))
        if when is None:
            raise EmulatedError("InvalidParameterValue", "DeprecateAt is not a valid date")
        if when > self.clock() + MAX_DEPRECATION_AHEAD:
            raise EmulatedError("InvalidParameterValue", "The deprecation time can't be more than 10 years ahead")
        # AWS rounds the seconds to the nearest minute
        rounded = (when + timedelta(seconds=30)).replace(second=0, microsecond=0)
        self.region(at).deprecation[params["ImageId"]] = rounded
        return {"Return": True}

    def _disable_deprecation(self, at: Place, params: dict) -> dict:
        self._ami(at, params.get("ImageId"))
        self.region(at).deprecation.pop(params["ImageId"], None)
        return {"Return": True}

    def _enable_protection(self, at: Place, params: dict) -> dict:
        self._ami(at, params.get("ImageId"))
        state = self.region(at)
        state.protection[params["ImageId"]] = "enabled-with-cooldown" if params.get("WithCooldown") else "enabled"
        state.protected_until.pop(params["ImageId"], None)
        return {"Return": "true"}

    def _disable_protection(self, at: Place, params: dict) -> dict:
        self._ami(at, params.get("ImageId"))
        state = self.region(at)
        if state.protection.pop(params["ImageId"], None) == "enabled-with-cooldown":
            state.protected_until[params["ImageId"]] = self.clock() + COOLDOWN
        return {"Return": "true"}

    def _protection(self, at: Place, image_id: str) -> str:
        state = self.region(at)
        if image_id in state.protection:
            return state.protection[image_id]
        until = state.protected_until.get(image_id)
        if until and until > self.clock():
            return f"disabled-until {_iso(until)}"
        return "disabled"

    def _describe_image_attribute(self, at: Place, params: dict) -> dict | None:
        attribute, image_id = params.get("Attribute"), params.get("ImageId")
        if attribute not in ("deregistrationProtection", "lastLaunchedTime"):
            return None  # moto has the others
        self._ami(at, image_id)
        if attribute == "deregistrationProtection":
            return {"ImageId": image_id, "DeregistrationProtection": {"Value": self._protection(at, image_id)}}
        launched = self.region(at).last_launched.get(image_id)
        return {"ImageId": image_id, "LastLaunchedTime": {"Value": _iso(launched)} if launched else {}}

    def _check_deregister(self, at: Place, params: dict) -> None:
        """Refuse a protected image; otherwise let moto deregister it (the after-call hook bins it)."""
        image_id = params.get("ImageId")
        ami = self._ec2_backend(at).amis.get(image_id or "")
        if ami is None:
            return None  # moto's own errors (InvalidAMIID.NotFound / .Unavailable)
        if self._protection(at, image_id) != "disabled":
            raise EmulatedError("OperationNotPermitted",
                                f"The image {image_id} can't be deregistered because deregistration protection "
                                "is enabled (or in its cooldown period). Disable it first.")
        self._pending[("image", at, image_id)] = (ami, self._tags(at, image_id))
        return None

    def _capture_snapshot(self, at: Place, params: dict) -> None:
        """Keep moto's snapshot object: if moto deletes it and a rule covers it, it goes to the bin."""
        snapshot_id = params.get("SnapshotId")
        snapshot = self._ec2_backend(at).snapshots.get(snapshot_id or "")
        if snapshot is not None:
            self._pending[("snapshot", at, snapshot_id)] = (snapshot, self._tags(at, snapshot_id))
        return None

    def _deregistered(self, at: Place, image_id: str | None) -> None:
        captured = self._pending.pop(("image", at, image_id), None)
        if captured is None:
            return
        ami, tags = captured
        state, now = self.region(at), self.clock()
        state.gone[ami.id] = {"ImageId": ami.id, "Name": ami.name or "", "OwnerId": ami.owner_id,
                              "State": "deregistered", "CreationDate": _creation(ami), "IsPublic": False}
        days = self._retention(at, IMAGE, tags)
        if days is not None:
            state.images_in_bin[ami.id] = BinEntry(ami, now, now + timedelta(days=days), {"tags": tags})

    def _snapshot_deleted(self, at: Place, snapshot_id: str | None) -> None:
        captured = self._pending.pop(("snapshot", at, snapshot_id), None)
        if captured is None:
            return
        snapshot, tags = captured
        days = self._retention(at, SNAPSHOT, tags)
        if days is not None:
            now = self.clock()
            self.region(at).snapshots_in_bin[snapshot.id] = BinEntry(snapshot, now, now + timedelta(days=days),
                                                                         {"tags": tags})

    # --- the Recycle Bin (EC2 side) -----------------------------------------------------------------------
    def _list_images_in_bin(self, at: Place, params: dict) -> dict:
        entries = self.region(at).images_in_bin
        wanted = params.get("ImageIds")
        items = [{"ImageId": key, "Name": entry.resource.name or "", "Description": entry.resource.description or "",
                  "RecycleBinEnterTime": entry.entered, "RecycleBinExitTime": entry.exits}
                 for key, entry in entries.items() if not wanted or key in wanted]
        return _page(items, params, "Images")

    def _list_snapshots_in_bin(self, at: Place, params: dict) -> dict:
        entries = self.region(at).snapshots_in_bin
        wanted = params.get("SnapshotIds")
        items = [{"SnapshotId": key, "Description": entry.resource.description or "",
                  "VolumeId": getattr(entry.resource.volume, "id", ""),
                  "RecycleBinEnterTime": entry.entered, "RecycleBinExitTime": entry.exits}
                 for key, entry in entries.items() if not wanted or key in wanted]
        return _page(items, params, "Snapshots")

    def _restore_snapshot(self, at: Place, params: dict) -> dict:
        snapshot_id = params.get("SnapshotId")
        entry = self.region(at).snapshots_in_bin.get(snapshot_id or "")
        if entry is None:
            raise EmulatedError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' is not in the Recycle Bin")
        self.region(at).snapshots_in_bin.pop(snapshot_id)
        snapshot = entry.resource
        self._ec2_backend(at).snapshots[snapshot.id] = snapshot
        return {"SnapshotId": snapshot.id, "Description": snapshot.description or "", "Encrypted": bool(
            snapshot.encrypted), "OwnerId": snapshot.owner_id, "Progress": "100%", "StartTime": _aware(
            snapshot.start_time), "State": "completed", "VolumeId": getattr(snapshot.volume, "id", ""),
            "VolumeSize": int(getattr(snapshot.volume, "size", 0) or 0), "SseType": "none"}

    def _restore_image(self, at: Place, params: dict) -> dict:
        image_id = params.get("ImageId")
        state = self.region(at)
        entry = state.images_in_bin.get(image_id or "")
        if entry is None:
            raise EmulatedError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' is not in the Recycle Bin")
        ami = entry.resource
        waiting = [snapshot_id for snapshot_id in _snapshot_ids(ami) if snapshot_id in state.snapshots_in_bin]
        if waiting:  # AWS: restore the AMI's snapshots from the bin before the AMI
            raise EmulatedError("IncorrectState", f"The snapshots of {image_id} are in the Recycle Bin: restore "
                                                  f"{', '.join(waiting)} first")
        state.images_in_bin.pop(image_id)
        state.gone.pop(image_id, None)
        backend = self._ec2_backend(at)
        backend.amis[ami.id] = ami
        if ami.id in backend.deleted_amis:
            backend.deleted_amis.remove(ami.id)
        tags = entry.info.get("tags") or {}
        if tags and not backend.tags.get(ami.id):
            backend.tags[ami.id].update(tags)
        return {"Return": True}

    # --- the Recycle Bin's rules (rbin) --------------------------------------------------------------------
    def _create_rule(self, at: Place, params: dict) -> dict:
        resource_type = params.get("ResourceType")
        if resource_type not in (IMAGE, SNAPSHOT):
            raise EmulatedError("ValidationException", f"ResourceType must be {IMAGE} or {SNAPSHOT}")
        period = params.get("RetentionPeriod") or {}
        value = period.get("RetentionPeriodValue")
        if not isinstance(value, int) or not 1 <= value <= 365 or period.get("RetentionPeriodUnit") != "DAYS":
            raise EmulatedError("ValidationException", "RetentionPeriod must be 1 to 365 DAYS")
        if params.get("ResourceTags") and params.get("ExcludeResourceTags"):
            raise EmulatedError("ValidationException", "A rule takes ResourceTags or ExcludeResourceTags, not both")
        identifier = f"{secrets.token_hex(5)}{next(self._rule_ids):x}"[:11]
        rule = {"Identifier": identifier, "Description": params.get("Description") or "",
                "ResourceType": resource_type, "RetentionPeriod": dict(period),
                "ResourceTags": list(params.get("ResourceTags") or []),
                "ExcludeResourceTags": list(params.get("ExcludeResourceTags") or []),
                "Status": "available", "LockState": "unlocked",
                "RuleArn": f"arn:aws:rbin:{at.region}:{at.account}:rule/{identifier}",
                "Tags": list(params.get("Tags") or [])}
        self.region(at).rules[identifier] = rule
        return {key: copy.deepcopy(value) for key, value in rule.items()}

    def _rule(self, at: Place, identifier: str | None) -> dict:
        rule = self.region(at).rules.get(identifier or "")
        if rule is None:
            raise EmulatedError("ResourceNotFoundException", f"Rule {identifier} not found", 404)
        return rule

    def _get_rule(self, at: Place, params: dict) -> dict:
        rule = self._rule(at, params.get("Identifier"))
        return {key: copy.deepcopy(value) for key, value in rule.items() if key != "Tags"}

    def _list_rules(self, at: Place, params: dict) -> dict:
        if params.get("ResourceType") not in (IMAGE, SNAPSHOT):
            raise EmulatedError("ValidationException", f"ResourceType must be {IMAGE} or {SNAPSHOT}")
        tags = params.get("ResourceTags")
        rules = [rule for rule in self.region(at).rules.values() if rule["ResourceType"] == params["ResourceType"]
                 and (not tags or all(tag in rule["ResourceTags"] for tag in tags))
                 and (not params.get("LockState") or rule["LockState"] == params["LockState"])]
        summaries = [{"Identifier": rule["Identifier"], "Description": rule["Description"],
                      "RetentionPeriod": dict(rule["RetentionPeriod"]), "LockState": rule["LockState"],
                      "RuleArn": rule["RuleArn"]} for rule in rules]
        return _page(summaries, params, "Rules")

    def _delete_rule(self, at: Place, params: dict) -> dict:
        self._rule(at, params.get("Identifier"))
        self.region(at).rules.pop(params["Identifier"])
        return {}

    # --- LastLaunchedTime, DeprecationTime, protection in DescribeImages -----------------------------------
    def _enrich_images(self, at: Place, images: list[dict]) -> None:
        for image in images:  # each as its owner's state has it (a shared image is described to others too)
            if not isinstance(image, dict) or image.get("OwnerId") not in self._accounts:
                continue
            owner = Place(image["OwnerId"], at.region)
            state, image_id = self.region(owner), image.get("ImageId")
            if image_id in state.deprecation:
                image["DeprecationTime"] = _iso(state.deprecation[image_id])
            if image_id in state.last_launched:
                image["LastLaunchedTime"] = _iso(state.last_launched[image_id])
            image["DeregistrationProtection"] = self._protection(owner, image_id)
            if image_id in state.copied_from:  # AWS names what a copy was copied from; moto does not
                image["SourceImageId"], image["SourceImageRegion"] = state.copied_from[image_id]

    # --- Inspector findings for images ----------------------------------------------------------------------
    def _get_image_findings(self, at: Place, params: dict) -> dict:
        image_id = params.get("ImageId")
        self._ami(at, image_id)
        return _page(copy.deepcopy(self.region(at).findings.get(image_id, [])), params, "ImageFindings")

    # --- instance image metadata ---------------------------------------------------------------------------
    def _describe_instance_image_metadata(self, at: Place, params: dict) -> dict:
        backend = self._ec2_backend(at)
        wanted_ids = set(params.get("InstanceIds") or [])
        filters = {item["Name"]: set(item.get("Values") or []) for item in params.get("Filters") or []}
        items = []
        for reservation in list(backend.reservations.values()):
            for instance in reservation.instances:
                if wanted_ids and instance.id not in wanted_ids:
                    continue
                item = self._instance_metadata(at, instance)
                if _matches(item, filters):
                    items.append(item)
        missing = wanted_ids - {item["InstanceId"] for item in items}
        if missing and not filters:
            raise EmulatedError("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(sorted(missing))}' "
                                                              "do not exist")
        return _page(items, params, "InstanceImageMetadata")

    def _instance_metadata(self, at: Place, instance) -> dict:
        tags = self._tags(at, instance.id)
        return {"InstanceId": instance.id, "InstanceType": instance.instance_type,
                "LaunchTime": _aware(instance.launch_time), "AvailabilityZone": instance.placement.zone,
                "State": {"Code": instance._state.code, "Name": instance._state.name},
                "OwnerId": at.account, "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
                "ImageMetadata": self._image_metadata(at, instance.image_id)}

    def _image_metadata(self, at: Place, image_id: str) -> dict:
        """The image an instance runs: its own account's or one shared with it by another."""
        ami = self._find_ami(at, image_id)
        if ami is None:
            # AWS keeps describing the image an instance was launched from after it is deregistered
            gone = [self.region(Place(account, at.region)).gone.get(image_id) for account in sorted(self._accounts)]
            return dict(next((known for known in gone if known), {"ImageId": image_id, "State": "deregistered"}))
        state = self.region(self._owner(at, image_id))
        metadata = {"ImageId": ami.id, "Name": ami.name or "", "OwnerId": ami.owner_id, "State": ami.state,
                    "CreationDate": _creation(ami), "IsPublic": bool(getattr(ami, "is_public", False))}
        if ami.owner_alias:
            metadata["ImageOwnerAlias"] = ami.owner_alias
        if image_id in state.deprecation:
            metadata["DeprecationTime"] = _iso(state.deprecation[image_id])
        return metadata

    # --- Allowed AMIs ------------------------------------------------------------------------------------------
    def _get_allowed(self, at: Place, params: dict) -> dict:
        return copy.deepcopy(self.region(at).allowed)

    def _enable_allowed(self, at: Place, params: dict) -> dict:
        state = params.get("AllowedImagesSettingsState")
        if state not in ("enabled", "audit-mode"):
            raise EmulatedError("InvalidParameterValue", "AllowedImagesSettingsState must be enabled or audit-mode")
        self.region(at).allowed["State"] = state
        return {"AllowedImagesSettingsState": state}

    def _replace_criteria(self, at: Place, params: dict) -> dict:
        criteria = params.get("ImageCriteria") or []
        if len(criteria) > 10:
            raise EmulatedError("InvalidParameterValue", "Allowed AMIs takes at most 10 image criteria")
        self.region(at).allowed["ImageCriteria"] = copy.deepcopy(criteria)
        return {"ReturnValue": True}

    def _disable_allowed(self, at: Place, params: dict) -> dict:
        self.region(at).allowed["State"] = "disabled"
        return {"AllowedImagesSettingsState": "disabled"}


# --- helpers ---------------------------------------------------------------------------------------------------

def _creation(ami) -> str:
    created = _aware(ami.creation_date)
    return _iso(created) if created else str(ami.creation_date or "")


def _snapshot_ids(ami) -> list[str]:
    snapshot = getattr(ami, "ebs_snapshot", None)
    return [snapshot.id] if snapshot is not None else []


def _page(items: list[dict], params: dict, key: str) -> dict:
    """One page of ``items`` as AWS pages them: MaxResults (default DEFAULT_PAGE) and an opaque NextToken."""
    size = params.get("MaxResults") or DEFAULT_PAGE
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(str(token).removeprefix("emulated-"))
        except ValueError:
            raise EmulatedError("InvalidNextToken", "The NextToken is not valid") from None
    page = {key: items[start:start + size]}
    if start + size < len(items):
        page["NextToken"] = f"emulated-{start + size}"
    return page


def _matches(item: dict, filters: dict[str, set[str]]) -> bool:
    """DescribeInstanceImageMetadata's filters (the ones its documentation lists)."""
    for name, values in filters.items():
        if name == "instance-state-name":
            have = {item["State"]["Name"]}
        elif name == "instance-id":
            have = {item["InstanceId"]}
        elif name == "instance-type":
            have = {item["InstanceType"]}
        elif name == "availability-zone":
            have = {item["AvailabilityZone"]}
        elif name == "owner-id":
            have = {item["OwnerId"]}
        elif name.startswith("tag:"):
            have = {tag["Value"] for tag in item["Tags"] if tag["Key"] == name[4:]}
        else:
            raise EmulatedError("InvalidParameterValue", f"The filter '{name}' is invalid")
        if not have & values:
            return False
    return True
