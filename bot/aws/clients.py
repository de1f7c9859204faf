"""The AWS layer: the one place that creates boto3 clients, pages through listings and turns
botocore's exceptions into one-sentence domain errors.

Credentials, region and endpoint come from boto3's standard chain (AWS_PROFILE, instance roles,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL…); nothing here overrides it.

Every function that calls AWS declares the IAM actions it needs with ``@requires(...)`` next to its
code (as Cloud Custodian's actions do), so ``amibot iam-policy`` can generate the policy and a test can
check it against both the committed iam-policy.json and the calls the code really makes.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.parsers import ResponseParserError

from bot.aws.lean_botocore import lighten, share_session_parts
from bot.core import authority
from bot.core.accounts import HOME, Account
from bot.core.errors import AwsDenied, AwsError, NotFound, Unsupported

log = logging.getLogger(__name__)

# action -> the functions that need it; filled by @requires when a module is imported (bot/iam_policy.py
# imports every module that declares any, and generates the policies)
PERMISSIONS: dict[str, set[str]] = {}
# action -> the resource patterns declared for it (None: every resource)
RESOURCES: dict[str, set[str | None]] = {}

DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
                "AuthFailure", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"}
UNSUPPORTED_CODES = {"NotImplemented", "InvalidAction", "UnsupportedOperation", "UnknownOperationException"}
NOT_FOUND_SUFFIXES = (".NotFound", ".Unavailable", ".Malformed")

SERVICE_PREFIX = {"ec2": "ec2", "autoscaling": "autoscaling", "ssm": "ssm", "sts": "sts", "rbin": "rbin",
                  "organizations": "organizations"}


def error_class(code: str | None, status: int = 400) -> str:
    """A failed call's error as one of a few classes (bounded, for metrics): throttled, denied, not_found,
    unsupported, invalid (another client error) or server."""
    code = code or ""
    if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException") \
            or status == 429:
        return "throttled"
    if code in DENIED_CODES:
        return "denied"
    if code in UNSUPPORTED_CODES:
        return "unsupported"
    if code.endswith("NotFound"):  # InvalidAMIID.NotFound, ResourceNotFound…
        return "not_found"
    return "server" if status >= 500 else "invalid"


def requires(*actions: str, resource: str | None = None) -> Callable:
    """Declare the IAM actions a function needs (e.g. "ec2:DescribeImages"), and, where amibot knows what it acts
    on, the resource: an ARN pattern with placeholders bot/iam_policy.py fills in from the policy file
    ("arn:{partition}:ssm:*:*:parameter/amibot/*", "arn:{partition}:s3:::{anchor_bucket}", "{assumed_role}").
    Without one the action is granted on every resource; one function that declares an action without a resource
    keeps it so, whatever others declare (an action is only ever narrowed to what every caller needs)."""

    def mark(function: Callable) -> Callable:
        for action in actions:
            PERMISSIONS.setdefault(action, set()).add(f"{function.__module__}.{function.__qualname__}")
            RESOURCES.setdefault(action, set()).add(resource)
        function.iam_actions = actions
        return function

    return mark


# A hung endpoint must not hold a job's worker for long: one API call takes at most
# MAX_ATTEMPTS x (CONNECT_TIMEOUT + READ_TIMEOUT) plus botocore's backoff between attempts (under 1 + 2 + 4 s),
# 4 x 18 + 7 = 79 s, inside a command's 120 s deadline ([jobs].deadline_seconds). The read timeout is the wait
# for the next bytes of an answer, not for the whole answer, so long listings still page through.
CONNECT_TIMEOUT, READ_TIMEOUT, MAX_ATTEMPTS = 3, 15, 4


def _retry_config(max_attempts: int = MAX_ATTEMPTS) -> Config:
    # Adaptive mode adds client-side rate limiting on throttling, which matters with thousands of AMIs.
    # Callers may ask for fewer attempts (a probe: 1), never for more than the worst case above allows.
    return Config(retries={"mode": "adaptive", "max_attempts": max(1, min(max_attempts, MAX_ATTEMPTS))},
                  connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                  # many AWS jobs at once ([jobs].workers), each paging or fanning out over a shared client
                  max_pool_connections=64)


@dataclass(frozen=True)
class Target:
    """Where a piece of work runs: one account and one region. `account.id` is "" for the bot's own account
    when no accounts are configured."""

    account: Account
    region: str

    @property
    def label(self) -> str:
        return f"{self.account.label}, {self.region}" if self.account.id else self.region


class Aws:
    """boto3 clients for one account, created lazily and reused (clients are thread-safe, sessions are not).

    Without `account`, the bot's own account (its credentials from boto3's chain); an AwsAccounts makes one for each
    managed account, with botocore's own refreshable assume-role credentials (`assumed_session`). Clients are keyed
    (service, region, attempts), so there is one client per (account, region, service)."""

    def __init__(self, regions: list[str] | None = None, session: boto3.session.Session | None = None,
                 *, account: Account = HOME, observers: list[Callable[[str, str, str | None], None]] | None = None):
        self._session = session or boto3.session.Session()
        lighten(self._session._session)
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, int], Any] = {}
        self._account_id: str | None = account.id or None
        self._configured_regions = list(regions or [])
        self.account = account
        # Errors and log lines about this account's calls name it (its AwsAccounts sets this when there are accounts)
        self.named = False
        # used(handle, region) after each client this handle hands out: its AwsAccounts keeps account-regions' clients
        # least recently used first (AwsAccounts.max_cached_account_regions)
        self.used: Callable[[Aws, str], None] | None = None
        # observer(service, operation, error class or None) after every API call, e.g. the app's metrics.
        # Hooked on each client this object makes (not on the session, which callers may share between apps).
        self.observers: list[Callable[[str, str, str | None], None]] = observers if observers is not None else []


    @property
    def session(self) -> boto3.session.Session:
        """The boto3 session this account's clients come from (the playground installs its emulation on it)."""
        return self._session

    def _authorized_only(self, model=None, **_: Any) -> None:
        # A user's action may change only the accounts it has authorized (bot/core/authority.py): checked at the
        # last moment before the request leaves, so no path can go around it.
        authority.guard(self.account.id, self.account.label if self.account.id else "", model.name)

    def _after_call(self, event_name: str = "", http_response=None, parsed=None, **_: Any) -> None:
        status = getattr(http_response, "status_code", 200)
        code = ((parsed or {}).get("Error") or {}).get("Code") if status >= 300 else None
        self._observe(event_name, error_class(code, status) if status >= 300 else None)

    def _after_call_error(self, event_name: str = "", **_: Any) -> None:
        self._observe(event_name, "unreachable")  # no answer at all: connection, timeout, TLS

    def _observe(self, event_name: str, error: str | None) -> None:
        # event_name is "after-call.<service id>.<Operation>"; "auto-scaling" reads as IAM's "autoscaling"
        _, service, operation = (event_name.split(".", 2) + ["?", "?"])[:3]
        for observer in self.observers:
            try:
                observer(service.replace("-", ""), operation, error)
            except Exception:  # watching must never break the call
                log.exception("AWS call observer failed")

    @property
    def default_region(self) -> str:
        region = self._session.region_name
        if not region:
            raise AwsError("no AWS region configured: set AWS_DEFAULT_REGION or [aws].regions in the policy file")
        return region

    @property
    def regions(self) -> list[str]:
        return self._configured_regions or [self.default_region]

    def client(self, service: str, region: str | None = None, max_attempts: int = 6):
        region = region or self.default_region
        key = (service, region, max_attempts)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session.client(service, region_name=region, config=_retry_config(max_attempts))
                # errors and log lines about this client's calls name the account too (when there are many)
                client._amibot_account = self.account.label if self.account.id and self.named else ""
                client.meta.events.register("before-call", self._authorized_only)
                client.meta.events.register("after-call", self._after_call)
                client.meta.events.register("after-call-error", self._after_call_error)
                self._clients[key] = client
        if self.used is not None:  # outside the lock: the fleet may release this handle's least recent region
            self.used(self, region)
        return client

    def ec2(self, region: str | None = None):
        return self.client("ec2", region)

    def release(self, region: str) -> None:
        """Forget this account's clients in `region`. For a one-shot batch (`amibot digest` over an organisation)
        that is done with an account-region: its clients would only hold memory until the process exits. A
        later call simply makes a new one."""
        with self._lock:
            for key in [key for key in self._clients if key[1] == region]:
                del self._clients[key]

    def prepare(self, services: tuple[str, ...]) -> None:
        """Make this account's client of each service in its first region now (no AWS call), which builds the
        services' shared models and client classes: a batch that then freezes the garbage collector's view
        (`amibot digest`) keeps these large, long-lived structures out of every later collection."""
        try:
            region = self.regions[0]
        except AwsError:
            return  # no region configured: the work that follows says so, in one line
        for service in services:
            self.client(service, region)

    @requires("sts:GetCallerIdentity")
    def account_id(self) -> str:
        """The caller's account: snapshots are filtered by it (describe_snapshots' OwnerIds is not enough)."""
        if self._account_id is None:
            with translate("sts", "GetCallerIdentity"):
                self._account_id = self.client("sts").get_caller_identity()["Account"]
        return self._account_id

    @requires("sts:GetCallerIdentity")
    def verify(self) -> str:
        """Call AWS as this account (for an assumed one: assume its role) and return the account id AWS
        answers; raise AwsError when the role cannot be assumed or lands in another account than configured."""
        with translate("sts", "GetCallerIdentity"):
            answered = self.client("sts").get_caller_identity()["Account"]
        if self.account.id and answered != self.account.id:
            raise AwsError(f"{self.account.label}: the role lands in account {answered}, not {self.account.id}")
        return answered

    def each_region(self, function: Callable[[str], Any], regions: list[str] | None = None) -> dict[str, Any]:
        """Run function(region) for every region of this account in parallel; return {region: result or
        AwsError}."""
        regions = regions or self.regions
        if len(regions) == 1:
            return {regions[0]: _capture(function, regions[0])}
        with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
            futures = {region: pool.submit(contextvars.copy_context().run, _capture, function, region)
                       for region in regions}
            return {region: future.result() for region, future in futures.items()}



