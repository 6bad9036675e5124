"""A loopback proxy that makes the emulated AWS behave like a busy, eventually consistent AWS.

It sits between squall (``AWS_ENDPOINT_URL`` points at the proxy) and a moto server and, for a
configurable share of requests, answers the way real AWS sometimes does:

- throttling: ``RequestLimitExceeded`` (EC2) or ``Throttling`` (the other query APIs, Route53)
- a ``500 InternalError``
- a dropped connection before the request reaches AWS
- a **lost response**: the request reaches AWS and takes effect, then the connection drops
- ``…NotFound`` for an EC2 id that AWS returned moments ago (eventual consistency)

Faults are drawn from a seeded random generator, so a failing run can be replayed.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# EC2 id prefixes and the error AWS gives for an id it does not know (yet).
NOT_FOUND = {
    "vpc": "InvalidVpcID.NotFound",
    "subnet": "InvalidSubnetID.NotFound",
    "sg": "InvalidGroup.NotFound",
    "igw": "InvalidInternetGatewayID.NotFound",
    "rtb": "InvalidRouteTableID.NotFound",
    "i": "InvalidInstanceID.NotFound",
    "lt": "InvalidLaunchTemplateId.NotFound",
}
_CREATED_ID = re.compile(
    rb"<(?:vpcId|subnetId|groupId|internetGatewayId|routeTableId|instanceId|launchTemplateId)>"
    rb"((?:vpc|subnet|sg|igw|rtb|i|lt)-[0-9a-f]+)<"
)

FAULTS = ("throttle", "error500", "drop", "lost_response", "not_found")
MAKERS = ("Create", "RunInstances", "Authorize", "Associate", "Attach", "Register")


def makes_something(operation: str) -> bool:
    return operation.split(" ")[-1].startswith(MAKERS)


@dataclass
class FaultPolicy:
    rate: float = 0.15  # share of requests that get a fault
    seed: int = 1
    kinds: tuple[str, ...] = FAULTS
    # How long after creation an id may still be reported as unknown.
    consistency_window_s: float = 2.0
    # Extra share of calls that make something (Create*, RunInstances, Authorize*, …) whose
    # response is lost after they took effect: the costliest fault, made common on purpose.
    lost_create_rate: float = 0.0


@dataclass
class FaultLog:
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    # (fault, operation) pairs, to tell which calls each fault hit.
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def faulted(self) -> int:
        return sum(self.faults.values())


def _operation(body: bytes, path: str, method: str) -> tuple[str, str]:
    """(api, action): 'ec2'/'query'/'route53' and the operation name."""
    if path.startswith("/2013-04-01/"):
        return "route53", f"{method} {path.split('/')[2]}"
    params = urllib.parse.parse_qs(body.decode(errors="replace"))
    action = params.get("Action", ["?"])[0]
    version = params.get("Version", [""])[0]
    # EC2's API version is 2016-11-15; every other query API answers in the ErrorResponse shape.
    return ("ec2" if version == "2016-11-15" else "query"), action


def _error_body(api: str, code: str, message: str) -> tuple[int, bytes]:
    if api == "ec2":
        status = 503 if code == "RequestLimitExceeded" else 500 if code == "InternalError" else 400
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        )
        return status, body.encode()
    status = 400 if code == "Throttling" else 500
    xmlns = ' xmlns="https://route53.amazonaws.com/doc/2013-04-01/"' if api == "route53" else ""
    kind = "Sender" if status == 400 else "Receiver"
    body = (
        f"<?xml version='1.0'?><ErrorResponse{xmlns}><Error><Type>{kind}</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
    )
    return status, body.encode()


class FaultProxy:
    """Run with ``with FaultProxy(upstream_port, policy) as proxy: proxy.url``."""

    def __init__(self, upstream_port: int, policy: FaultPolicy) -> None:
        self.upstream_port = upstream_port
        self.policy = policy
        self.log = FaultLog()
        self.enabled = True
        self._rng = random.Random(policy.seed)
        self._lock = threading.Lock()
        self._created: dict[str, float] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _draw(self, body: bytes, action: str) -> str | None:
        with self._lock:
            self.log.requests += 1
            if not self.enabled:
                return None
            if "not_found" in self.policy.kinds:
                now = time.monotonic()
                for rid, created in self._created.items():
                    young = now - created < self.policy.consistency_window_s
                    if young and rid.encode() in body and self._rng.random() < 0.5:
                        return f"not_found:{rid}"
            if (
                "lost_response" in self.policy.kinds
                and makes_something(action)
                and self._rng.random() < self.policy.lost_create_rate
            ):
                return "lost_response"
            if self._rng.random() >= self.policy.rate:
                return None
            kinds = [k for k in self.policy.kinds if k != "not_found"]
            return self._rng.choice(kinds) if kinds else None

    def _remember_ids(self, response_body: bytes) -> None:
        ids = _CREATED_ID.findall(response_body)
        if ids:
            now = time.monotonic()
            with self._lock:
                for rid in ids:
                    self._created.setdefault(rid.decode(), now)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                api, action = _operation(body, self.path, self.command)
                fault = proxy._draw(body, action)
                with proxy._lock:
                    proxy.log.operations[action] += 1
                    if fault:
                        proxy.log.faults[fault.split(":")[0]] += 1
                        proxy.log.hits[(fault.split(":")[0], action)] += 1
                if fault == "drop":
                    self._hang_up()
                    return
                if fault == "throttle":
                    code = "RequestLimitExceeded" if api == "ec2" else "Throttling"
                    self._answer(*_error_body(api, code, "Rate exceeded"))
                    return
                if fault == "error500":
                    code = "InternalError" if api == "ec2" else "InternalFailure"
                    self._answer(*_error_body(api, code, "We encountered an internal error"))
                    return
                if fault and fault.startswith("not_found:"):
                    rid = fault.split(":", 1)[1]
                    code = NOT_FOUND[rid.split("-", 1)[0]]
                    self._answer(*_error_body(api, code, f"The ID '{rid}' does not exist"))
                    return
                status, headers, payload = self._forward(body)
                proxy._remember_ids(payload)
                if fault == "lost_response":
                    self._hang_up()
                    return
                self._answer(status, payload, headers)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                try:
                    skip = {"connection", "keep-alive", "transfer-encoding"}
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                    keep = [
                        (k, v)
                        for k, v in resp.getheaders()
                        if k.lower() not in skip | {"content-length"}
                    ]
                    return resp.status, keep, payload
                finally:
                    conn.close()

            def _answer(
                self, status: int, payload: bytes, headers: list[tuple[str, str]] | None = None
            ) -> None:
                self.send_response(status)
                for k, v in headers or [("Content-Type", "text/xml")]:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        return Handler
