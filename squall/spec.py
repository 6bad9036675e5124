"""The cluster file: every option, its default and its validation.

Top-level keys follow Typhoon's AWS variable names so that a Typhoon user finds them where they
expect. Every mistake becomes one :class:`SpecError` line that names the key and the fix.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from squall.errors import SquallError

# AWS caps load balancer and target group names at 32 characters; the longest name squall
# derives from the cluster name is NAME-workers-https.
AWS_LB_NAME_MAX = 32
LONGEST_SUFFIX = "-workers-https"
CLUSTER_NAME_MAX = AWS_LB_NAME_MAX - len(LONGEST_SUFFIX)

# Ports the cluster NLB already listens on.
RESERVED_NLB_PORTS = {6443: "kube-apiserver", 80: "HTTP ingress", 443: "HTTPS ingress"}
NODE_PORT_RANGE = (30000, 32767)
# AWS's fixed quota of listeners per network load balancer.
NLB_LISTENERS_MAX = 50
MAX_SERVICES = NLB_LISTENERS_MAX - len(RESERVED_NLB_PORTS)
# A pool's template and group are NAME-<pool>, beside the main workers' NAME-worker.
RESERVED_POOL_NAMES = ("worker",)

DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
TARGET_GROUP_ARN = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$"
)
LABEL = re.compile(
    r"^([a-zA-Z0-9.-]+/)?[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?=[a-zA-Z0-9._-]{0,63}$"
)
TAINT_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]*[a-z0-9])?/)?[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$"
)
TAINT = re.compile(
    r"^([a-zA-Z0-9.-]+/)?[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?"
    r"(=[a-zA-Z0-9._-]{0,63})?:(NoSchedule|PreferNoSchedule|NoExecute)$"
)
SG_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
ROUTE_TARGETS = (
    "gateway_id",
    "vpc_peering_connection_id",
    "transit_gateway_id",
    "nat_gateway_id",
    "network_interface_id",
)
ROUTE_TARGET_PREFIX = {
    "gateway_id": ("igw-", "vgw-"),
    "vpc_peering_connection_id": ("pcx-",),
    "transit_gateway_id": ("tgw-",),
    "nat_gateway_id": ("nat-",),
    "network_interface_id": ("eni-",),
}

Arch = Literal["amd64", "arm64"]
OsStream = Literal["stable", "testing", "next"]
OsImage = Literal["flatcar-stable", "flatcar-beta", "flatcar-alpha"]
# Root volumes: st1 and sc1 cannot be boot volumes.
DiskType = Literal["gp3", "gp2", "io1", "io2", "standard"]
CpuCredits = Literal["standard", "unlimited"]
Port = Annotated[int, Field(ge=1, le=65535)]


class SpecError(SquallError):
    """A mistake in the cluster file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as err:
        raise ValueError(
            f"{value!r} is not a network CIDR ({err}); write it like 10.0.0.0/16"
        ) from None


def _cidrs(values: list[str]) -> list[str]:
    return [_cidr(v) for v in values]


# The kubelet refuses to start with --node-labels in the kubernetes.io / k8s.io namespaces
# unless they are under these prefixes or in this set.
KUBELET_LABEL_PREFIXES = ("kubelet.kubernetes.io", "node.kubernetes.io")
KUBELET_LABELS = {
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
}


