"""The AWS layer: the one place that creates boto3 clients, pages through listings and turns
botocore's exceptions into one-sentence domain errors.

Credentials, region and endpoint come from boto3's standard chain (AWS_PROFILE, instance roles,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL…); nothing here overrides it.

Every function that calls AWS declares the IAM actions it needs with ``@requires(...)`` next to its
code (as Cloud Custodian's actions do), so ``amibot iam-policy`` can generate the policy and a test can
check it against both the committed iam-policy.json and the calls the code really makes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.parsers import ResponseParserError

from bot.errors import AwsDenied, AwsError, NotFound, Unsupported

log = logging.getLogger(__name__)

# action -> the functions that need it; filled by @requires at import time
PERMISSIONS: dict[str, set[str]] = {}

DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
                "AuthFailure", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"}
UNSUPPORTED_CODES = {"NotImplemented", "InvalidAction", "UnsupportedOperation", "UnknownOperationException"}
NOT_FOUND_SUFFIXES = (".NotFound", ".Unavailable", ".Malformed")

SERVICE_PREFIX = {"ec2": "ec2", "autoscaling": "autoscaling", "ssm": "ssm", "sts": "sts", "rbin": "rbin"}


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


def requires(*actions: str) -> Callable:
    """Declare the IAM actions a function needs (e.g. "ec2:DescribeImages")."""

    def mark(function: Callable) -> Callable:
        for action in actions:
            PERMISSIONS.setdefault(action, set()).add(f"{function.__module__}.{function.__qualname__}")
        function.iam_actions = actions
        return function

    return mark


def iam_policy() -> dict[str, Any]:
    """The least-privilege policy document for everything the bot's code declares."""
    from bot.services import load_all

    load_all()  # every module that declares permissions

    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "Amibot", "Effect": "Allow", "Action": sorted(PERMISSIONS), "Resource": "*"}],
    }


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


class Aws:
    """Per-region boto3 clients, created lazily and reused (clients are thread-safe, sessions are not)."""

    def __init__(self, regions: list[str] | None = None, session: boto3.session.Session | None = None):
        self._session = session or boto3.session.Session()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, int], Any] = {}
        self._account_id: str | None = None
        self._configured_regions = list(regions or [])
        # observer(service, operation, error class or None) after every API call, e.g. the app's metrics.
        # Hooked on each client this object makes (not on the session, which callers may share between apps).
        self.observers: list[Callable[[str, str, str | None], None]] = []

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
            if key not in self._clients:
                client = self._session.client(service, region_name=region, config=_retry_config(max_attempts))
                client.meta.events.register("after-call", self._after_call)
                client.meta.events.register("after-call-error", self._after_call_error)
                self._clients[key] = client
            return self._clients[key]

    def ec2(self, region: str | None = None):
        return self.client("ec2", region)

    @requires("sts:GetCallerIdentity")
    def account_id(self) -> str:
        """The caller's account: snapshots are filtered by it (describe_snapshots' OwnerIds is not enough)."""
        if self._account_id is None:
            with translate("sts", "GetCallerIdentity"):
                self._account_id = self.client("sts").get_caller_identity()["Account"]
        return self._account_id

    def each_region(self, function: Callable[[str], Any], regions: list[str] | None = None) -> dict[str, Any]:
        """Run function(region) for every region in parallel; return {region: result or AwsError}."""
        regions = regions or self.regions
        if len(regions) == 1:
            return {regions[0]: _capture(function, regions[0])}
        with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
            futures = {region: pool.submit(_capture, function, region) for region in regions}
            return {region: future.result() for region, future in futures.items()}


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


def paginate(client, operation: str, result_key: str, **kwargs) -> Iterator[dict]:
    """Yield every item of a Describe*/List* listing, page by page, with errors translated."""
    service = client.meta.service_model.service_name
    with translate(service, _api_name(client, operation), region=client.meta.region_name):
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(result_key, [])


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
        log.warning("AWS %s failed in %s: %r", self.action, self.region, error)
        raise translated from error

    def translate(self, error: Exception) -> Exception | None:
        where = f" in {self.region}" if self.region else ""
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "") or code
            if code in DENIED_CODES:
                return AwsDenied(f"AWS denied {self.action}{where} — check the bot's IAM role", code, self.action)
            if code in UNSUPPORTED_CODES or "implemented" in message.lower():  # moto: "Not yet implemented"
                return Unsupported(f"this AWS endpoint does not support {self.action}", code, self.action)
            if code.endswith(NOT_FOUND_SUFFIXES) and self.resource:
                return NotFound(f"{self.resource} not found{where}")
            if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded"):
                return AwsError(f"AWS is throttling {self.action}{where}; try again in a minute", code, self.action)
            return AwsError(f"AWS refused {self.action}{where}: {message.rstrip('.')}", code, self.action)
        if isinstance(error, NotImplementedError | ResponseParserError):
            # moto raises NotImplementedError in-process and answers HTTP 500 as a server.
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


def call(client, operation: str, resource: str | None = None, **kwargs) -> dict:
    """Call one AWS operation with errors translated, e.g. call(ec2, "deregister_image", ImageId=...)."""
    api_name = _api_name(client, operation)
    with translate(client.meta.service_model.service_name, api_name, region=client.meta.region_name,
                   resource=resource):
        return getattr(client, operation)(**kwargs)


def _api_name(client, operation: str) -> str:
    try:
        return _operation_name(client, operation)
    except ValueError:
        return operation