class AwsAccounts:
    """The accounts amibot works in: the bot's own (`home`, an Aws) and, with `[[accounts]]` or `[organization]`,
    one Aws handle per managed account (`manage()`). `of(account)` returns one, `handles()` lists them,
    `targets()` and `each_target()` fan out over accounts × regions in one bounded pool.

    `max_cached_account_regions` bounds how many account-regions keep their clients between uses (the app, so
    `amibot serve` and `socket`: [aws].max_cached_account_regions; never fewer than `max_concurrency`): when one
    more is used, the least recently used one's clients are released, and made again when it is next needed. A
    50-account bot in two regions would otherwise keep ~600 clients for good. None keeps them until released
    (`amibot digest` releases each account-region itself when it is done with it)."""

    def __init__(self, home: Aws, *, max_concurrency: int = 16, max_cached_account_regions: int | None = None):
        self.home = home
        self.max_concurrency = max_concurrency
        self.max_cached_account_regions = max_cached_account_regions
        self._lock = threading.Lock()
        self._handles: dict[str, Aws] = {}  # account id -> handle; empty: single-account
        self._through: dict[str, Aws] = {}  # role ARN -> handle, for work outside the managed accounts (through())
        self._recent: OrderedDict[tuple[Aws, str], None] = OrderedDict()  # account-regions, least recently used first
        # With [organization]: the active members it leaves out (`exclude`), known once the organisation has
        # been listed; None until then (or without an organisation): who else an organisation share reaches
        # is then not known
        self.unmanaged_members: list[str] | None = None
        home.used = self._used

    @property
    def observers(self) -> list[Callable[[str, str, str | None], None]]:
        """Called after every API call of every account (one list, shared by the handles)."""
        return self.home.observers

    @property
    def regions(self) -> list[str]:
        """The bot's own regions: [aws].regions, else its session's region."""
        return self.home.regions

    @property
    def accounts(self) -> list[Account]:
        """The managed accounts; empty when none are configured (the bot's own account only)."""
        return [handle.account for handle in self.handles()] if self._handles else []

    @property
    def many(self) -> bool:
        """More than one account: listings and messages show which account each item is in."""
        return len(self._handles) > 1

    def manage(self, accounts: list[Account], max_concurrency: int | None = None) -> None:
        """Set (or, after an organisation refresh, replace) the managed accounts. Handles of accounts that stay
        (same role) keep their clients and credentials."""
        home = self.home
        if max_concurrency:
            self.max_concurrency = max_concurrency
        with self._lock:
            old = self._handles
            handles: dict[str, Aws] = {}
            for account in accounts:
                kept = old.get(account.id)
                if kept is not None and kept.account == account:
                    handles[account.id] = kept
                elif account.role_arn is None:  # the bot's own account: its credentials, this handle
                    home.account, home._account_id = account, account.id
                    handles[account.id] = home
                else:
                    regions = list(account.regions) or home._configured_regions
                    handle = Aws(regions, assumed_session(home._session, account), account=account,
                                 observers=home.observers)
                    handle.used = self._used
                    handles[account.id] = handle
            for handle in handles.values():
                handle.named = True
            home.named = bool(handles) and bool(home.account.id)
            self._handles = handles
        self._forget_unmanaged(set(map(id, handles.values())) | {id(home)})

    def through(self, role_arn: str, name: str) -> Aws:
        """A handle in the account of `role_arn`, through that role, for work that is not a managed account's
        (listing the organisation from its management account): made once and kept, so its credentials are
        renewed, not assumed again, at each use."""
        with self._lock:
            handle = self._through.get(role_arn)
            if handle is None:
                account = Account(role_arn.split(":")[4], name, role_arn)
                handle = Aws(self.home._configured_regions, assumed_session(self.home._session, account),
                             account=account, observers=self.home.observers)
                handle.named = True
                self._through[role_arn] = handle
        return handle

    def handles(self) -> list[Aws]:
        """One handle per managed account, or [the home handle] when none are configured."""
        with self._lock:
            return list(self._handles.values()) or [self.home]

    def of(self, account: Account | str | None) -> Aws:
        """The handle for an account (an Account, an id or a name; None or "": the bot's own account).
        Raises NotFound for an account amibot does not manage."""
        if account is None or account == "" or (isinstance(account, Account) and not account.id):
            return self.home
        ref = account.id if isinstance(account, Account) else str(account)
        for handle in self.handles():
            if handle.account.matches(ref) or handle._account_id == ref:
                return handle
        if not self._handles:
            return self.home  # single-account: every image the bot sees is its own
        known = ", ".join(handle.account.label for handle in self.handles() if handle.account.id)
        raise NotFound(f"account {ref} is not one amibot manages" + (f" (it manages {known})" if known else ""))

    def select(self, ref: str | None) -> list[Aws]:
        """The handles a command's `--account NAME|ID` names: that one, or every managed account without it.
        Raises NotFound (listing the managed accounts) for one amibot does not manage."""
        if ref and self._handles:
            return [self.of(ref)]
        if ref:
            raise NotFound(f"no accounts are configured, so `--account {ref[:40]}` names nothing: amibot works in "
                           "the account its own credentials belong to ([[accounts]] in the policy file adds more)")
        return self.handles()

    def targets(self, accounts: list[Account] | None = None, regions: list[str] | None = None) -> list[Target]:
        """Every (account, region) to work in: each managed account's regions, or `regions` when given."""
        handles = [self.of(account) for account in accounts] if accounts else self.handles()
        return [Target(handle.account, region) for handle in handles for region in (regions or handle.regions)]

    def each_target(self, function: Callable[[Aws, str], Any], targets: list[Target] | None = None,
                    on_result: Callable[[Target, Any], None] | None = None) -> dict[Target, Any]:
        """Run function(handle, region) for every target in one pool of at most [aws].max_concurrency;
        return {target: result or AwsError}. An account's error names the account. `on_result(target, result)`
        is called as each one finishes (in the calling thread), so callers can reduce as results arrive."""
        targets = self.targets() if targets is None else targets

        def run(target: Target) -> Any:
            handle = self.of(target.account)
            try:
                return function(handle, target.region)
            except AwsError as error:
                return in_account(error, target.account) if self.many else error

        results: dict[Target, Any] = {}
        if len(targets) <= 1:
            for target in targets:
                results[target] = run(target)
                if on_result:
                    on_result(target, results[target])
            return results
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(targets))) as pool:
            # each in a copy of this thread's context: the acting user's authority goes along (bot/core/authority.py)
            futures = {pool.submit(contextvars.copy_context().run, run, target): target for target in targets}
            for future in as_completed(futures):
                target = futures[future]
                results[target] = future.result()
                if on_result:
                    on_result(target, results[target])
        return {target: results[target] for target in targets}  # in the order asked

    # --- how long clients live ------------------------------------------------------------------------------

    def _used(self, handle: Aws, region: str) -> None:
        """A handle handed out a client in `region`: that account-region is now the most recently used; beyond
        the cap, the least recently used ones' clients are released (a caller still holding one keeps it)."""
        cap = self.max_cached_account_regions
        if cap is None:
            return
        cap = max(cap, self.max_concurrency)  # never fewer than the account-regions a fan-out works in at once
        key = (handle, region)
        with self._lock:
            self._recent[key] = None
            self._recent.move_to_end(key)
            evicted = [self._recent.popitem(last=False)[0] for _ in range(len(self._recent) - cap)]
        for old, old_region in evicted:
            old.release(old_region)

    def _forget_unmanaged(self, managed: set[int]) -> None:
        with self._lock:
            gone = [key for key in self._recent if id(key[0]) not in managed]
            for key in gone:
                del self._recent[key]

    @property
    def cached_account_regions(self) -> list[tuple[str, str]]:
        """(account id, region) of the account-regions whose clients are kept, least recently used first (only
        counted with a cap)."""
        with self._lock:
            return [(handle.account.id, region) for handle, region in self._recent]