def _kubelet_may_set(key: str) -> bool:
    prefix, _, _ = key.rpartition("/")
    reserved = any(prefix == d or prefix.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
    if not reserved or key in KUBELET_LABELS:
        return True
    return any(prefix == p or prefix.endswith("." + p) for p in KUBELET_LABEL_PREFIXES)


def _labels(values: list[str]) -> list[str]:
    for v in values:
        if not LABEL.match(v):
            raise ValueError(f"{v!r} is not a node label; write key=value, e.g. 'pool=gpu'")
        key = v.partition("=")[0]
        if not _kubelet_may_set(key):
            raise ValueError(
                f"{key!r} is a label the kubelet may not set on its own node; use a key under "
                "node.kubernetes.io/ or your own domain, or set it with kubectl label later"
            )
    return values


def _taints(values: list[str]) -> list[str]:
    for v in values:
        if not TAINT.match(v):
            raise ValueError(
                f"{v!r} is not a node taint; write key=value:Effect, e.g. 'gpu=true:NoSchedule'"
            )
    return values


def _snippets(values: list[str]) -> list[str]:
    for i, v in enumerate(values):
        if not v.strip():
            raise ValueError(f"snippet {i} is empty; give a Butane YAML document")
    return values


def _toleration_keys(values: list[str]) -> list[str]:
    for v in values:
        if not TAINT_KEY.match(v):
            raise ValueError(
                f"{v!r} is not a taint key; write a key like 'dedicated' or 'example.com/gpu'"
            )
    return values


Labels = Annotated[list[str], AfterValidator(_labels)]
Taints = Annotated[list[str], AfterValidator(_taints)]
Snippets = Annotated[list[str], AfterValidator(_snippets)]


class Service(_Model):
    """A TCP/UDP service: an NLB listener forwarding to a worker node port."""

    name: str
    protocol: Literal["tcp", "udp", "tcp_udp"] = "tcp"
    port: Port
    node_port: int
    allow: list[str] = Field(default_factory=lambda: ["0.0.0.0/0", "::/0"])
    health_check_path: str | None = None
    # NLB health checks speak TCP or HTTP, so a UDP-only service names a TCP port on the nodes
    # that answers for it; otherwise the node port itself is checked.
    health_check_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError(f"{v!r} must be a lowercase DNS label like 'some-app'")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if v in RESERVED_NLB_PORTS:
            raise ValueError(
                f"{v} is taken by the cluster's {RESERVED_NLB_PORTS[v]} listener; choose another port"
            )
        return v

    @field_validator("node_port")
    @classmethod
    def _node_port(cls, v: int) -> int:
        lo, hi = NODE_PORT_RANGE
        if not lo <= v <= hi:
            raise ValueError(f"{v} is outside the NodePort range; choose a port in {lo}-{hi}")
        return v

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(
                "is empty; list the CIDRs that may reach the service, e.g. ['0.0.0.0/0']"
            )
        return _cidrs(v)

    @field_validator("health_check_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{v!r} must be an absolute path like '/healthz'")
        return v

    @model_validator(mode="after")
    def _udp_health(self) -> Service:
        if self.protocol == "udp" and self.health_check_port is None:
            raise ValueError(
                "a udp service needs health_check_port: NLB health checks use TCP or HTTP, and "
                f"nothing answers TCP on node port {self.node_port}; name a TCP port on the nodes"
            )
        return self

    @property
    def health_port(self) -> int:
        return self.health_check_port if self.health_check_port is not None else self.node_port


class FirewallRule(_Model):
    """An extra ingress rule on the worker or controller security group."""

    group: Literal["worker", "controller"]
    protocol: Literal["tcp", "udp", "icmp", "all"]
    from_port: int = Field(default=0, ge=-1, le=65535)
    to_port: int = Field(default=0, ge=-1, le=65535)
    cidrs: list[str] = Field(default_factory=list)
    source_group: str | None = None

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return _cidrs(v)

    @field_validator("source_group")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None and v not in ("worker", "controller") and not SG_ID.match(v):
            raise ValueError(f"{v!r} must be 'worker', 'controller' or a security group id sg-…")
        return v

    @model_validator(mode="after")
    def _check(self) -> FirewallRule:
        if bool(self.cidrs) == (self.source_group is not None):
            raise ValueError("give exactly one of 'cidrs' or 'source_group'")
        if self.protocol in ("tcp", "udp"):
            if self.from_port < 1 or self.to_port < 1:
                raise ValueError("from_port and to_port must be ports 1-65535 for tcp/udp")
            if self.from_port > self.to_port:
                raise ValueError(
                    f"from_port {self.from_port} is above to_port {self.to_port}; swap them"
                )
        return self


class Route(_Model):
    """An extra route in the cluster's route table."""

    destination: str
    gateway_id: str | None = None
    vpc_peering_connection_id: str | None = None
    transit_gateway_id: str | None = None
    nat_gateway_id: str | None = None
    network_interface_id: str | None = None

    @field_validator("destination")
    @classmethod
    def _dest(cls, v: str) -> str:
        v = _cidr(v)
        if v in ("0.0.0.0/0", "::/0"):
            raise ValueError(
                f"{v} is the cluster's default route through its internet gateway; "
                "choose a narrower destination"
            )
        return v

    @model_validator(mode="after")
    def _one_target(self) -> Route:
        given = [t for t in ROUTE_TARGETS if getattr(self, t) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one target ({', '.join(ROUTE_TARGETS)}), not {len(given)}"
            )
        target = given[0]
        value = getattr(self, target)
        if not value.startswith(ROUTE_TARGET_PREFIX[target]):
            raise ValueError(
                f"{target} {value!r} must start with {' or '.join(ROUTE_TARGET_PREFIX[target])}"
            )
        return self

    @property
    def target(self) -> tuple[str, str]:
        for t in ROUTE_TARGETS:
            value = getattr(self, t)
            if value is not None:
                return t, value
        raise AssertionError("validated route has a target")


class WorkerPool(_Model):
    """An extra group of workers: its own launch template, ASG and node config."""

    name: str
    count: int = Field(default=1, ge=0)
    instance_type: str = "t3.small"
    arch: Arch = "amd64"
    os_stream: OsStream = "stable"
    os_image: OsImage = "flatcar-stable"
    disk_size: int = Field(default=30, ge=8, le=16384)
    disk_type: DiskType = "gp3"
    disk_iops: int = Field(default=3000, ge=0)
    spot_price: float = Field(default=0, ge=0)
    node_labels: Labels = Field(default_factory=list)
    node_taints: Taints = Field(default_factory=list)
    snippets: Snippets = Field(default_factory=list)
    ingress: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError(f"{v!r} must be a lowercase DNS label like 'gpu'")
        return v


class Components(_Model):
    """Cluster add-ons that squall installs; turn one off to bring your own."""

    coredns: bool = True
    kube_proxy: bool = True
    flannel: bool = True
    cilium: bool = True


class Spec(_Model):
    """A whole cluster file."""

    cluster_name: str
    dns_zone: str
    dns_zone_id: str
    ssh_authorized_key: str
    # The private half for the SSH bootstrap; unset means keys from ssh-agent.
    ssh_private_key_file: str | None = None
    region: str | None = None
    os: Literal["fedora-coreos", "flatcar"] = "fedora-coreos"
    os_stream: OsStream = "stable"
    os_image: OsImage = "flatcar-stable"

    controller_count: int = Field(default=1, ge=1)
    controller_type: str = "t3.small"
    controller_disk_size: int = Field(default=30, ge=8, le=16384)
    controller_disk_type: DiskType = "gp3"
    controller_disk_iops: int = Field(default=3000, ge=0)
    controller_cpu_credits: CpuCredits | None = None
    controller_arch: Arch = "amd64"
    controller_snippets: Snippets = Field(default_factory=list)

    worker_count: int = Field(default=1, ge=0)
    worker_type: str = "t3.small"
    worker_disk_size: int = Field(default=30, ge=8, le=16384)
    worker_disk_type: DiskType = "gp3"
    worker_disk_iops: int = Field(default=3000, ge=0)
    worker_cpu_credits: CpuCredits | None = None
    worker_arch: Arch = "amd64"
    worker_price: float = Field(default=0, ge=0)
    worker_target_groups: list[str] = Field(default_factory=list)
    worker_public_ipv4: bool = True
    worker_snippets: Snippets = Field(default_factory=list)
    worker_node_labels: Labels = Field(default_factory=list)
    worker_node_taints: Taints = Field(default_factory=list)

    # Unset keeps Typhoon's SSH rules (controllers from any IPv4 and IPv6 address, workers from
    # any IPv4 address); set, the one list applies to both groups.
    ssh_cidrs: list[str] | None = None
    apiserver_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"])

    networking: Literal["cilium", "flannel"] = "cilium"
    host_cidr: str = "10.0.0.0/16"
    pod_cidr: str = "10.20.0.0/14"
    service_cidr: str = "10.3.0.0/16"
    daemonset_tolerations: Annotated[list[str], AfterValidator(_toleration_keys)] = Field(
        default_factory=list
    )
    components: Components = Field(default_factory=Components)
    ingress_controller: Literal["nginx", "none"] = "nginx"
    service_account_issuer: str = "https://kubernetes.default.svc.cluster.local"
    cloud_provider: Literal["external"] | None = None

    services: list[Service] = Field(default_factory=list)
    firewall_rules: list[FirewallRule] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    worker_pools: list[WorkerPool] = Field(default_factory=list)

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError(
                f"{v!r} must be a lowercase DNS label: a-z, 0-9 and '-', starting with a letter"
            )
        if len(v) > CLUSTER_NAME_MAX:
            raise ValueError(
                f"{v!r} is {len(v)} characters; AWS limits target group names to "
                f"{AWS_LB_NAME_MAX}, so {v}{LONGEST_SUFFIX} needs a name of at most "
                f"{CLUSTER_NAME_MAX}"
            )
        return v

    @field_validator("dns_zone")
    @classmethod
    def _dns_zone(cls, v: str) -> str:
        v = v.rstrip(".")
        if not DOMAIN.match(v):
            raise ValueError(f"{v!r} is not a lowercase domain name like 'aws.example.com'")
        return v

    @field_validator("dns_zone_id")
    @classmethod
    def _zone_id(cls, v: str) -> str:
        v = v.removeprefix("/hostedzone/")
        if not re.match(r"^Z[A-Z0-9]{1,31}$", v):
            raise ValueError(f"{v!r} is not a Route53 hosted zone id like 'Z3PAABBCFAKEC0'")
        return v

    @field_validator("ssh_authorized_key")
    @classmethod
    def _ssh_key(cls, v: str) -> str:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key

        v = v.strip()
        try:
            load_ssh_public_key(v.encode())
        except (ValueError, TypeError, IndexError, UnsupportedAlgorithm) as err:
            raise ValueError(
                f"is not an OpenSSH public key ({err}); paste one line of ~/.ssh/id_ed25519.pub"
            ) from None
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and v not in known_regions():
            near = difflib.get_close_matches(v, sorted(known_regions()), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else "; use a region such as 'us-east-1'"
            raise ValueError(f"{v!r} is not an AWS region{hint}")
        return v

    @field_validator("host_cidr", "pod_cidr", "service_cidr")
    @classmethod
    def _ipv4_cidr(cls, v: str) -> str:
        net = ipaddress.ip_network(_cidr(v))
        if net.version != 4:
            raise ValueError(f"{v!r} must be an IPv4 CIDR (IPv6 ranges are assigned by AWS)")
        return v

    @field_validator("ssh_cidrs")
    @classmethod
    def _ssh_cidrs(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError(
                "is empty; the bootstrap needs SSH to the controllers, so list your own "
                "address (e.g. ['203.0.113.7/32']) or remove the key"
            )
        return None if v is None else _cidrs(v)

    @field_validator("apiserver_cidrs")
    @classmethod
    def _apiserver_cidrs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(
                "is empty; kubectl needs the apiserver, so list the CIDRs that may reach it "
                "(default ['0.0.0.0/0'])"
            )
        return _cidrs(v)

    @field_validator("worker_target_groups")
    @classmethod
    def _tg_arns(cls, v: list[str]) -> list[str]:
        for arn in v:
            if not TARGET_GROUP_ARN.match(arn):
                raise ValueError(
                    f"{arn!r} is not a target group ARN like "
                    "'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/0123456789abcdef'"
                )
        if len(set(v)) != len(v):
            raise ValueError("lists the same target group twice; remove the duplicate")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Spec:
        nets = {
            k: ipaddress.ip_network(getattr(self, k))
            for k in ("host_cidr", "pod_cidr", "service_cidr")
        }
        keys = list(nets)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if nets[a].overlaps(nets[b]):
                    raise _KeyedError(
                        b, f"{nets[b]} overlaps {a} {nets[a]}; choose disjoint ranges"
                    )
        if nets["host_cidr"].prefixlen > 24:
            raise _KeyedError(
                "host_cidr",
                "is too small to give every zone a subnet; use a /24 or larger (default /16)",
            )
        if nets["pod_cidr"].prefixlen > 20:
            raise _KeyedError(
                "pod_cidr", "is too small: each node takes a /24; use a /20 or larger (default /14)"
            )
        if nets["service_cidr"].num_addresses < 16:
            raise _KeyedError("service_cidr", "needs at least 16 addresses (IP 10 is cluster DNS)")
        _unique(self.services, "services", lambda s: s.name, "name")
        if len(self.services) > MAX_SERVICES:
            raise _KeyedError(
                "services",
                f"{len(self.services)} services need more listeners than the {NLB_LISTENERS_MAX} "
                f"an NLB takes; keep at most {MAX_SERVICES} (the cluster uses 3 itself)",
            )
        for i, svc in enumerate(self.services):
            for j, other in enumerate(self.services[:i]):
                if svc.port == other.port:
                    # An NLB takes one listener per port: TCP and UDP on one port is tcp_udp.
                    fix = (
                        "choose another port"
                        if _protocols_clash(svc.protocol, other.protocol)
                        else "make one service with protocol 'tcp_udp'"
                    )
                    raise _KeyedError(
                        f"services[{i}].port",
                        f"{svc.port}/{svc.protocol} is already used by services[{j}] "
                        f"({other.name!r}); {fix}",
                    )
                if svc.node_port == other.node_port:
                    raise _KeyedError(
                        f"services[{i}].node_port",
                        f"{svc.node_port} is already used by services[{j}] ({other.name!r})",
                    )
            tg = f"{self.cluster_name}-{svc.name}"
            if len(tg) > AWS_LB_NAME_MAX:
                raise _KeyedError(
                    f"services[{i}].name",
                    f"target group name {tg!r} exceeds AWS's {AWS_LB_NAME_MAX} characters; "
                    "shorten the service name",
                )
        _unique(self.worker_pools, "worker_pools", lambda p: p.name, "name")
        for i, pool in enumerate(self.worker_pools):
            if pool.name in RESERVED_POOL_NAMES:
                raise _KeyedError(
                    f"worker_pools[{i}].name",
                    f"{pool.name!r} is taken by the cluster's own "
                    f"{self.cluster_name}-{pool.name} group; choose another name",
                )
        _unique(self.routes, "routes", lambda r: r.destination, "destination")
        return self

    # Derived values used across layers.

    @property
    def api_fqdn(self) -> str:
        return f"{self.cluster_name}.{self.dns_zone}"

    @property
    def api_url(self) -> str:
        return f"https://{self.api_fqdn}:6443"

    def etcd_fqdn(self, index: int) -> str:
        return f"{self.cluster_name}-etcd{index}.{self.dns_zone}"

    @property
    def etcd_fqdns(self) -> list[str]:
        return [self.etcd_fqdn(i) for i in range(self.controller_count)]

    def service_ip(self, n: int) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[n])

    @property
    def cluster_dns_ip(self) -> str:
        return self.service_ip(10)


class _KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _protocols_clash(a: str, b: str) -> bool:
    return a == b or "tcp_udp" in (a, b)


def _unique(items: list[Any], table: str, get: Any, field: str) -> None:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        value = get(item)
        if value in seen:
            raise _KeyedError(
                f"{table}[{i}].{field}",
                f"{value!r} is already used by {table}[{seen[value]}]; make it unique",
            )
        seen[value] = i


@functools.cache
def known_regions() -> frozenset[str]:
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "list[", "union[")):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _model_for(loc: tuple[int | str, ...]) -> type[BaseModel]:
    model: type[BaseModel] = Spec
    tables = {
        "services": Service,
        "firewall_rules": FirewallRule,
        "routes": Route,
        "worker_pools": WorkerPool,
        "components": Components,
    }
    for part in loc[:-1]:
        if isinstance(part, str) and part in tables:
            model = tables[part]
    return model


