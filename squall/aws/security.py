"""Firewalls (facts §3): the controller and worker security groups and every rule, and the
load balancer's own group (squall goes beyond Typhoon there).

The rules are data: one row per (protocol, ports, sources, purpose), expanded into one rule
resource per source so that each can be found, compared and removed on its own. Beside
Typhoon's tables come the cluster file's rows: ``ssh_cidrs`` and ``apiserver_cidrs`` in place
of the wide-open SSH and 6443 sources, each ``[[services]]`` node port, and each
``[[firewall_rules]]`` entry. Every rule squall makes carries the cluster's tag; rules without
it (added in the console or by another tool) are never the cluster's to change.

The load balancer's group ``NAME-nlb`` is where clients of the NLB are filtered: the apiserver
target group cannot keep client addresses (see :mod:`squall.aws.nlb`), so behind the NLB a
controller only sees the NLB. The controllers admit 6443 from that group, whatever the client.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from squall.aws.network import VPC
from squall.engine.core import Ref, Resource
from squall.spec import Spec

CONTROLLER_SG = "sg-controller"
WORKER_SG = "sg-worker"
NLB_SG = "sg-nlb"
# A source that stands for the VPC's Amazon IPv6 block, known once AWS assigns it.
VPC_IPV6 = "vpc-ipv6"
ANY4 = "0.0.0.0/0"
ANY6 = "::/0"
ECHO_REQUEST = (8, 0)  # ICMP type 8, code 0; AWS keeps them in from_port / to_port


@dataclass(frozen=True)
class Row:
    protocol: str  # tcp | udp | icmp | -1
    ports: tuple[int, int]
    # "self", "controller", "worker", "nlb", VPC_IPV6 or a CIDR.
    sources: tuple[str, ...]
    purpose: str
    cilium_only: bool = False


CONTROLLER_INGRESS = (
    Row("icmp", ECHO_REQUEST, ("worker", "self"), "cilium-health-icmp", cilium_only=True),
    Row("tcp", (22, 22), (ANY4, ANY6), "ssh"),
    Row("tcp", (2379, 2380), ("self",), "etcd"),
    Row("tcp", (2381, 2381), ("worker",), "etcd-metrics"),
    Row("tcp", (4240, 4240), ("worker", "self"), "cilium-health", cilium_only=True),
    Row("tcp", (9962, 9965), ("worker", "self"), "cilium-metrics", cilium_only=True),
    # Direct connections to the controllers, narrowed by apiserver_cidrs.
    Row("tcp", (6443, 6443), (ANY4,), "apiserver"),
    # Everything the NLB forwards, and its health checks: clients are filtered by the NLB's
    # own group, and arrive here from the NLB's private addresses (squall goes beyond).
    Row("tcp", (6443, 6443), ("nlb",), "apiserver-nlb"),
    Row("udp", (8472, 8472), ("worker", "self"), "vxlan"),
    Row("tcp", (9100, 9100), ("worker",), "node-exporter"),
    Row("tcp", (10249, 10249), ("worker",), "kube-proxy-metrics"),
    Row("tcp", (10250, 10250), ("worker", "self"), "kubelet"),
    Row("tcp", (10257, 10257), ("worker",), "kube-controller-manager-metrics"),
    Row("tcp", (10259, 10259), ("worker",), "kube-scheduler-metrics"),
)

WORKER_INGRESS = (
    Row("icmp", ECHO_REQUEST, ("controller", "self"), "cilium-health-icmp", cilium_only=True),
    Row("tcp", (22, 22), (ANY4,), "ssh"),
    Row("tcp", (80, 80), (ANY4,), "http"),
    Row("tcp", (443, 443), (ANY4,), "https"),
    Row("tcp", (4240, 4240), ("controller", "self"), "cilium-health", cilium_only=True),
    Row("tcp", (9962, 9965), ("controller", "self"), "cilium-metrics", cilium_only=True),
    Row("udp", (8472, 8472), ("controller", "self"), "vxlan"),
    Row("tcp", (9100, 9100), ("self",), "node-exporter"),
    Row("tcp", (10249, 10249), ("self",), "kube-proxy-metrics"),
    Row("tcp", (10250, 10250), ("controller", "self"), "kubelet"),
    # The NLB's health checks reach the ingress controller here.
    Row("tcp", (10254, 10254), (ANY4,), "ingress-health"),
)

EGRESS = (Row("-1", (-1, -1), (ANY4, ANY6), "egress"),)


PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "all": "-1"}


def rows(group: str, networking: str) -> tuple[tuple[Row, ...], tuple[Row, ...]]:
    """(ingress, egress) rows of ``group`` ("controller" or "worker") for a CNI."""
    ingress = CONTROLLER_INGRESS if group == "controller" else WORKER_INGRESS
    return tuple(r for r in ingress if networking == "cilium" or not r.cilium_only), EGRESS


def narrowed(spec: Spec, group: str, table: tuple[Row, ...]) -> tuple[Row, ...]:
    """Typhoon's rows with the cluster file's SSH and apiserver sources in place."""
    out = []
    for row in table:
        if row.purpose == "ssh" and spec.ssh_cidrs is not None:
            row = Row(row.protocol, row.ports, tuple(spec.ssh_cidrs), row.purpose)
        elif row.purpose == "apiserver":
            row = Row(row.protocol, row.ports, tuple(spec.apiserver_cidrs), row.purpose)
        out.append(row)
    return tuple(out)


def _protocols(protocol: str) -> tuple[str, ...]:
    return ("tcp", "udp") if protocol == "tcp_udp" else (protocol,)


def service_rows(spec: Spec) -> tuple[Row, ...]:
    """Worker rules for each service: its node port from ``allow``, for clients the NLB hands
    over with their own addresses and for direct connections, and from the NLB's group, for
    its health checks and for the IPv6 clients it hands over from its own IPv4 addresses
    (the NLB's group has already checked those against ``allow``)."""
    out = []
    for svc in spec.services:
        port = (svc.node_port, svc.node_port)
        for proto in _protocols(svc.protocol):
            out.append(Row(proto, port, tuple(svc.allow), f"service-{svc.name}-{proto}"))
        # Clients the NLB hands over from its own addresses, on the service's protocols.
        for proto in _protocols(svc.protocol):
            out.append(Row(proto, port, ("nlb",), f"service-{svc.name}-nlb-{proto}"))
        # Health checks are TCP or HTTP, whatever the service's protocol.
        health = (svc.health_port, svc.health_port)
        if health != port or "tcp" not in _protocols(svc.protocol):
            out.append(Row("tcp", health, ("nlb",), f"service-{svc.name}-nlb-health"))
    return tuple(out)


def apiserver_sources(spec: Spec) -> tuple[str, ...]:
    """Who may reach 6443 through the NLB: ``apiserver_cidrs``, and the nodes themselves."""
    cidrs = list(spec.apiserver_cidrs)
    if ANY4 in cidrs and ANY6 not in cidrs:
        # 0.0.0.0/0 has always let everyone through the NLB, IPv6 clients included (the
        # controllers see those at the NLB's IPv4 address). The NLB's group sees them as
        # they are, so the same reach needs ::/0 there.
        cidrs.append(ANY6)
    if ANY6 not in cidrs:
        # Nodes reach the apiserver through the NLB too (kubelets, scheduler, controller
        # manager). Over IPv6 they come from their own addresses in the VPC's block, which
        # nothing translates; over IPv4 they would come from public addresses that no rule
        # can know in advance, so narrowing relies on the nodes preferring IPv6.
        cidrs.append(VPC_IPV6)
    return tuple(cidrs)


def nlb_ingress_rows(spec: Spec) -> tuple[Row, ...]:
    """The NLB's listeners, each open to whom the cluster file lets in."""
    out = [
        Row("tcp", (6443, 6443), apiserver_sources(spec), "apiserver"),
        Row("tcp", (80, 80), (ANY4, ANY6), "http"),
        Row("tcp", (443, 443), (ANY4, ANY6), "https"),
    ]
    for svc in spec.services:
        for proto in _protocols(svc.protocol):
            port = (svc.port, svc.port)
            out.append(Row(proto, port, tuple(svc.allow), f"service-{svc.name}-{proto}"))
    return tuple(out)


def nlb_egress_rows(spec: Spec) -> tuple[Row, ...]:
    # Targets and their health checks are all inside the VPC, over IPv4 (instance targets);
    # health checks obey the NLB's outbound rules, not its inbound ones.
    return (Row("-1", (-1, -1), (spec.host_cidr,), "egress-vpc"),)


def user_rows(spec: Spec, group: str) -> tuple[Row, ...]:
    out = []
    for i, rule in enumerate(spec.firewall_rules):
        if rule.group != group:
            continue
        proto = PROTOCOLS[rule.protocol]
        ports = (-1, -1) if proto == "-1" else (rule.from_port, rule.to_port)
        sources = (rule.source_group,) if rule.source_group else tuple(rule.cidrs)
        if group == rule.source_group:
            sources = ("self",)
        out.append(Row(proto, ports, sources, f"rule{i}-{rule.protocol}-{ports[0]}-{ports[1]}"))
    return tuple(out)


def ingress_rows(spec: Spec, group: str) -> tuple[Row, ...]:
    if group == "nlb":
        return nlb_ingress_rows(spec)
    ingress, _ = rows(group, spec.networking)
    extra = service_rows(spec) if group == "worker" else ()
    return narrowed(spec, group, ingress) + extra + user_rows(spec, group)


def egress_rows(spec: Spec, group: str) -> tuple[Row, ...]:
    return nlb_egress_rows(spec) if group == "nlb" else rows(group, spec.networking)[1]


def _source_label(source: str) -> str:
    return {ANY4: "any-ipv4", ANY6: "any-ipv6"}.get(source, source)


def _protocol(protocol: str, source: str) -> str:
    # ICMP for IPv6 sources is ICMPv6, a protocol of its own to AWS.
    return "icmpv6" if protocol == "icmp" and ":" in source else protocol


def rules(spec: Spec, group: str, key: str, peers: dict[str, str]) -> list[Resource]:
    """Rule resources for ``group`` whose security group is desired under ``key``."""
    name = spec.cluster_name
    egress = egress_rows(spec, group)
    out = []
    # A rule the cluster file repeats (or that Typhoon's tables hold already) is made once.
    seen: set[tuple[object, ...]] = set()
    for egress_flag, table in ((False, ingress_rows(spec, group)), (True, egress)):
        for row in table:
            for source in row.sources:
                protocol = _protocol(row.protocol, source)
                same = (egress_flag, protocol, row.ports, source)
                if same in seen:
                    continue
                seen.add(same)
                props: dict[str, object] = {
                    "group": Ref(key),
                    "egress": egress_flag,
                    "protocol": protocol,
                    "from_port": row.ports[0],
                    "to_port": row.ports[1],
                    "description": f"{row.purpose} from {_source_label(source)}",
                }
                if source == "self":
                    props["source_group"] = Ref(key)
                elif source in peers:
                    props["source_group"] = Ref(peers[source])
                elif source == VPC_IPV6:
                    props["cidr"] = Ref(VPC, "ipv6_cidr_block")
                elif source.startswith("sg-"):
                    # A group the user made (firewall_rules source_group = "sg-…").
                    props["source_group"] = source
                else:
                    props["cidr"] = source
                direction = "egress" if egress_flag else "ingress"
                rule_name = f"{name}-{group}-{row.purpose}-{_source_label(source)}"
                out.append(
                    Resource(
                        "security_group_rule",
                        f"{key}-{direction}-{row.purpose}-{_source_label(source)}",
                        rule_name,
                        props,
                    )
                )
    return out


def security(spec: Spec) -> list[Resource]:
    name = spec.cluster_name
    peers = {"controller": CONTROLLER_SG, "worker": WORKER_SG, "nlb": NLB_SG}
    return [
        Resource(
            "security_group",
            CONTROLLER_SG,
            f"{name}-controller",
            {"vpc": Ref(VPC), "description": f"{name} controllers"},
        ),
        Resource(
            "security_group",
            WORKER_SG,
            f"{name}-worker",
            {"vpc": Ref(VPC), "description": f"{name} workers"},
        ),
        Resource(
            "security_group",
            NLB_SG,
            f"{name}-nlb",
            # Without AWS's allow-all outbound rule: the NLB talks to the VPC only.
            {"vpc": Ref(VPC), "description": f"{name} load balancer", "default_egress": False},
        ),
        *rules(spec, "controller", CONTROLLER_SG, peers),
        *rules(spec, "worker", WORKER_SG, peers),
        *rules(spec, "nlb", NLB_SG, peers),
    ]


# AWS's default quota of inbound (and of outbound) rules per security group, counted apart
# for IPv4 and IPv6; a rule naming a security group counts in both.
RULES_PER_GROUP_QUOTA = 60


def quota_warnings(spec: Spec, resources: list[Resource]) -> list[str]:
    """Groups whose rules would pass AWS's default quota, which apply would then fail on."""
    counts: dict[tuple[str, bool, int], int] = {}
    for r in resources:
        if r.kind != "security_group_rule":
            continue
        cidr = r.props.get("cidr")
        if cidr is None:
            families: tuple[int, ...] = (4, 6)
        elif isinstance(cidr, Ref):
            # The VPC's IPv6 block, not assigned yet when the cluster is first planned.
            families = (6,)
        else:
            families = (ipaddress.ip_network(str(cidr)).version,)
        for family in families:
            slot = (r.props["group"].key, bool(r.props["egress"]), family)
            counts[slot] = counts.get(slot, 0) + 1
    names = {
        CONTROLLER_SG: f"{spec.cluster_name}-controller",
        WORKER_SG: f"{spec.cluster_name}-worker",
        NLB_SG: f"{spec.cluster_name}-nlb",
    }
    return [
        f"security group {names.get(key, key)} needs {n} {'outbound' if egress else 'inbound'} "
        f"IPv{family} rules, over AWS's default quota of {RULES_PER_GROUP_QUOTA}; raise the quota "
        "(Service Quotas: 'Inbound or outbound rules per security group') or narrow services, "
        "firewall_rules and their CIDRs"
        for (key, egress, family), n in sorted(counts.items())
        if n > RULES_PER_GROUP_QUOTA
    ]
