"""EC2 resource kinds: VPC, internet gateway, route table, route, subnet, association,
security group and rule, instance, launch template.

Props are flat and named after what they mean, not after the API's nesting, so that plans read
well and diffs are per field.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Hashable
from typing import Any

import botocore.exceptions

from squall.engine.aws import code, create_once, gone, wait_for
from squall.engine.core import OWNER_TAG, Actual, Context, EngineError, Kind

# Instances in these states still exist for adoption; terminated ones are history.
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
ASG_TAG = "aws:autoscaling:groupName"
# How many terminated instances a controller's idempotency token may lead through.
MAX_TOKEN_GENERATIONS = 20


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", []) or []}


def _owned(item: dict[str, Any], ctx: Context) -> bool:
    return tags_of(item).get(OWNER_TAG) == ctx.cluster


def ec2(ctx: Context) -> Any:
    return ctx.aws.client("ec2")


def token(*parts: str) -> str:
    """An idempotency token: the same inputs give the same token, so a retried create whose
    first response was lost returns the first resource instead of making a second."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:64]


def _by_name(ctx: Context, operation: str, key: str, id_key: str, name: str) -> str | None:
    """The id of the one resource of the cluster with this Name tag, if any."""
    items = ctx.aws.pages(
        "ec2",
        operation,
        key,
        Filters=[ctx.owner_filter, {"Name": "tag:Name", "Values": [name]}],
    )
    if len(items) > 1:
        ids = ", ".join(i[id_key] for i in items)
        raise EngineError(f"{name}: found {len(items)} ({ids}), expected one; delete the extras")
    return items[0][id_key] if items else None


class Vpc(Kind):
    kind = "vpc"
    immutable = frozenset({"cidr_block"})
    # An update may be the one that completes the IPv6 block.
    volatile = frozenset({"ipv6_cidr_block"})

    def discover(self, ctx: Context) -> list[Actual]:
        vpcs = ctx.aws.pages("ec2", "describe_vpcs", "Vpcs", Filters=[ctx.owner_filter])
        return [self._actual(ctx, v) for v in vpcs]

    def _actual(self, ctx: Context, v: dict[str, Any]) -> Actual:
        vpc_id = v["VpcId"]
        ipv6 = [
            a["Ipv6CidrBlock"]
            for a in v.get("Ipv6CidrBlockAssociationSet", [])
            if a.get("Ipv6CidrBlockState", {}).get("State") == "associated"
        ]
        props: dict[str, Any] = {"cidr_block": v["CidrBlock"], "amazon_ipv6": bool(ipv6)}
        for attr, prop in (
            ("enableDnsSupport", "enable_dns_support"),
            ("enableDnsHostnames", "enable_dns_hostnames"),
        ):
            got = ctx.settle(
                functools.partial(ec2(ctx).describe_vpc_attribute, VpcId=vpc_id, Attribute=attr)
            )
            key = attr[0].upper() + attr[1:]
            props[prop] = bool(got[key]["Value"])
        return Actual(
            self.kind,
            vpc_id,
            tags_of(v).get("Name", vpc_id),
            props,
            {"ipv6_cidr_block": ipv6[0] if ipv6 else None, "cidr_block": v["CidrBlock"]},
        )

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        vpc_id = create_once(
            ctx.aws,
            "ec2",
            lambda c: c.create_vpc(
                CidrBlock=props["cidr_block"],
                AmazonProvidedIpv6CidrBlock=bool(props.get("amazon_ipv6")),
                TagSpecifications=ctx.tag_spec("vpc", name),
            )["Vpc"]["VpcId"],
            lambda: _by_name(ctx, "describe_vpcs", "Vpcs", "VpcId", name),
            timeout=ctx.consistency_timeout,
        )
        ctx.settle(lambda: ec2(ctx).get_waiter("vpc_available").wait(VpcIds=[vpc_id]))
        self._set_dns(ctx, vpc_id, props, {"enable_dns_support", "enable_dns_hostnames"})
        return self._settled(ctx, vpc_id, props)

    def _set_dns(self, ctx: Context, vpc_id: str, props: dict[str, Any], which: set[str]) -> None:
        # AWS takes one VPC attribute per call.
        if "enable_dns_support" in which:
            ctx.settle(
                lambda: ec2(ctx).modify_vpc_attribute(
                    VpcId=vpc_id, EnableDnsSupport={"Value": bool(props["enable_dns_support"])}
                )
            )
        if "enable_dns_hostnames" in which:
            ctx.settle(
                lambda: ec2(ctx).modify_vpc_attribute(
                    VpcId=vpc_id,
                    EnableDnsHostnames={"Value": bool(props["enable_dns_hostnames"])},
                )
            )

    def _settled(self, ctx: Context, vpc_id: str, props: dict[str, Any]) -> Actual:
        """The VPC once its Amazon IPv6 block, which arrives asynchronously, is associated."""

        def ready() -> dict[str, Any] | None:
            v = ctx.settle(lambda: ec2(ctx).describe_vpcs(VpcIds=[vpc_id]))["Vpcs"][0]
            blocks = v.get("Ipv6CidrBlockAssociationSet", [])
            states = [b.get("Ipv6CidrBlockState", {}).get("State") for b in blocks]
            if props.get("amazon_ipv6") and "associated" not in states:
                if states and all(s in ("failed", "disassociated") for s in states):
                    raise EngineError(f"VPC {vpc_id}: AWS failed to assign an IPv6 block")
                return None
            return v

        v = wait_for(ready, what=f"the IPv6 block of VPC {vpc_id}", timeout=ctx.wait_timeout)
        return self._actual(ctx, v)

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        if "amazon_ipv6" in changed and props["amazon_ipv6"]:
            ec2(ctx).associate_vpc_cidr_block(VpcId=actual.id, AmazonProvidedIpv6CidrBlock=True)
        if "amazon_ipv6" in changed and not props["amazon_ipv6"]:
            raise EngineError(f"vpc {name}: removing the IPv6 block is not supported")
        self._set_dns(ctx, actual.id, props, changed)
        return self._settled(ctx, actual.id, props)

    def delete(self, ctx: Context, actual: Actual) -> None:
        ec2(ctx).delete_vpc(VpcId=actual.id)


