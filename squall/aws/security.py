"""Firewalls (facts §3): the controller and worker security groups and every rule.

The rules are data: one row per (protocol, ports, sources, purpose), expanded into one rule
resource per source so that each can be found, compared and removed on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from squall.aws.network import VPC
from squall.engine.core import Ref, Resource
from squall.spec import Spec

CONTROLLER_SG = "sg-controller"
WORKER_SG = "sg-worker"
ANY4 = "0.0.0.0/0"
ANY6 = "::/0"
ECHO_REQUEST = (8, 0)  # ICMP type 8, code 0; AWS keeps them in from_port / to_port


@dataclass(frozen=True)
class Row:
    protocol: str  # tcp | udp | icmp | -1
    ports: tuple[int, int]
    # "self", "controller", "worker" or a CIDR.
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
    # The NLB keeps client addresses, so the apiserver port is open to the world.
    Row("tcp", (6443, 6443), (ANY4,), "apiserver"),
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


def rows(group: str, networking: str) -> tuple[tuple[Row, ...], tuple[Row, ...]]:
    """(ingress, egress) rows of ``group`` ("controller" or "worker") for a CNI."""
    ingress = CONTROLLER_INGRESS if group == "controller" else WORKER_INGRESS
    return tuple(r for r in ingress if networking == "cilium" or not r.cilium_only), EGRESS


def _source_label(source: str) -> str:
    return {ANY4: "any-ipv4", ANY6: "any-ipv6"}.get(source, source)


def rules(spec: Spec, group: str, key: str, peers: dict[str, str]) -> list[Resource]:
    """Rule resources for ``group`` whose security group is desired under ``key``."""
    name = spec.cluster_name
    ingress, egress = rows(group, spec.networking)
    out = []
    for egress_flag, table in ((False, ingress), (True, egress)):
        for row in table:
            for source in row.sources:
                props: dict[str, object] = {
                    "group": Ref(key),
                    "egress": egress_flag,
                    "protocol": row.protocol,
                    "from_port": row.ports[0],
                    "to_port": row.ports[1],
                    "description": f"{row.purpose} from {_source_label(source)}",
                }
                if source == "self":
                    props["source_group"] = Ref(key)
                elif source in peers:
                    props["source_group"] = Ref(peers[source])
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
    peers = {"controller": CONTROLLER_SG, "worker": WORKER_SG}
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
        *rules(spec, "controller", CONTROLLER_SG, peers),
        *rules(spec, "worker", WORKER_SG, peers),
    ]
