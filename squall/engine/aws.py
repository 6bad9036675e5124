"""The one narrow door to AWS: boto3 clients with retries, error codes, waits.

Credentials, profile and endpoint come from boto3's usual sources (``AWS_PROFILE``,
``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, …); the region is passed in by the caller, who
lets the cluster file win over the environment.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import botocore.parsers
from botocore.config import Config

from squall.errors import SquallError

T = TypeVar("T")

# Throttling (RequestLimitExceeded, Throttling, PriorRequestNotComplete) is retried by botocore
# itself; adaptive mode also slows the client down when AWS pushes back.
DEFAULT_MAX_ATTEMPTS = 10

# Right after a create, other calls may not see the new resource yet.
EVENTUAL_NOT_FOUND = frozenset(
    {
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidInstanceID.NotFound",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidNetworkInterfaceID.NotFound",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
    }
)

# A delete that waits for something else to go first.
STILL_IN_USE = frozenset(
    {
        "DependencyViolation",
        "ResourceInUse",
        "ResourceInUseException",
        "InvalidGroup.InUse",
        "ScalingActivityInProgress",
        "InvalidIPAddress.InUse",
        "VolumeInUse",
    }
)


class AwsError(SquallError):
    """AWS refused or could not be reached; the message names the call and the fix."""


_HINTS = {
    "AccessDenied": "the credentials lack an IAM permission; grant it or use another profile",
    "AccessDeniedException": "the credentials lack an IAM permission; grant it or use another profile",
    "UnauthorizedOperation": "the credentials lack an IAM permission; grant it or use another profile",
    "AuthFailure": "AWS rejected the credentials; check AWS_PROFILE or AWS_ACCESS_KEY_ID",
    "InvalidClientTokenId": "AWS rejected the credentials; check AWS_PROFILE or AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "AWS rejected the secret key; check AWS_SECRET_ACCESS_KEY",
    "ExpiredToken": "the session token expired; log in again (e.g. aws sso login)",
    "RequestExpired": "the session token expired or the clock is off; log in again",
    "NoSuchHostedZone": "check dns_zone_id in the cluster file",
    "OptInRequired": "the account is not subscribed to this service or region",
    "VcpuLimitExceeded": "raise the EC2 vCPU quota or choose smaller instance types",
    "InstanceLimitExceeded": "raise the EC2 instance quota or choose fewer instances",
    "VpcLimitExceeded": "the region's VPC quota is used up; delete an unused VPC or raise it",
    "InsufficientInstanceCapacity": "AWS has no capacity for this type now; retry or change type",
}


def code(err: BaseException) -> str:
    if isinstance(err, botocore.exceptions.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    if isinstance(err, botocore.exceptions.WaiterError):
        # A waiter gives up on any error its acceptors do not name, NotFound included.
        last = err.last_response if isinstance(err.last_response, dict) else {}
        return str(last.get("Error", {}).get("Code", ""))
    return ""


def message(err: BaseException) -> str:
    if isinstance(err, botocore.exceptions.ClientError):
        return str(err.response.get("Error", {}).get("Message", "")).strip()
    return str(err)


def explain(err: BaseException, doing: str) -> SquallError:
    """One line for the user: what squall was doing, what AWS said, and how to fix it."""
    if isinstance(err, SquallError):
        return err
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return AwsError(
            f"{doing}: no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(err, botocore.exceptions.ProfileNotFound):
        return AwsError(f"{doing}: {err}; check AWS_PROFILE or ~/.aws/config")
    if isinstance(err, botocore.exceptions.EndpointConnectionError):
        return AwsError(f"{doing}: cannot reach AWS ({err}); check the network or AWS_ENDPOINT_URL")
    if isinstance(err, botocore.exceptions.ClientError):
        c = code(err)
        hint = _HINTS.get(c)
        text = " ".join(message(err).split())
        return AwsError(f"{doing}: AWS said {c}: {text}" + (f"; {hint}" if hint else ""))
    if isinstance(err, botocore.exceptions.BotoCoreError):
        return AwsError(f"{doing}: {' '.join(str(err).split())}")
    return AwsError(f"{doing}: {err.__class__.__name__}: {' '.join(str(err).split())}")


class Aws:
    """boto3 clients for one region, shared by every thread of a run."""

    def __init__(
        self,
        region: str | None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_mode: str = "adaptive",
        on_call: Callable[[str], None] | None = None,
    ) -> None:
        try:
            self.session = boto3.session.Session(region_name=region)
        except botocore.exceptions.BotoCoreError as err:
            raise explain(err, "opening an AWS session") from None
        if not self.session.region_name:
            raise AwsError(
                "no AWS region: set region in the cluster file, or AWS_REGION in the environment"
            )
        self.region: str = self.session.region_name
        self._config = Config(
            # total_max_attempts counts the first attempt too; botocore's max_attempts would
            # count retries only, one more call than asked for.
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        self._clients: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._on_call = on_call

    def client(self, service: str, *, max_attempts: int | None = None) -> Any:
        """A client for ``service``; ``max_attempts`` (in all, the first one included) for
        calls not worth many retries, or, with 1, for calls botocore must never resend."""
        key = (service, max_attempts or 0)
        with self._lock:
            if key not in self._clients:
                config = self._config
                if max_attempts is not None:
                    config = config.merge(
                        Config(retries={"mode": "standard", "total_max_attempts": max_attempts})
                    )
                try:
                    c = self.session.client(service, config=config)
                except botocore.exceptions.BotoCoreError as err:
                    raise explain(err, f"opening an AWS {service} client") from None
                if self._on_call is not None:
                    hook = self._on_call
                    c.meta.events.register(
                        "before-call.*.*", lambda model, **_: hook(f"{service}:{model.name}")
                    )
                self._clients[key] = c
            return self._clients[key]

    def pages(self, service: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
        """Every item of a paginated describe/list call."""
        paginator = self.client(service).get_paginator(operation)
        out: list[Any] = []
        for page in paginator.paginate(**kwargs):
            out.extend(page.get(key, []))
        return out

    def check_credentials(self) -> str:
        """The caller's account id, or one clear line about why AWS cannot be used."""
        try:
            return str(self.client("sts").get_caller_identity()["Account"])
        except Exception as err:
            raise explain(err, "checking AWS credentials") from None