class InternetGateway(Kind):
    kind = "internet_gateway"
    depends_on = ("vpc",)

    def discover(self, ctx: Context) -> list[Actual]:
        gws = ctx.aws.pages(
            "ec2", "describe_internet_gateways", "InternetGateways", Filters=[ctx.owner_filter]
        )
        return [self._actual(g) for g in gws]

    def _actual(self, g: dict[str, Any]) -> Actual:
        attached = [
            a["VpcId"]
            for a in g.get("Attachments", [])
            if a.get("State") in ("attached", "available", "attaching")
        ]
        gw_id = g["InternetGatewayId"]
        vpc = attached[0] if attached else None
        return Actual(self.kind, gw_id, tags_of(g).get("Name", gw_id), {"vpc": vpc})

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        gw_id = create_once(
            ctx.aws,
            "ec2",
            lambda c: c.create_internet_gateway(
                TagSpecifications=ctx.tag_spec("internet-gateway", name)
            )["InternetGateway"]["InternetGatewayId"],
            lambda: _by_name(
                ctx, "describe_internet_gateways", "InternetGateways", "InternetGatewayId", name
            ),
            timeout=ctx.consistency_timeout,
        )
        self._attach(ctx, gw_id, props["vpc"])
        return Actual(self.kind, gw_id, name, {"vpc": props["vpc"]})

    def _attach(self, ctx: Context, gw_id: str, vpc_id: str) -> None:
        try:
            ctx.settle(
                lambda: ec2(ctx).attach_internet_gateway(InternetGatewayId=gw_id, VpcId=vpc_id)
            )
        except botocore.exceptions.ClientError as err:
            # A resent attach whose first response was lost finds the gateway attached.
            if code(err) != "Resource.AlreadyAssociated" or self._attached_to(ctx, gw_id) != vpc_id:
                raise

    def _attached_to(self, ctx: Context, gw_id: str) -> str | None:
        got = ctx.settle(lambda: ec2(ctx).describe_internet_gateways(InternetGatewayIds=[gw_id]))[
            "InternetGateways"
        ]
        return self._actual(got[0]).props["vpc"] if got else None

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        # A run interrupted between create and attach leaves a detached gateway: attach it.
        if actual.props.get("vpc"):
            self._detach(ctx, actual.id, actual.props["vpc"])
        self._attach(ctx, actual.id, props["vpc"])
        return Actual(self.kind, actual.id, name, {"vpc": props["vpc"]})

    def _detach(self, ctx: Context, gw_id: str, vpc_id: str) -> None:
        try:
            ec2(ctx).detach_internet_gateway(InternetGatewayId=gw_id, VpcId=vpc_id)
        except botocore.exceptions.ClientError as err:
            if code(err) != "Gateway.NotAttached" and not gone(err):
                raise

    def delete(self, ctx: Context, actual: Actual) -> None:
        if actual.props.get("vpc"):
            self._detach(ctx, actual.id, actual.props["vpc"])
        ec2(ctx).delete_internet_gateway(InternetGatewayId=actual.id)


def _route_tables(ctx: Context) -> list[dict[str, Any]]:
    return ctx.memo(
        "ec2:route_tables",
        lambda: ctx.aws.pages(
            "ec2", "describe_route_tables", "RouteTables", Filters=[ctx.owner_filter]
        ),
    )


class RouteTable(Kind):
    kind = "route_table"
    depends_on = ("vpc",)
    immutable = frozenset({"vpc"})

    def discover(self, ctx: Context) -> list[Actual]:
        return [
            Actual(
                self.kind,
                t["RouteTableId"],
                tags_of(t).get("Name", t["RouteTableId"]),
                {"vpc": t["VpcId"]},
            )
            for t in _route_tables(ctx)
        ]

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        table_id = create_once(
            ctx.aws,
            "ec2",
            lambda c: ctx.settle(
                lambda: c.create_route_table(
                    VpcId=props["vpc"], TagSpecifications=ctx.tag_spec("route-table", name)
                )
            )["RouteTable"]["RouteTableId"],
            lambda: _by_name(ctx, "describe_route_tables", "RouteTables", "RouteTableId", name),
            timeout=ctx.consistency_timeout,
        )
        return Actual(self.kind, table_id, name, {"vpc": props["vpc"]})

    def delete(self, ctx: Context, actual: Actual) -> None:
        ec2(ctx).delete_route_table(RouteTableId=actual.id)


ROUTE_TARGETS = {
    "gateway_id": "GatewayId",
    "nat_gateway_id": "NatGatewayId",
    "transit_gateway_id": "TransitGatewayId",
    "vpc_peering_connection_id": "VpcPeeringConnectionId",
    "network_interface_id": "NetworkInterfaceId",
}