def in_account(error: AwsError, account: Account) -> AwsError:
    """The same error, its message naming the account (once)."""
    if not account.id or account.label in error.message:
        return error
    named = type(error)(f"{account.label}: {error.message}", error.code, error.operation)
    named.__cause__ = error
    return named


@requires("sts:AssumeRole", resource="{assumed_role}")
def assumed_session(source: boto3.session.Session, account: Account) -> boto3.session.Session:
    """A session in `account` through its role, with botocore's refreshable assume-role credentials (renewed
    before they expire, thread-safe). Nothing is called until the first request; a role that cannot be assumed
    fails that request with an AwsDenied naming the account and the role."""
    source_core = source._session  # botocore's session: its client factory honours AWS_ENDPOINT_URL and proxies
    region = source.region_name

    def sts_client(service: str, **kwargs: Any):
        return source_core.create_client(service, region_name=region, config=_retry_config(), **kwargs)

    extra: dict[str, Any] = {"RoleSessionName": "amibot"}
    if account.external_id:
        extra["ExternalId"] = account.external_id
    fetcher = AssumeRoleCredentialFetcher(client_creator=sts_client, source_credentials=source_core.get_credentials(),
                                          role_arn=account.role_arn, extra_args=extra)

    def refresh() -> dict[str, Any]:
        try:
            return fetcher.fetch_credentials()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "") or code
            raise AwsDenied(f"cannot assume {account.role_arn} for {account.label}: {message.rstrip('.')}",
                            code, "sts:AssumeRole") from error
        except (BotoCoreError, ValueError, TypeError) as error:
            raise AwsDenied(f"cannot assume {account.role_arn} for {account.label}: {error}", None,
                            "sts:AssumeRole") from error

    core = botocore.session.Session()
    core._credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")
    session = boto3.session.Session(botocore_session=core, region_name=region)
    # One parsed copy of each service model and of the endpoint data for every account, not one per account.
    # After boto3's Session: it adds its data directory to the loader it finds, and the shared one has it already.
    share_session_parts(source_core, core)
    return session


