"""The network (facts §1): a dualstack VPC, its internet gateway, one route table with
separate default routes and the user's ``[[routes]]``, and one public subnet per availability
zone.

Routes cannot carry tags. The cluster owns a route of its table when it goes through the
cluster's own internet gateway (the engine sees to that), or when it is, exactly (destination
and target), a route squall was asked to make: those are recorded in the state directory
before they are made, so that a route removed from the cluster file is deleted, while a route
someone else adds to the table, or re-points, is never touched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from squall.engine.core import Ref, Resource, Transform
from squall.spec import ROUTE_TARGETS, Spec
from squall.state import State

VPC = "vpc"
IGW = "internet-gateway"
ROUTE_TABLE = "route-table"
ROUTES_MADE = "aws/routes.json"
ZONES = "aws/zones.json"

# (destination, target key, target id): a route exactly, as the record keeps it.
RouteKey = tuple[str, str, str]


def pinned_zones(available: list[str], state: State, *, pin: bool) -> list[str]:
    """The zones the cluster spans, fixed at its first apply.

    Subnets and controllers are placed by position in this list, and neither can move: a zone
    that is briefly impaired (so not "available") or a zone AWS adds later must not re-number
    them, or a plan would replace subnets and controllers and lose etcd's data with them.
    """
    stored = state.read_json(ZONES)
    if stored:
        return [str(z) for z in stored]
    if pin:
        state.write_json(ZONES, available)
    return available


def subnet_key(i: int) -> str:
    return f"subnet-{i}"


def subnet_refs(zones: list[str]) -> list[Ref]:
    return [Ref(subnet_key(i)) for i in range(len(zones))]


@dataclass(frozen=True)
class Cidrsubnet(Transform):
    """The ``index``-th subnet of a block with ``new_bits`` more prefix bits (like Terraform's
    cidrsubnet): the VPC's Amazon IPv6 /56 is only known once AWS assigns it."""

    new_bits: int
    index: int

    def __call__(self, value: str) -> str:
        return cidrsubnet(value, self.new_bits, self.index)


def cidrsubnet(block: str, new_bits: int, index: int) -> str:
    net = ipaddress.ip_network(block)
    prefix = net.prefixlen + new_bits
    if prefix > net.max_prefixlen or not 0 <= index < 2**new_bits:
        raise ValueError(f"{block} has no subnet {index} of /{prefix}")
    size = 2 ** (net.max_prefixlen - prefix)
    return str(ipaddress.ip_network((int(net.network_address) + index * size, prefix)))


def network(spec: Spec, zones: list[str]) -> list[Resource]:
    name = spec.cluster_name
    out = [
        Resource(
            "vpc",
            VPC,
            name,
            {
                "cidr_block": spec.host_cidr,
                "amazon_ipv6": True,
                "enable_dns_support": True,
                "enable_dns_hostnames": True,
            },
        ),
        Resource("internet_gateway", IGW, name, {"vpc": Ref(VPC)}),
        Resource("route_table", ROUTE_TABLE, name, {"vpc": Ref(VPC)}),
        # Separate route resources, never inline, so that users can add their own routes.
        Resource(
            "route",
            "route-ipv4-default",
            f"{name} 0.0.0.0/0",
            {"route_table": Ref(ROUTE_TABLE), "destination": "0.0.0.0/0", "gateway_id": Ref(IGW)},
        ),
        Resource(
            "route",
            "route-ipv6-default",
            f"{name} ::/0",
            {"route_table": Ref(ROUTE_TABLE), "destination": "::/0", "gateway_id": Ref(IGW)},
        ),
    ]
    out += routes(spec)
    for i, zone in enumerate(zones):
        subnet_name = f"{name}-public-{i}"
        out.append(
            Resource(
                "subnet",
                subnet_key(i),
                subnet_name,
                {
                    "vpc": Ref(VPC),
                    "availability_zone": zone,
                    "cidr_block": cidrsubnet(spec.host_cidr, 4, i),
                    "ipv6_cidr_block": Ref(VPC, "ipv6_cidr_block", Cidrsubnet(8, i)),
                    "map_public_ip_on_launch": True,
                    "assign_ipv6_address_on_creation": True,
                    "hostname_type": "resource-name",
                    "resource_name_dns_a_record": True,
                    "resource_name_dns_aaaa_record": True,
                },
            )
        )
        out.append(
            Resource(
                "route_table_association",
                f"{subnet_key(i)}-route-table",
                subnet_name,
                {"route_table": Ref(ROUTE_TABLE), "subnet": Ref(subnet_key(i))},
            )
        )
    return out


def routes(spec: Spec) -> list[Resource]:
    """The user's routes, each a separate route in the cluster's table."""
    out = []
    for r in spec.routes:
        target, value = r.target
        out.append(
            Resource(
                "route",
                f"route-{r.destination}",
                f"{spec.cluster_name} {r.destination}",
                {"route_table": Ref(ROUTE_TABLE), "destination": r.destination, target: value},
            )
        )
    return out


def route_keys(spec: Spec) -> set[RouteKey]:
    return {(r.destination, *r.target) for r in spec.routes}


def route_key(props: dict[str, object]) -> RouteKey | None:
    """A discovered route's key, or None when it has no single target squall could make."""
    given = [(t, str(props[t])) for t in ROUTE_TARGETS if props.get(t)]
    if len(given) != 1:
        return None
    return (str(props["destination"]), *given[0])


def made_routes(state: State) -> set[RouteKey]:
    return {(str(d), str(t), str(v)) for d, t, v in state.read_json(ROUTES_MADE) or []}


def record_routes(state: State, keys: set[RouteKey]) -> None:
    state.write_json(ROUTES_MADE, sorted(list(k) for k in keys))


def owns_route(made: set[RouteKey]) -> Callable[[dict[str, object]], bool]:
    def check(props: dict[str, object]) -> bool:
        return route_key(props) in made

    return check