def _is_ipv6(cidr: str) -> bool:
    return ":" in cidr


class Route(Kind):
    """One route of a route table. Routes have no tags: they are found by table and
    destination, and only routes through the cluster's own internet gateways count as owned,
    so routes users add to the table stay theirs."""

    kind = "route"
    depends_on = ("route_table", "internet_gateway")
    immutable = frozenset({"route_table", "destination"})

    def discover(self, ctx: Context) -> list[Actual]:
        own_gateways = {a.id for a in ctx.actuals("internet_gateway")}
        out = []
        for t in _route_tables(ctx):
            for r in t.get("Routes", []):
                if r.get("Origin") != "CreateRoute":
                    continue
                dest = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
                if not dest:
                    continue
                props = {"route_table": t["RouteTableId"], "destination": dest}
                for prop, field in ROUTE_TARGETS.items():
                    if r.get(field):
                        props[prop] = r[field]
                out.append(
                    Actual(
                        self.kind,
                        f"{t['RouteTableId']}:{dest}",
                        f"{tags_of(t).get('Name', t['RouteTableId'])} {dest}",
                        props,
                        owned=props.get("gateway_id") in own_gateways,
                        ident=(t["RouteTableId"], dest),
                    )
                )
        return out

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return (props["route_table"], props["destination"])

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        dest = props["destination"]
        args: dict[str, Any] = {"RouteTableId": props["route_table"]}
        args["DestinationIpv6CidrBlock" if _is_ipv6(dest) else "DestinationCidrBlock"] = dest
        for prop, field in ROUTE_TARGETS.items():
            if props.get(prop):
                args[field] = props[prop]
        return args

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        try:
            ctx.settle(lambda: ec2(ctx).create_route(**self._args(props)))
        except botocore.exceptions.ClientError as err:
            # RouteAlreadyExists: an interrupted run made it; point it where it belongs.
            if code(err) != "RouteAlreadyExists":
                raise
            ctx.settle(lambda: ec2(ctx).replace_route(**self._args(props)))
        return self._made(name, props)

    def _made(self, name: str, props: dict[str, Any]) -> Actual:
        return Actual(
            self.kind,
            f"{props['route_table']}:{props['destination']}",
            name,
            dict(props),
            ident=(props["route_table"], props["destination"]),
        )

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        ec2(ctx).replace_route(**self._args(props))
        return self._made(name, props)

    def delete(self, ctx: Context, actual: Actual) -> None:
        dest = actual.props["destination"]
        key = "DestinationIpv6CidrBlock" if _is_ipv6(dest) else "DestinationCidrBlock"
        ec2(ctx).delete_route(RouteTableId=actual.props["route_table"], **{key: dest})

    def deleted_with(self, actual: Actual) -> tuple[str, ...]:
        return (actual.props["route_table"],)


class Subnet(Kind):
    kind = "subnet"
    depends_on = ("vpc",)
    immutable = frozenset({"vpc", "availability_zone", "cidr_block", "ipv6_cidr_block"})

    def discover(self, ctx: Context) -> list[Actual]:
        subnets = ctx.aws.pages("ec2", "describe_subnets", "Subnets", Filters=[ctx.owner_filter])
        return [self._actual(s) for s in subnets]

    def _actual(self, s: dict[str, Any]) -> Actual:
        ipv6 = [
            a["Ipv6CidrBlock"]
            for a in s.get("Ipv6CidrBlockAssociationSet", [])
            if "associated" in str(a.get("Ipv6CidrBlockState", {}).get("State"))
        ]
        dns = s.get("PrivateDnsNameOptionsOnLaunch", {})
        props = {
            "vpc": s["VpcId"],
            "availability_zone": s["AvailabilityZone"],
            "cidr_block": s["CidrBlock"],
            "ipv6_cidr_block": ipv6[0] if ipv6 else None,
            "map_public_ip_on_launch": bool(s.get("MapPublicIpOnLaunch")),
            "assign_ipv6_address_on_creation": bool(s.get("AssignIpv6AddressOnCreation")),
            "hostname_type": dns.get("HostnameType"),
            "resource_name_dns_a_record": bool(dns.get("EnableResourceNameDnsARecord")),
            "resource_name_dns_aaaa_record": bool(dns.get("EnableResourceNameDnsAAAARecord")),
        }
        return Actual(
            self.kind,
            s["SubnetId"],
            tags_of(s).get("Name", s["SubnetId"]),
            props,
            {"availability_zone": s["AvailabilityZone"]},
        )

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        args: dict[str, Any] = {
            "VpcId": props["vpc"],
            "CidrBlock": props["cidr_block"],
            "AvailabilityZone": props["availability_zone"],
            "TagSpecifications": ctx.tag_spec("subnet", name),
        }
        if props.get("ipv6_cidr_block"):
            args["Ipv6CidrBlock"] = props["ipv6_cidr_block"]
        subnet_id = create_once(
            ctx.aws,
            "ec2",
            lambda c: ctx.settle(lambda: c.create_subnet(**args))["Subnet"]["SubnetId"],
            lambda: _by_name(ctx, "describe_subnets", "Subnets", "SubnetId", name),
            timeout=ctx.consistency_timeout,
        )
        self._modify(ctx, subnet_id, props, set(props))
        return self._read(ctx, subnet_id)

    def _read(self, ctx: Context, subnet_id: str) -> Actual:
        got = ctx.settle(lambda: ec2(ctx).describe_subnets(SubnetIds=[subnet_id]))
        return self._actual(got["Subnets"][0])

    def _modify(self, ctx: Context, subnet_id: str, props: dict[str, Any], which: set[str]) -> None:
        # AWS takes one subnet attribute per call.
        calls: list[dict[str, Any]] = []
        for prop, arg in (
            ("map_public_ip_on_launch", "MapPublicIpOnLaunch"),
            ("assign_ipv6_address_on_creation", "AssignIpv6AddressOnCreation"),
            ("resource_name_dns_a_record", "EnableResourceNameDnsARecordOnLaunch"),
            ("resource_name_dns_aaaa_record", "EnableResourceNameDnsAAAARecordOnLaunch"),
        ):
            if prop in which and prop in props:
                calls.append({arg: {"Value": bool(props[prop])}})
        if "hostname_type" in which and props.get("hostname_type"):
            calls.append({"PrivateDnsHostnameTypeOnLaunch": props["hostname_type"]})
        for kwargs in calls:
            ctx.settle(
                functools.partial(ec2(ctx).modify_subnet_attribute, SubnetId=subnet_id, **kwargs)
            )

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        self._modify(ctx, actual.id, props, changed)
        return self._read(ctx, actual.id)

    def delete(self, ctx: Context, actual: Actual) -> None:
        ec2(ctx).delete_subnet(SubnetId=actual.id)