def first_found(aws: Aws, lookup: Callable[[str], Any], regions: list[str], not_found: str) -> Any:
    """Run lookup(region) in every region; the first non-None result wins. With none: re-raise a region's
    AwsError if any failed (the answer may be there), else NotFound(not_found)."""
    results = aws.each_region(lookup, regions)
    for result in results.values():
        if result is not None and not isinstance(result, AwsError):
            return result
    failures = [result for result in results.values() if isinstance(result, AwsError)]
    if failures:
        raise failures[0]
    raise NotFound(not_found)


def _capture(function: Callable[[str], Any], region: str) -> Any:
    try:
        return function(region)
    except AwsError as error:
        return error


# What identifies one item of a listing (by its result key). Pages that repeat items (an endpoint's paging going
# round, a replayed token) must not make 3,000 images read as 12,000: each item is yielded once. An item without
# its identity is passed on as it is (its reader skips it or reports it unknown).
ITEM_KEYS: dict[str, tuple[str, ...]] = {
    "Images": ("ImageId",), "Snapshots": ("SnapshotId",), "Reservations": ("ReservationId",),
    "InstanceImageMetadata": ("InstanceId",), "LaunchTemplateVersions": ("LaunchTemplateId", "VersionNumber"),
    "AutoScalingGroups": ("AutoScalingGroupName",), "LaunchConfigurations": ("LaunchConfigurationName",),
    "Fleets": ("FleetId",), "SpotFleetRequestConfigs": ("SpotFleetRequestId",), "Parameters": ("Name",),
    "imageRecipeSummaryList": ("arn",), "ImageReferences": ("ImageId", "ResourceType", "Arn"),
    "ImageUsageReports": ("ReportId",), "Accounts": ("Id",), "Rules": ("Identifier",), "Contents": ("Key",),
}


