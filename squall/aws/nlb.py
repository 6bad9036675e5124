"""Load balancing (facts §2): one dualstack network load balancer for kube-apiserver (6443)
and ingress (80/443), its three target groups, and one listener and target group per
``[[services]]`` entry (TCP, UDP or both, external port to worker node port).

squall goes beyond Typhoon: the NLB carries its own security group (``NAME-nlb``, made in
:mod:`squall.aws.security`), which is where ``apiserver_cidrs`` and each service's ``allow``
filter the NLB's clients. AWS attaches security groups to an NLB only if it was created with
one, so an NLB made without (by an older squall) is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping

from squall.aws.network import IGW, VPC, subnet_refs
from squall.aws.security import NLB_SG
from squall.engine.core import Ref, Resource
from squall.spec import Spec

NLB = "nlb"
TG_CONTROLLERS = "tg-controllers"
TG_WORKERS_HTTP = "tg-workers-http"
TG_WORKERS_HTTPS = "tg-workers-https"


def service_tg(service: str) -> str:
    return f"tg-service-{service}"


def _target_group(
    key: str, name: str, port: int, health: Mapping[str, object], protocol: str = "TCP"
) -> Resource:
    return Resource(
        "target_group",
        key,
        name,
        {
            "protocol": protocol,
            "port": port,
            "vpc": Ref(VPC),
            "target_type": "instance",
            "healthy_threshold": 3,
            "unhealthy_threshold": 3,
            "health_check_interval": 10,
            **health,
        },
    )


def _listener(name: str, port: int, target_group: str, protocol: str = "TCP") -> Resource:
    return Resource(
        "listener",
        f"listener-{port}",
        name,
        {
            "load_balancer": Ref(NLB),
            "port": port,
            "protocol": protocol,
            "target_group": Ref(target_group),
        },
    )


def nlb(spec: Spec, zones: list[str]) -> list[Resource]:
    name = spec.cluster_name
    ingress_health = {
        # The ingress controller's health endpoint; NLB HTTP checks need no TLS.
        "health_check_protocol": "HTTP",
        "health_check_port": "10254",
        "health_check_path": "/healthz",
    }
    return [
        Resource(
            "load_balancer",
            NLB,
            f"{name}-nlb",
            {
                "type": "network",
                "scheme": "internet-facing",
                "ip_address_type": "dualstack",
                "subnets": subnet_refs(zones),
                "cross_zone": True,
                # EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic is left at AWS's
                # default: it concerns only clients that come through a PrivateLink endpoint
                # service, which squall does not make; internet clients always meet the rules.
                "security_groups": [Ref(NLB_SG)],
                "created_with_security_groups": True,
            },
            # Internet-facing load balancers need the VPC's gateway in place.
            after=(IGW,),
        ),
        _target_group(
            TG_CONTROLLERS,
            f"{name}-controllers",
            6443,
            {
                # A ready apiserver, not just an open port. NLB HTTPS checks do not verify
                # the certificate, and the apiserver lets anonymous clients read /readyz.
                "health_check_protocol": "HTTPS",
                "health_check_port": "6443",
                "health_check_path": "/readyz",
                # Controllers reach the apiserver through the NLB too (kubelet, scheduler,
                # controller-manager). With client addresses kept, a controller the NLB sends
                # back to itself sees its own address as the source and drops the reply, so a
                # one-controller cluster could never reach its apiserver. Without, targets
                # see the NLB's private addresses, which the controllers admit by the NLB's
                # security group; clients are filtered there, by apiserver_cidrs.
                "preserve_client_ip": False,
            },
        ),
        _target_group(TG_WORKERS_HTTP, f"{name}-workers-http", 80, ingress_health),
        _target_group(TG_WORKERS_HTTPS, f"{name}-workers-https", 443, ingress_health),
        _listener(f"{name}-apiserver", 6443, TG_CONTROLLERS),
        _listener(f"{name}-ingress-http", 80, TG_WORKERS_HTTP),
        _listener(f"{name}-ingress-https", 443, TG_WORKERS_HTTPS),
        *services(spec),
    ]


def services(spec: Spec) -> list[Resource]:
    """A target group of workers on the node port and a listener on the external port.

    A target group's port and protocol are fixed in AWS, so a changed ``node_port`` or
    ``protocol`` makes a new group (under the engine's other name for it, beside the old one),
    moves the listener and the worker groups to it, then deletes the old one. A changed
    protocol makes a new listener too. A port where someone else's listener already sits is
    refused, not taken over.
    """
    out = []
    for svc in spec.services:
        protocol = svc.protocol.upper()
        if svc.health_check_path:
            health: dict[str, object] = {
                "health_check_protocol": "HTTP",
                "health_check_path": svc.health_check_path,
            }
        else:
            # NLB checks speak TCP or HTTP only: TCP on the node port, or on the
            # health_check_port a UDP service must name.
            health = {"health_check_protocol": "TCP", "health_check_path": None}
        health["health_check_port"] = str(svc.health_port)
        tg_name = f"{spec.cluster_name}-{svc.name}"
        out.append(_target_group(service_tg(svc.name), tg_name, svc.node_port, health, protocol))
        out.append(_listener(tg_name, svc.port, service_tg(svc.name), protocol))
    return out