class RouteTableAssociation(Kind):
    kind = "route_table_association"
    depends_on = ("route_table", "subnet")
    immutable = frozenset({"route_table", "subnet"})

    def discover(self, ctx: Context) -> list[Actual]:
        out = []
        for t in _route_tables(ctx):
            for a in t.get("Associations", []):
                if a.get("Main") or not a.get("SubnetId"):
                    continue
                if a.get("AssociationState", {}).get("State") not in (None, "associated"):
                    continue
                out.append(
                    Actual(
                        self.kind,
                        a["RouteTableAssociationId"],
                        f"{tags_of(t).get('Name', t['RouteTableId'])} {a['SubnetId']}",
                        {"route_table": t["RouteTableId"], "subnet": a["SubnetId"]},
                        ident=(t["RouteTableId"], a["SubnetId"]),
                    )
                )
        return out

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return (props["route_table"], props["subnet"])

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        try:
            assoc = ctx.settle(
                lambda: ec2(ctx).associate_route_table(
                    RouteTableId=props["route_table"], SubnetId=props["subnet"]
                )
            )["AssociationId"]
        except botocore.exceptions.ClientError as err:
            if code(err) != "Resource.AlreadyAssociated":
                raise
            assoc = self._existing(ctx, props)
        return Actual(
            self.kind,
            assoc,
            name,
            dict(props),
            ident=(props["route_table"], props["subnet"]),
        )

    def _existing(self, ctx: Context, props: dict[str, Any]) -> str:
        """The subnet's association, made by a resent call or by someone else."""
        tables = ctx.settle(
            lambda: ec2(ctx).describe_route_tables(
                Filters=[{"Name": "association.subnet-id", "Values": [props["subnet"]]}]
            )
        )["RouteTables"]
        for t in tables:
            for a in t.get("Associations", []):
                if a.get("SubnetId") == props["subnet"]:
                    if t["RouteTableId"] != props["route_table"]:
                        # The subnet points at another table: move it to the wanted one.
                        got = ec2(ctx).replace_route_table_association(
                            AssociationId=a["RouteTableAssociationId"],
                            RouteTableId=props["route_table"],
                        )
                        return str(got["NewAssociationId"])
                    return str(a["RouteTableAssociationId"])
        raise EngineError(f"subnet {props['subnet']}: AWS reports an association it cannot list")

    def delete(self, ctx: Context, actual: Actual) -> None:
        ec2(ctx).disassociate_route_table(AssociationId=actual.id)


# The outbound rules AWS gives every new security group: all traffic to anywhere.
ALLOW_ALL_EGRESS = (("IpRanges", "CidrIp", "0.0.0.0/0"), ("Ipv6Ranges", "CidrIpv6", "::/0"))


