"""Wait until the cluster answers through its load balancer and every node is Ready.

Each poll walks the path a user's kubectl takes: resolve the API name, reach kube-apiserver
through the NLB with the cluster CA as the only trust anchor, ask ``/readyz``, then list the
nodes with the admin client certificate. The first step that fails is what squall reports as
"waiting for", and on timeout it is what the error names.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from squall.bootstrap.progress import Report, Update, countdown, silent
from squall.errors import SquallError
from squall.ignition.nodes import CONTROLLER_LABEL
from squall.spec import Spec

API_PORT = 6443
# Controllers register with this label (``key=value``), set by their node config.
CONTROLLER_LABEL_KEY, _, CONTROLLER_LABEL_VALUE = CONTROLLER_LABEL.partition("=")

Resolver = Callable[[str], Sequence[str]]
# Target id → state as the NLB reports it ("healthy", "unhealthy", "initial", …).
TargetHealth = Callable[[], Mapping[str, str]]


class WaitError(SquallError):
    """The cluster did not become ready in time."""


@dataclass(frozen=True)
class Endpoint:
    host: str  # the API name: resolved, sent as SNI and checked against the certificate
    port: int = API_PORT

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


@dataclass(frozen=True)
class ExpectedNodes:
    controllers: int
    workers: int


def expected_nodes(spec: Spec) -> ExpectedNodes:
    return ExpectedNodes(
        controllers=spec.controller_count,
        workers=spec.worker_count + sum(p.count for p in spec.worker_pools),
    )


@dataclass(frozen=True)
class ClientTLS:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes  # secret


def admin_tls(admin_kubeconfig: str) -> ClientTLS:
    """The CA and client certificate inside an admin kubeconfig with embedded data."""
    try:
        config = yaml.safe_load(admin_kubeconfig)
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        return ClientTLS(
            ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
            cert_pem=base64.b64decode(user["client-certificate-data"]),
            key_pem=base64.b64decode(user["client-key-data"]),
        )
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"admin kubeconfig lacks embedded certificates ({err!r})") from None


def ssl_context(tls: ClientTLS) -> ssl.SSLContext:
    """A client context that trusts only the cluster CA and presents the admin certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=tls.ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The ssl module loads client keys only from files; this one lives for a moment in a
    # private directory and is gone before any connection is made.
    with tempfile.TemporaryDirectory(prefix="squall-") as d:
        cert, key = Path(d) / "admin.crt", Path(d) / "admin.key"
        cert.write_bytes(tls.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(tls.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def system_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# One poll


@dataclass(frozen=True)
class Status:
    stage: str  # "dns", "api", "nodes" or "ready": the first step not done yet
    detail: str


def _get(
    address: str, endpoint: Endpoint, ctx: ssl.SSLContext, path: str, timeout: float
) -> tuple[int, bytes]:
    raw = socket.create_connection((address, endpoint.port), timeout=timeout)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=endpoint.host)
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    # A socket already connected to the resolved address; http.client only speaks HTTP on it.
    conn.sock = sock
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _connect_problem(err: Exception, address: str, endpoint: Endpoint) -> str:
    where = f"{address}:{endpoint.port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"the certificate at {where} is not the cluster's ({err.verify_message}); "
            f"{endpoint.host} may still point at another load balancer"
        )
    if isinstance(err, ConnectionRefusedError):
        return f"connection refused at {where}"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"no answer from {where}"
    if isinstance(err, ssl.SSLError):
        return f"TLS failed at {where} ({err.reason or err})"
    if isinstance(err, OSError):
        return f"cannot reach {where} ({err.strerror or err})"
    return f"{where}: {err}"


def failed_checks(body: bytes) -> list[str]:
    """The names of failing checks in a verbose ``/readyz`` answer."""
    out = []
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("[-]"):
            out.append(line[3:].split(" ", 1)[0])
    return out


@dataclass(frozen=True)
class NodeReport:
    ready_controllers: int
    ready_workers: int
    not_ready: tuple[str, ...]  # "name (reason)"


def classify_nodes(items: Sequence[Mapping[str, Any]]) -> NodeReport:
    ready = {"controllers": 0, "workers": 0}
    not_ready = []
    for node in items:
        meta = node.get("metadata", {})
        labels = meta.get("labels") or {}
        controller = labels.get(CONTROLLER_LABEL_KEY) == CONTROLLER_LABEL_VALUE
        role = "controllers" if controller else "workers"
        conditions = node.get("status", {}).get("conditions", [])
        cond = next((c for c in conditions if c.get("type") == "Ready"), None)
        if cond is not None and cond.get("status") == "True":
            ready[role] += 1
        else:
            why = (cond or {}).get("reason") or "no Ready condition yet"
            not_ready.append(f"{meta.get('name', '?')} NotReady: {why}")
    return NodeReport(ready["controllers"], ready["workers"], tuple(not_ready))