def paginate(client, operation: str, result_key: str, **kwargs) -> Iterator[dict]:
    """Yield every item of a Describe*/List* listing, page by page, once each (ITEM_KEYS), errors translated."""
    service = client.meta.service_model.service_name
    keys, seen, repeated = ITEM_KEYS.get(result_key), set(), 0
    with translate(service, _api_name(client, operation), region=_where(client)):
        for page in client.get_paginator(operation).paginate(**kwargs):
            for item in page.get(result_key, []):
                identity = _identity(item, keys) if keys else None
                if identity is not None:
                    if identity in seen:
                        repeated += 1
                        continue
                    seen.add(identity)
                yield item
    if repeated:
        log.warning("AWS %s in %s repeated %d item(s) across its pages; each was counted once", operation,
                    _where(client), repeated)


def _identity(item: Any, keys: tuple[str, ...]) -> tuple | None:
    if not isinstance(item, dict):
        return None
    identity = tuple(item.get(key) for key in keys)
    return identity if all(isinstance(value, str | int) for value in identity) else None


def _where(client) -> str:
    """Where a client's calls go, for messages: "us-east-1", or "prod (111111111111), us-east-1"."""
    account = getattr(client, "_amibot_account", "")
    return f"{account}, {client.meta.region_name}" if account else client.meta.region_name