def _allow_all_egress(group: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's outbound rules that allow all traffic to anywhere, as IpPermissions."""
    out = []
    for perm in group.get("IpPermissionsEgress", []):
        if perm.get("IpProtocol") != "-1":
            continue
        for ranges, key, cidr in ALLOW_ALL_EGRESS:
            if any(r.get(key) == cidr for r in perm.get(ranges, [])):
                out.append({"IpProtocol": "-1", ranges: [{key: cidr}]})
    return out


class SecurityGroup(Kind):
    """A security group. The optional ``default_egress`` prop says whether the group keeps
    the allow-all outbound rule AWS gives it; left out, that rule is not looked at."""

    kind = "security_group"
    depends_on = ("vpc",)
    immutable = frozenset({"vpc", "description"})

    def discover(self, ctx: Context) -> list[Actual]:
        groups = ctx.aws.pages(
            "ec2", "describe_security_groups", "SecurityGroups", Filters=[ctx.owner_filter]
        )
        return [self._actual(g) for g in groups]

    def _actual(self, g: dict[str, Any]) -> Actual:
        props = {
            "vpc": g.get("VpcId"),
            "description": g.get("Description"),
            "default_egress": bool(_allow_all_egress(g)),
        }
        return Actual(self.kind, g["GroupId"], g["GroupName"], props)

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        def find() -> str | None:
            found = ctx.settle(
                lambda: ec2(ctx).describe_security_groups(
                    Filters=[
                        ctx.owner_filter,
                        {"Name": "vpc-id", "Values": [props["vpc"]]},
                        {"Name": "group-name", "Values": [name]},
                    ]
                )
            )["SecurityGroups"]
            return str(found[0]["GroupId"]) if found else None

        try:
            group_id = create_once(
                ctx.aws,
                "ec2",
                lambda c: ctx.settle(
                    lambda: c.create_security_group(
                        GroupName=name,
                        Description=props["description"],
                        VpcId=props["vpc"],
                        TagSpecifications=ctx.tag_spec("security-group", name),
                    )
                )["GroupId"],
                find,
                timeout=ctx.consistency_timeout,
            )
        except botocore.exceptions.ClientError as err:
            # Resent after a lost response that a look-up did not yet see: it is there.
            if code(err) != "InvalidGroup.Duplicate":
                raise
            found = find()
            if found is None:
                raise
            group_id = found
        if props.get("default_egress") is False:
            self._drop_default_egress(ctx, group_id)
        return Actual(self.kind, group_id, name, dict(props))

    def _drop_default_egress(self, ctx: Context, group_id: str) -> None:
        group = ctx.settle(lambda: ec2(ctx).describe_security_groups(GroupIds=[group_id]))
        perms = _allow_all_egress(group["SecurityGroups"][0])
        if not perms:
            return
        try:
            ctx.settle(
                lambda: ec2(ctx).revoke_security_group_egress(GroupId=group_id, IpPermissions=perms)
            )
        except botocore.exceptions.ClientError as err:
            # A resend after a lost response: the first call took the rules away.
            if code(err) != "InvalidPermission.NotFound":
                raise

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        # Only default_egress can change in place; the other props force a replacement.
        if props.get("default_egress") is False:
            self._drop_default_egress(ctx, actual.id)
        elif props.get("default_egress"):
            try:
                ec2(ctx).authorize_security_group_egress(
                    GroupId=actual.id,
                    IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
                )
            except botocore.exceptions.ClientError as err:
                if code(err) != "InvalidPermission.Duplicate":
                    raise
        return Actual(self.kind, actual.id, name, dict(props))

    def delete(self, ctx: Context, actual: Actual) -> None:
        ec2(ctx).delete_security_group(GroupId=actual.id)


def _rule_ident(props: dict[str, Any]) -> tuple[Any, ...]:
    source = ("cidr", props["cidr"]) if props.get("cidr") else ("group", props.get("source_group"))
    return (
        props["group"],
        bool(props["egress"]),
        str(props["protocol"]),
        int(props["from_port"]),
        int(props["to_port"]),
        *source,
    )


class SecurityGroupRule(Kind):
    """One ingress or egress rule. Found by content inside the cluster's groups; owned when it
    carries the cluster's tag (rules users add to a group are left alone)."""

    kind = "security_group_rule"
    depends_on = ("security_group",)
    immutable = frozenset({"group", "egress", "protocol", "from_port", "to_port", "cidr"})
    create_only = frozenset({"description"})

    def discover(self, ctx: Context) -> list[Actual]:
        groups = [a.id for a in ctx.actuals("security_group")]
        if not groups:
            return []
        rules = ctx.aws.pages(
            "ec2",
            "describe_security_group_rules",
            "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": groups}],
        )
        return [self._actual(ctx, r) for r in rules]

    def _actual(self, ctx: Context, r: dict[str, Any]) -> Actual:
        props = {
            "group": r["GroupId"],
            "egress": bool(r["IsEgress"]),
            "protocol": str(r["IpProtocol"]),
            "from_port": int(r.get("FromPort", -1)),
            "to_port": int(r.get("ToPort", -1)),
            "cidr": r.get("CidrIpv4") or r.get("CidrIpv6"),
            "source_group": r.get("ReferencedGroupInfo", {}).get("GroupId"),
        }
        name = tags_of(r).get("Name") or r["SecurityGroupRuleId"]
        return Actual(
            self.kind,
            r["SecurityGroupRuleId"],
            name,
            props,
            owned=_owned(r, ctx),
            ident=_rule_ident(props),
        )

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return _rule_ident(props)

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        perm: dict[str, Any] = {
            "IpProtocol": props["protocol"],
            "FromPort": props["from_port"],
            "ToPort": props["to_port"],
        }
        desc = {"Description": props["description"]} if props.get("description") else {}
        cidr = props.get("cidr")
        if cidr and _is_ipv6(cidr):
            perm["Ipv6Ranges"] = [{"CidrIpv6": cidr, **desc}]
        elif cidr:
            perm["IpRanges"] = [{"CidrIp": cidr, **desc}]
        else:
            perm["UserIdGroupPairs"] = [{"GroupId": props["source_group"], **desc}]
        operation = (
            "authorize_security_group_egress"
            if props["egress"]
            else "authorize_security_group_ingress"
        )

        def send(client: Any) -> Actual:
            got = ctx.settle(
                lambda: getattr(client, operation)(
                    GroupId=props["group"],
                    IpPermissions=[perm],
                    TagSpecifications=ctx.tag_spec("security-group-rule", name),
                )
            )
            rule_id = got["SecurityGroupRules"][0]["SecurityGroupRuleId"]
            keys = ("group", "egress", "protocol", "from_port", "to_port", "cidr", "source_group")
            made = {k: props.get(k) for k in keys}
            return Actual(self.kind, rule_id, name, made, ident=_rule_ident(props))

        try:
            # A resend is harmless (AWS answers Duplicate), but a group has many rules and
            # botocore's retries of one client share a budget that lost responses drain, so
            # an unknown outcome is looked up here rather than resent by botocore.
            return create_once(
                ctx.aws,
                "ec2",
                send,
                lambda: self._find(ctx, props),
                timeout=ctx.consistency_timeout,
            )
        except botocore.exceptions.ClientError as err:
            if code(err) != "InvalidPermission.Duplicate":
                raise
            return self._existing(ctx, name, props)

    def _find(self, ctx: Context, props: dict[str, Any]) -> Actual | None:
        rules = ctx.settle(
            lambda: ctx.aws.pages(
                "ec2",
                "describe_security_group_rules",
                "SecurityGroupRules",
                Filters=[{"Name": "group-id", "Values": [props["group"]]}],
            )
        )
        want = _rule_ident(props)
        for r in rules:
            a = self._actual(ctx, r)
            if a.ident == want:
                return a
        return None

    def _existing(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        """The rule AWS already has (an interrupted run, or a group's default egress)."""
        found = self._find(ctx, props)
        if found is None:
            raise EngineError(f"security group rule {name}: AWS reports it both exists and not")
        return found

    def delete(self, ctx: Context, actual: Actual) -> None:
        call = (
            ec2(ctx).revoke_security_group_egress
            if actual.props["egress"]
            else ec2(ctx).revoke_security_group_ingress
        )
        call(GroupId=actual.props["group"], SecurityGroupRuleIds=[actual.id])

    def deleted_with(self, actual: Actual) -> tuple[str, ...]:
        # A rule naming another group must go first, or that group cannot be deleted.
        source = actual.props.get("source_group")
        group = actual.props["group"]
        return (group,) if source in (None, group) else ()


def _block_devices(props: dict[str, Any]) -> list[dict[str, Any]]:
    ebs: dict[str, Any] = {
        "VolumeSize": int(props["disk_size"]),
        "VolumeType": props["disk_type"],
        "Encrypted": bool(props["disk_encrypted"]),
        "DeleteOnTermination": True,
    }
    if props["disk_type"] in ("gp3", "io1", "io2") and props.get("disk_iops"):
        ebs["Iops"] = int(props["disk_iops"])
    return [{"DeviceName": props["root_device"], "Ebs": ebs}]


def _metadata(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "HttpEndpoint": "enabled",
        "HttpTokens": props["imds_tokens"],
        "HttpPutResponseHopLimit": int(props["imds_hop_limit"]),
    }


class Instance(Kind):
    """A standalone instance (controllers). Instances an auto scaling group launched belong
    to that group and are not listed here."""

    kind = "instance"
    depends_on = ("subnet", "security_group", "internet_gateway")
    immutable = frozenset({"subnet", "disk_encrypted"})
    # The OS updates itself and Ignition runs on first boot only: a newer AMI or new user
    # data must never replace a running node.
    create_only = frozenset(
        {"image_id", "user_data", "root_device", "public_ipv4", "cpu_credits", "client_token"}
    )
    sensitive = frozenset({"user_data"})
    unordered = frozenset({"security_groups"})

    def discover(self, ctx: Context) -> list[Actual]:
        reservations = ctx.aws.pages(
            "ec2",
            "describe_instances",
            "Reservations",
            Filters=[ctx.owner_filter, {"Name": "instance-state-name", "Values": LIVE_STATES}],
        )
        instances = [i for r in reservations for i in r["Instances"] if ASG_TAG not in tags_of(i)]
        volumes = self._root_volumes(ctx, instances)
        return [self._actual(i, volumes) for i in instances]

    def _root_volumes(
        self, ctx: Context, instances: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        ids = [i["InstanceId"] for i in instances]
        if not ids:
            return {}
        vols = ctx.aws.pages(
            "ec2",
            "describe_volumes",
            "Volumes",
            Filters=[{"Name": "attachment.instance-id", "Values": ids}],
        )
        roots = {(i["InstanceId"], i.get("RootDeviceName")): i["InstanceId"] for i in instances}
        out = {}
        for v in vols:
            for att in v.get("Attachments", []):
                iid = roots.get((att["InstanceId"], att.get("Device")))
                if iid:
                    out[iid] = v
        return out

    def _actual(self, i: dict[str, Any], volumes: dict[str, dict[str, Any]]) -> Actual:
        iid = i["InstanceId"]
        groups = sorted({g["GroupId"] for n in i.get("NetworkInterfaces", []) for g in n["Groups"]})
        meta = i.get("MetadataOptions", {})
        props: dict[str, Any] = {
            "instance_type": i["InstanceType"],
            "subnet": i.get("SubnetId"),
            "security_groups": groups,
            "imds_tokens": meta.get("HttpTokens"),
            "imds_hop_limit": meta.get("HttpPutResponseHopLimit"),
        }
        vol = volumes.get(iid)
        if vol:
            props.update(
                disk_size=vol["Size"],
                disk_type=vol["VolumeType"],
                disk_encrypted=bool(vol.get("Encrypted")),
            )
            if vol["VolumeType"] in ("gp3", "io1", "io2"):
                props["disk_iops"] = vol.get("Iops")
        ipv6 = [
            a["Ipv6Address"]
            for n in i.get("NetworkInterfaces", [])
            for a in n.get("Ipv6Addresses", [])
        ]
        attrs = {
            "private_ip": i.get("PrivateIpAddress"),
            "public_ip": i.get("PublicIpAddress"),
            "ipv6": ipv6[0] if ipv6 else None,
            "availability_zone": i.get("Placement", {}).get("AvailabilityZone"),
            "root_volume": vol["VolumeId"] if vol else None,
            "state": i["State"]["Name"],
        }
        return Actual(self.kind, iid, tags_of(i).get("Name", iid), props, attrs)

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        args: dict[str, Any] = {
            "ImageId": props["image_id"],
            "InstanceType": props["instance_type"],
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": props["client_token"],
            "UserData": props["user_data"],
            "NetworkInterfaces": [
                {
                    "DeviceIndex": 0,
                    "SubnetId": props["subnet"],
                    "Groups": list(props["security_groups"]),
                    "AssociatePublicIpAddress": bool(props["public_ipv4"]),
                    "DeleteOnTermination": True,
                }
            ],
            "BlockDeviceMappings": _block_devices(props),
            "MetadataOptions": _metadata(props),
            "TagSpecifications": [
                *ctx.tag_spec("instance", name),
                *ctx.tag_spec("volume", name),
                *ctx.tag_spec("network-interface", name),
            ],
        }
        if props.get("cpu_credits"):
            args["CreditSpecification"] = {"CpuCredits": props["cpu_credits"]}
        for _ in range(MAX_TOKEN_GENERATIONS):
            got = ctx.settle(lambda: ec2(ctx).run_instances(**args))["Instances"][0]
            iid = got["InstanceId"]
            # The launch response may not show it: ask for the state.
            state = ctx.settle(functools.partial(ec2(ctx).describe_instances, InstanceIds=[iid]))[
                "Reservations"
            ][0]["Instances"][0]["State"]["Name"]
            if state not in ("shutting-down", "terminated"):
                break
            # The token already launched an instance that a destroy (maybe one killed
            # halfway) terminated, and EC2 keeps answering with it. The next token derives
            # from that instance: still the same on every resend, so never a second launch.
            args["ClientToken"] = token(args["ClientToken"], iid)
        else:
            raise EngineError(
                f"instance {name}: {MAX_TOKEN_GENERATIONS} launches in a row were terminated "
                "while starting; check the instance's console output and EC2 quotas"
            )
        ctx.settle(
            lambda: (
                ec2(ctx)
                .get_waiter("instance_running")
                .wait(InstanceIds=[iid], WaiterConfig={"Delay": 5, "MaxAttempts": 120})
            )
        )
        return self._read(ctx, iid)

    def _read(self, ctx: Context, iid: str) -> Actual:
        got = ctx.settle(lambda: ec2(ctx).describe_instances(InstanceIds=[iid]))
        i = got["Reservations"][0]["Instances"][0]
        return self._actual(i, ctx.settle(lambda: self._root_volumes(ctx, [i])))

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        c = ec2(ctx)
        if "security_groups" in changed:
            c.modify_instance_attribute(InstanceId=actual.id, Groups=list(props["security_groups"]))
        if changed & {"imds_tokens", "imds_hop_limit"}:
            c.modify_instance_metadata_options(
                InstanceId=actual.id,
                HttpTokens=props["imds_tokens"],
                HttpPutResponseHopLimit=int(props["imds_hop_limit"]),
                HttpEndpoint="enabled",
            )
        if changed & {"disk_size", "disk_type", "disk_iops"} and actual.attrs.get("root_volume"):
            args: dict[str, Any] = {
                "VolumeId": actual.attrs["root_volume"],
                "Size": int(props["disk_size"]),
                "VolumeType": props["disk_type"],
            }
            if props["disk_type"] in ("gp3", "io1", "io2") and props.get("disk_iops"):
                args["Iops"] = int(props["disk_iops"])
            c.modify_volume(**args)
        if "instance_type" in changed:
            # EC2 changes the type of a stopped instance only.
            c.stop_instances(InstanceIds=[actual.id])
            c.get_waiter("instance_stopped").wait(
                InstanceIds=[actual.id], WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
            c.modify_instance_attribute(
                InstanceId=actual.id, InstanceType={"Value": props["instance_type"]}
            )
            c.start_instances(InstanceIds=[actual.id])
            c.get_waiter("instance_running").wait(
                InstanceIds=[actual.id], WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
        return self._read(ctx, actual.id)

    def delete(self, ctx: Context, actual: Actual) -> None:
        c = ec2(ctx)
        c.terminate_instances(InstanceIds=[actual.id])
        c.get_waiter("instance_terminated").wait(
            InstanceIds=[actual.id], WaiterConfig={"Delay": 5, "MaxAttempts": 180}
        )


def _lt_data(props: dict[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ImageId": props["image_id"],
        "InstanceType": props["instance_type"],
        # Launch templates take user data already base64-encoded.
        "UserData": base64.b64encode(props["user_data"].encode()).decode(),
        "BlockDeviceMappings": _block_devices(props),
        "MetadataOptions": _metadata(props),
        "NetworkInterfaces": [
            {
                "DeviceIndex": 0,
                "AssociatePublicIpAddress": bool(props["public_ipv4"]),
                "Groups": list(props["security_groups"]),
                "DeleteOnTermination": True,
            }
        ],
        # The group tags its instances itself; their disks and interfaces are tagged here.
        "TagSpecifications": [
            {"ResourceType": "volume", "Tags": tags},
            {"ResourceType": "network-interface", "Tags": tags},
        ],
    }
    if props.get("spot_price"):
        data["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"MaxPrice": str(props["spot_price"])},
        }
    if props.get("cpu_credits"):
        data["CreditSpecification"] = {"CpuCredits": props["cpu_credits"]}
    return data


def _lt_props(data: dict[str, Any]) -> dict[str, Any]:
    ebs = (data.get("BlockDeviceMappings") or [{}])[0]
    disk = ebs.get("Ebs", {})
    nic = (data.get("NetworkInterfaces") or [{}])[0]
    meta = data.get("MetadataOptions", {})
    market = data.get("InstanceMarketOptions", {})
    user_data = data.get("UserData")
    props: dict[str, Any] = {
        "image_id": data.get("ImageId"),
        "instance_type": data.get("InstanceType"),
        "user_data": base64.b64decode(user_data).decode() if user_data else None,
        "root_device": ebs.get("DeviceName"),
        "disk_size": disk.get("VolumeSize"),
        "disk_type": disk.get("VolumeType"),
        "disk_encrypted": bool(disk.get("Encrypted")),
        "security_groups": sorted(nic.get("Groups", [])),
        "public_ipv4": bool(nic.get("AssociatePublicIpAddress")),
        "imds_tokens": meta.get("HttpTokens"),
        "imds_hop_limit": meta.get("HttpPutResponseHopLimit"),
        "spot_price": (
            float(market["SpotOptions"]["MaxPrice"])
            if market.get("MarketType") == "spot" and market.get("SpotOptions", {}).get("MaxPrice")
            else 0
        ),
        "cpu_credits": data.get("CreditSpecification", {}).get("CpuCredits"),
    }
    if disk.get("VolumeType") in ("gp3", "io1", "io2"):
        props["disk_iops"] = disk.get("Iops")
    return props


class LaunchTemplate(Kind):
    """A launch template; an update adds a version and makes it the default, and the new
    version number is what an auto scaling group refers to."""

    kind = "launch_template"
    depends_on = ("security_group",)
    sensitive = frozenset({"user_data"})
    unordered = frozenset({"security_groups"})
    volatile = frozenset({"version"})

    def discover(self, ctx: Context) -> list[Actual]:
        templates = ctx.aws.pages(
            "ec2", "describe_launch_templates", "LaunchTemplates", Filters=[ctx.owner_filter]
        )
        out = []
        for t in templates:
            version = str(t["DefaultVersionNumber"])
            got = ctx.settle(
                functools.partial(
                    ec2(ctx).describe_launch_template_versions,
                    LaunchTemplateId=t["LaunchTemplateId"],
                    Versions=[version],
                )
            )["LaunchTemplateVersions"]
            data = got[0]["LaunchTemplateData"] if got else {}
            out.append(self._actual(t["LaunchTemplateId"], t["LaunchTemplateName"], version, data))
        return out

    def _actual(self, lt_id: str, name: str, version: str, data: dict[str, Any]) -> Actual:
        return Actual(self.kind, lt_id, name, _lt_props(data), {"version": version, "name": name})

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        data = _lt_data(props, ctx.tags(name))

        def find() -> dict[str, Any] | None:
            found = ctx.aws.pages(
                "ec2",
                "describe_launch_templates",
                "LaunchTemplates",
                Filters=[ctx.owner_filter, {"Name": "launch-template-name", "Values": [name]}],
            )
            return found[0] if found else None

        try:
            # The client token makes a resend safe where AWS honours it; the look-up covers
            # endpoints that do not.
            got = create_once(
                ctx.aws,
                "ec2",
                lambda c: ctx.settle(
                    lambda: c.create_launch_template(
                        LaunchTemplateName=name,
                        LaunchTemplateData=data,
                        ClientToken=token(ctx.cluster, name, *props["security_groups"]),
                        TagSpecifications=ctx.tag_spec("launch-template", name),
                    )
                )["LaunchTemplate"],
                find,
                timeout=ctx.consistency_timeout,
            )
        except botocore.exceptions.ClientError as err:
            if code(err) != "InvalidLaunchTemplateName.AlreadyExistsException":
                raise
            got = find()
            if got is None:
                raise
        return self._actual(got["LaunchTemplateId"], name, str(got["LatestVersionNumber"]), data)

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        data = _lt_data(props, ctx.tags(name))
        c = ec2(ctx)
        # A resent call (the token aside) can only add an identical version: harmless.
        got = ctx.settle(
            lambda: c.create_launch_template_version(
                LaunchTemplateId=actual.id,
                LaunchTemplateData=data,
                ClientToken=token(actual.id, repr(sorted(data.items()))),
            )
        )["LaunchTemplateVersion"]
        version = str(got["VersionNumber"])
        ctx.settle(
            lambda: c.modify_launch_template(LaunchTemplateId=actual.id, DefaultVersion=version)
        )
        return self._actual(actual.id, name, version, data)

    def delete(self, ctx: Context, actual: Actual) -> None:
        ec2(ctx).delete_launch_template(LaunchTemplateId=actual.id)


def availability_zones(ctx_or_client: Any) -> list[str]:
    """The region's availability zones that need no opt-in (no local or wavelength zones)."""
    client = (
        ctx_or_client.aws.client("ec2") if isinstance(ctx_or_client, Context) else ctx_or_client
    )
    zones = client.describe_availability_zones(
        Filters=[
            {"Name": "state", "Values": ["available"]},
            {"Name": "zone-type", "Values": ["availability-zone"]},
        ]
    )["AvailabilityZones"]
    return sorted(z["ZoneName"] for z in zones if z.get("OptInStatus") != "not-opted-in")