def nodes_summary(report: NodeReport, expected: ExpectedNodes) -> tuple[bool, str]:
    done = (
        report.ready_controllers >= expected.controllers
        and report.ready_workers >= expected.workers
    )
    text = (
        f"{report.ready_controllers}/{expected.controllers} controllers and "
        f"{report.ready_workers}/{expected.workers} workers Ready"
    )
    missing = max(0, expected.controllers - report.ready_controllers) + max(
        0, expected.workers - report.ready_workers
    )
    missing -= len(report.not_ready)
    extra = list(report.not_ready)
    if missing > 0:
        extra.append(f"{missing} not registered yet")
    if not done and extra:
        text += "".join(f"; {e}" for e in extra)
    return done, text


def probe(
    endpoint: Endpoint,
    ctx: ssl.SSLContext,
    expected: ExpectedNodes,
    resolver: Resolver,
    timeout: float = 10.0,
) -> Status:
    """Walk DNS → kube-apiserver → nodes once; the first step not done is what to wait for."""
    try:
        addresses = list(resolver(endpoint.host))
    except OSError:
        addresses = []
    if not addresses:
        return Status("dns", f"{endpoint.host} does not resolve yet")
    problems = []
    for address in addresses:
        try:
            status, body = _get(address, endpoint, ctx, "/readyz?verbose", timeout)
        except (OSError, http.client.HTTPException) as err:
            problems.append(_connect_problem(err, address, endpoint))
            continue
        if status != 200:
            failing = failed_checks(body)
            checks = f": failing {', '.join(failing)}" if failing else ""
            return Status("api", f"kube-apiserver answers /readyz with {status}{checks}")
        try:
            status, body = _get(address, endpoint, ctx, "/api/v1/nodes", timeout)
        except (OSError, http.client.HTTPException) as err:
            return Status("api", _connect_problem(err, address, endpoint))
        if status != 200:
            return Status("api", f"listing nodes answered {status}")
        try:
            items = json.loads(body).get("items") or []
        except ValueError:
            return Status("api", "listing nodes returned something other than JSON")
        done, text = nodes_summary(classify_nodes(items), expected)
        return Status("ready" if done else "nodes", text)
    return Status("api", "; ".join(problems))


# The loop


def targets_summary(target_health: TargetHealth | None) -> str:
    if target_health is None:
        return ""
    try:
        states = dict(target_health())
    except Exception as err:
        return f"; NLB target health unknown ({err})"
    if not states:
        return "; the NLB's kube-apiserver target group has no targets"
    unhealthy = sorted(f"{t} {s}" for t, s in states.items() if s != "healthy")
    if not unhealthy:
        return "; NLB targets all healthy"
    return f"; NLB targets not healthy: {', '.join(unhealthy)}"


def _timeout_error(status: Status, endpoint: Endpoint, waited: float, targets: str) -> WaitError:
    after = countdown(waited)
    if status.stage == "dns":
        return WaitError(
            f"{endpoint.host} did not resolve within {after}; check that the dns_zone is "
            "delegated to its Route53 hosted zone (dig NS) and that nothing caches an old "
            "answer, then re-run"
        )
    if status.stage == "api":
        return WaitError(
            f"kube-apiserver at {endpoint.url} not ready within {after}: {status.detail}"
            f"{targets}; look at 'journalctl -u kubelet' and 'journalctl -u etcd-member' on "
            "controller-0, then re-run"
        )
    return WaitError(
        f"nodes not Ready within {after}: {status.detail}; look at 'journalctl -u kubelet' "
        "on the nodes named, then re-run"
    )


def wait_ready(
    endpoint: Endpoint,
    tls: ClientTLS,
    expected: ExpectedNodes,
    *,
    timeout: float = 900.0,
    poll_every: float = 5.0,
    resolver: Resolver = system_resolver,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    target_health: TargetHealth | None = None,
    report: Report = silent,
) -> None:
    """Return once kube-apiserver is ready through ``endpoint`` and every node is Ready."""
    ctx = ssl_context(tls)
    started = clock()
    deadline = started + timeout
    key = f"cluster {endpoint.host}"
    labels = {
        "dns": "waiting for DNS",
        "api": "waiting for kube-apiserver",
        "nodes": "waiting for nodes",
    }
    while True:
        status = probe(endpoint, ctx, expected, resolver, timeout=min(10.0, timeout))
        if status.stage == "ready":
            report(Update(key, f"ready: {status.detail}"))
            return
        left = deadline - clock()
        if left <= 0:
            targets = targets_summary(target_health) if status.stage == "api" else ""
            raise _timeout_error(status, endpoint, clock() - started, targets)
        report(Update(key, f"{labels[status.stage]} ({status.detail})", left))
        with contextlib.suppress(InterruptedError):
            sleep(min(poll_every, left))