_TYPE_HINTS = {
    "int_type": "a whole number",
    "float_type": "a number",
    "string_type": "a quoted string",
    "bool_type": "true or false",
    "list_type": 'a list like ["a", "b"]',
    "model_type": "a table",
    "dict_type": "a table",
}


def _one_line(err: ValidationError) -> str:
    errors = err.errors()
    # An unknown key usually explains the "missing" error beside it (a typo), so name it first.
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = tuple(e["loc"])
    ctx = e.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _KeyedError):
        return f"{inner.key}: {inner}"
    key = _loc(loc)
    kind = e["type"]
    if kind == "extra_forbidden":
        model = _model_for(loc)
        name = str(loc[-1])
        near = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.6)
        fix = (
            f"did you mean {near[0]!r}?" if near else "remove it (see 'squall init' for every key)"
        )
        return f"{key}: unknown key; {fix}"
    if kind == "missing":
        return f"{key}: is required; add it to the cluster file"
    if kind == "literal_error":
        return f"{key}: {e['input']!r} is not allowed; use one of {ctx.get('expected')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{key}: {e['input']!r} {e['msg'].lower()}"
    if kind in _TYPE_HINTS:
        return f"{key}: {e['input']!r} is not {_TYPE_HINTS[kind]}; write {_TYPE_HINTS[kind]}"
    if kind == "value_error":
        msg = str(inner) if inner is not None else e["msg"].removeprefix("Value error, ")
        return f"{key}: {msg}" if key else msg
    return f"{key}: {e['msg']}"


def parse(data: dict[str, Any]) -> Spec:
    """Validate a decoded cluster file."""
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_one_line(err)) from None


def load(path: Path) -> Spec:
    """Read and validate a cluster file, raising :class:`SpecError` on any mistake."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; create one with 'squall init'") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read it ({err.__class__.__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: TOML syntax error: {err}") from None
    try:
        return parse(data)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None


def warnings(spec: Spec) -> list[str]:
    """Legal but risky choices, shown to the user without stopping."""
    out = []
    if spec.controller_count % 2 == 0:
        out.append(
            f"controller_count: {spec.controller_count} is even; etcd tolerates no more failures "
            f"than with {spec.controller_count - 1}, prefer an odd count"
        )
    return out