def retry(
    fn: Callable[[], T],
    *,
    codes: Iterable[str],
    timeout: float,
    first_delay: float = 0.5,
    max_delay: float = 15.0,
    on_wait: Callable[[str], None] | None = None,
) -> T:
    """Call ``fn`` until it stops failing with one of ``codes`` or ``timeout`` seconds pass."""
    wanted = frozenset(codes)
    deadline = time.monotonic() + timeout
    delay = first_delay
    while True:
        try:
            return fn()
        except (botocore.exceptions.ClientError, botocore.exceptions.WaiterError) as err:
            if code(err) not in wanted or time.monotonic() + delay > deadline:
                raise
            if on_wait is not None:
                on_wait(code(err))
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, max_delay)


def wait_for(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = 1.0,
    max_interval: float = 10.0,
) -> T:
    """Poll ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() + interval > deadline:
            raise AwsError(f"timed out after {timeout:.0f}s waiting for {what}; re-run to continue")
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


def gone(err: BaseException) -> bool:
    """A delete that found nothing to delete."""
    c = code(err)
    return (
        c.endswith(".NotFound")
        or c.endswith("NotFound")
        or c.endswith("NotFoundException")
        or c in ("NoSuchHostedZone", "InvalidGroupId.Malformed")
    )


def outcome_unknown(err: BaseException) -> bool:
    """The request may or may not have reached AWS: a lost connection, a 5xx, a throttle."""
    if isinstance(
        err,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.parsers.ResponseParserError,
    ):
        return True
    if isinstance(err, botocore.exceptions.ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or code(err) in THROTTLED
    return False


THROTTLED = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "PriorRequestNotComplete"}
)


def create_once(
    aws: Aws,
    service: str,
    call: Callable[[Any], T],
    adopt: Callable[[], T | None],
    *,
    timeout: float,
) -> T:
    """A create call that AWS offers no idempotency token for.

    botocore would resend it after a lost response and make a second resource. Instead the
    call goes out once (a client that never retries); when its outcome is unknown, squall
    looks for what it may have made (by tag) before sending it again. A throttled call was
    refused before it did anything, so it is simply sent again after a pause.
    """
    client = aws.client(service, max_attempts=1)
    deadline = time.monotonic() + timeout
    delay = 1.0
    while True:
        try:
            return call(client)
        except Exception as err:
            if not outcome_unknown(err) or time.monotonic() + delay > deadline:
                raise
            refused = code(err) in THROTTLED
        if refused:
            time.sleep(delay * (0.5 + random.random() / 2))
        else:
            # A resource made moments ago may not be listed yet: look twice before resending.
            for _ in range(2):
                time.sleep(delay * (0.5 + random.random() / 2))
                found = adopt()
                if found is not None:
                    return found
        delay = min(delay * 2, 15.0)