def _operation_name(client, python_name: str) -> str:
    for name in client.meta.service_model.operation_names:
        if _snake(name) == python_name:
            return name
    raise ValueError(f"{python_name} is not an operation of {client.meta.service_model.service_name}")


def _snake(name: str) -> str:
    from botocore import xform_name

    return xform_name(name)


class translate:
    """Context manager: botocore exceptions in, one-sentence AmibotErrors out.

    `resource` (e.g. an AMI id) lets a not-found error name what was not found.
    """

    def __init__(self, service: str, operation: str, region: str | None = None, resource: str | None = None):
        self.action = f"{SERVICE_PREFIX.get(service, service)}:{operation}"
        self.region = region
        self.resource = resource

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or not isinstance(error, Exception):
            return False
        if isinstance(error, AwsError | NotFound):
            return False
        translated = self.translate(error)
        if translated is None:
            return False
        # a global service's call (STS, Organizations) may have no region: then the line names none
        log.warning("AWS %s failed%s: %r", self.action, f" in {self.region}" if self.region else "", error)
        raise translated from error

    def translate(self, error: Exception) -> Exception | None:
        where = f" in {self.region}" if self.region else ""
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "") or code
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400
            kind = error_class(code, status)  # the metrics' class, so what is said and what is counted agree
            if kind == "denied":
                return AwsDenied(f"AWS denied {self.action}{where} — check the bot's IAM role", code, self.action)
            if kind == "unsupported" or "implemented" in message.lower():  # moto: "Not yet implemented"
                return Unsupported(f"this AWS endpoint does not support {self.action}", code, self.action)
            if code.endswith(NOT_FOUND_SUFFIXES) and self.resource:
                return NotFound(f"{self.resource} not found{where}")
            if kind == "throttled":
                return AwsError(f"AWS is throttling {self.action}{where}; try again in a minute", code, self.action)
            if kind == "server":  # AWS failed, it did not refuse: the same call may well work in a minute
                return AwsError(f"AWS had an internal error on {self.action}{where} ({message.rstrip('.')}); "
                                "try again in a minute", code, self.action)
            return AwsError(f"AWS refused {self.action}{where}: {message.rstrip('.')}", code, self.action)
        if isinstance(error, ResponseParserError) and not _web_page(error):
            # an empty or cut-short body (bot.aws.lean_botocore notes which): AWS answered, but nothing can be read
            return AwsError(f"AWS sent an unreadable answer to {self.action}{where} (empty or cut short); "
                            "try again in a minute", "UnreadableAnswer", self.action)
        if isinstance(error, NotImplementedError | ResponseParserError):
            # moto raises NotImplementedError in-process and, as a server, answers with an HTTP 500 web page.
            return Unsupported(f"this AWS endpoint does not support {self.action}", "NotImplemented", self.action)
        if isinstance(error, NoCredentialsError):
            return AwsDenied("no AWS credentials found: give the bot an IAM role or set AWS_PROFILE", None,
                             self.action)
        if isinstance(error, NoRegionError):
            return AwsError("no AWS region configured: set AWS_DEFAULT_REGION or [aws].regions")
        if isinstance(error, EndpointConnectionError):
            return AwsError(f"cannot reach AWS{where} for {self.action}; is the region right?", None, self.action)
        if isinstance(error, BotoCoreError):
            return AwsError(f"AWS call {self.action}{where} failed: {error}", None, self.action)
        return None


def _web_page(error: ResponseParserError) -> bool:
    """Whether the unreadable answer was an HTTP 5xx web page rather than an AWS answer: what an endpoint without
    the API sends (moto's server). Noted on the error by bot.aws.lean_botocore; else read from botocore's message."""
    noted = getattr(error, "web_page", None)
    if noted is not None:
        return noted
    text = str(error).lower()
    return "<!doctype html" in text or "<html" in text


def call(client, operation: str, resource: str | None = None, **kwargs) -> dict:
    """Call one AWS operation with errors translated, e.g. call(ec2, "deregister_image", ImageId=...)."""
    api_name = _api_name(client, operation)
    with translate(client.meta.service_model.service_name, api_name, region=_where(client),
                   resource=resource):
        return getattr(client, operation)(**kwargs)


def _api_name(client, operation: str) -> str:
    try:
        return _operation_name(client, operation)
    except ValueError:
        return operation
