"""DNS (facts §2): the apiserver name as A and AAAA aliases of the load balancer, and one A
record per etcd member."""

from __future__ import annotations

import re
from collections.abc import Callable

from squall.aws.controllers import controller_key
from squall.aws.nlb import NLB
from squall.engine.aws import Aws, code, explain
from squall.engine.core import Ref, Resource
from squall.engine.kinds.route53 import fqdn
from squall.errors import SquallError
from squall.spec import Spec


def records(spec: Spec) -> list[Resource]:
    out = []
    for type_ in ("A", "AAAA"):
        out.append(
            Resource(
                "record",
                f"apiserver-{type_.lower()}",
                f"{spec.api_fqdn} {type_}",
                {
                    "zone": spec.dns_zone_id,
                    "name": fqdn(spec.api_fqdn),
                    "type": type_,
                    "alias": {
                        "dns_name": Ref(NLB, "dns_name"),
                        "zone_id": Ref(NLB, "zone_id"),
                        "evaluate_target_health": True,
                    },
                },
            )
        )
    for i in range(spec.controller_count):
        out.append(
            Resource(
                "record",
                f"etcd-{i}",
                f"{spec.etcd_fqdn(i)} A",
                {
                    "zone": spec.dns_zone_id,
                    "name": fqdn(spec.etcd_fqdn(i)),
                    "type": "A",
                    "ttl": 300,
                    "values": [Ref(controller_key(i), "private_ip")],
                },
            )
        )
    return out


def owns(spec: Spec) -> Callable[[str, str], bool]:
    """Which names in the zone belong to this cluster (records carry no tags)."""
    api = fqdn(spec.api_fqdn)
    etcd = re.compile(
        rf"^{re.escape(spec.cluster_name)}-etcd\d+\.{re.escape(fqdn(spec.dns_zone))}$"
    )

    def check(name: str, type_: str) -> bool:
        name = fqdn(name)
        return (name == api and type_ in ("A", "AAAA")) or (bool(etcd.match(name)) and type_ == "A")

    return check


def check_zone(aws: Aws, spec: Spec) -> None:
    """The hosted zone exists and is the zone the cluster file names."""
    try:
        zone = aws.client("route53").get_hosted_zone(Id=spec.dns_zone_id)["HostedZone"]
    except Exception as err:
        if code(err) == "NoSuchHostedZone":
            raise SquallError(
                f"dns_zone_id: no Route53 hosted zone {spec.dns_zone_id}; set it to the id of "
                f"the zone {spec.dns_zone}"
            ) from None
        raise explain(err, f"reading Route53 hosted zone {spec.dns_zone_id}") from None
    if fqdn(zone["Name"]) != fqdn(spec.dns_zone):
        raise SquallError(
            f"dns_zone_id: {spec.dns_zone_id} is the zone {zone['Name'].rstrip('.')}, not "
            f"{spec.dns_zone}; fix dns_zone or dns_zone_id"
        )
