"""Elastic Load Balancing v2 kinds: load balancer, target group, listener, target.

ELBv2 has no tag filter on its describe calls: the cluster's load balancers and target groups
are the ones whose tags (read in batches of 20) carry the ownership tag.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import botocore.exceptions

from squall.engine.aws import code, create_once, gone
from squall.engine.core import OWNER_TAG, Actual, Context, EngineError, Kind


def elb(ctx: Context) -> Any:
    return ctx.aws.client("elbv2")


def _elb_tags(ctx: Context, arns: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(arns), 20):
        got = elb(ctx).describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]
        for d in got:
            out[d["ResourceArn"]] = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
    return out


def _owned_only(ctx: Context, items: list[dict[str, Any]], arn_key: str) -> list[dict[str, Any]]:
    tags = _elb_tags(ctx, [i[arn_key] for i in items])
    return [i for i in items if tags.get(i[arn_key], {}).get(OWNER_TAG) == ctx.cluster]


def _tags(ctx: Context, name: str) -> list[dict[str, str]]:
    return ctx.tags(name)


def _owned_by_name(
    ctx: Context, operation: str, key: str, arn_key: str, name: str
) -> dict[str, Any] | None:
    """The cluster's load balancer or target group of this name, if AWS lists one."""
    try:
        items = getattr(elb(ctx), operation)(Names=[name])[key]
    except botocore.exceptions.ClientError as err:
        if gone(err):
            return None
        raise
    owned = _owned_only(ctx, items, arn_key)
    return owned[0] if owned else None


class LoadBalancer(Kind):
    """A load balancer. ``security_groups`` can change in place, but AWS attaches security
    groups to a network load balancer only if it was created with at least one, so
    ``created_with_security_groups`` (whether AWS lists any) forces a replacement."""

    kind = "load_balancer"
    # An internet-facing load balancer needs the VPC's internet gateway attached; its
    # security groups cannot be deleted before it is.
    depends_on = ("subnet", "internet_gateway", "security_group")
    immutable = frozenset({"type", "scheme", "created_with_security_groups"})
    unordered = frozenset({"subnets", "security_groups"})

    def discover(self, ctx: Context) -> list[Actual]:
        lbs = ctx.aws.pages("elbv2", "describe_load_balancers", "LoadBalancers")
        lbs = [lb for lb in lbs if lb.get("State", {}).get("Code") != "deleting"]
        return [self._actual(ctx, lb) for lb in _owned_only(ctx, lbs, "LoadBalancerArn")]

    def _actual(self, ctx: Context, lb: dict[str, Any]) -> Actual:
        arn = lb["LoadBalancerArn"]
        attrs = elb(ctx).describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
        values = {a["Key"]: a["Value"] for a in attrs}
        props: dict[str, Any] = {
            "type": lb["Type"],
            "scheme": lb["Scheme"],
            "ip_address_type": lb.get("IpAddressType"),
            "subnets": sorted(z["SubnetId"] for z in lb.get("AvailabilityZones", [])),
            "security_groups": sorted(lb.get("SecurityGroups") or []),
            "created_with_security_groups": bool(lb.get("SecurityGroups")),
        }
        if "load_balancing.cross_zone.enabled" in values:
            props["cross_zone"] = values["load_balancing.cross_zone.enabled"] == "true"
        return Actual(
            self.kind,
            arn,
            lb["LoadBalancerName"],
            props,
            {
                "arn": arn,
                "dns_name": lb["DNSName"],
                "zone_id": lb["CanonicalHostedZoneId"],
                "name": lb["LoadBalancerName"],
            },
        )

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        groups = list(props.get("security_groups") or [])
        if bool(props.get("created_with_security_groups", groups)) != bool(groups):
            raise EngineError(
                f"load balancer {name}: created_with_security_groups needs security_groups"
            )
        extra = {"SecurityGroups": groups} if groups else {}
        # AWS answers a resend with the first load balancer when the settings match, but
        # not every endpoint does (moto makes a second): look before sending again.
        lb = create_once(
            ctx.aws,
            "elbv2",
            lambda c: ctx.settle(
                lambda: c.create_load_balancer(
                    Name=name,
                    Subnets=list(props["subnets"]),
                    Scheme=props["scheme"],
                    Type=props["type"],
                    IpAddressType=props["ip_address_type"],
                    Tags=_tags(ctx, name),
                    **extra,
                )
            )["LoadBalancers"][0],
            lambda: _owned_by_name(
                ctx, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn", name
            ),
            timeout=ctx.consistency_timeout,
        )
        arn = lb["LoadBalancerArn"]
        self._set_attributes(ctx, arn, props)
        # No wait for "active": AWS takes listeners, registrations and alias records while an
        # NLB is still provisioning (2-3 minutes), so that time overlaps the instances' boot.
        # The bootstrap's readiness wait goes through the NLB and so covers it.
        return self._read(ctx, arn)

    def _set_attributes(self, ctx: Context, arn: str, props: dict[str, Any]) -> None:
        if "cross_zone" in props:
            elb(ctx).modify_load_balancer_attributes(
                LoadBalancerArn=arn,
                Attributes=[
                    {
                        "Key": "load_balancing.cross_zone.enabled",
                        "Value": "true" if props["cross_zone"] else "false",
                    }
                ],
            )

    def _read(self, ctx: Context, arn: str) -> Actual:
        lb = elb(ctx).describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
        return self._actual(ctx, lb)

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        if "subnets" in changed:
            elb(ctx).set_subnets(LoadBalancerArn=actual.id, Subnets=list(props["subnets"]))
        if "ip_address_type" in changed:
            elb(ctx).set_ip_address_type(
                LoadBalancerArn=actual.id, IpAddressType=props["ip_address_type"]
            )
        if "cross_zone" in changed:
            self._set_attributes(ctx, actual.id, props)
        if "security_groups" in changed:
            # AWS refuses this for a network load balancer created without security groups;
            # the plan replaces such a one instead (created_with_security_groups). moto
            # accepts it anyway, ignores EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic,
            # and deletes a security group a load balancer still uses: what AWS refuses here
            # is the plan's to avoid, and is tested there.
            elb(ctx).set_security_groups(
                LoadBalancerArn=actual.id, SecurityGroups=list(props["security_groups"])
            )
        return self._read(ctx, actual.id)

    def delete(self, ctx: Context, actual: Actual) -> None:
        elb(ctx).delete_load_balancer(LoadBalancerArn=actual.id)
        elb(ctx).get_waiter("load_balancers_deleted").wait(
            LoadBalancerArns=[actual.id], WaiterConfig={"Delay": 5, "MaxAttempts": 120}
        )


HEALTH = {
    "health_check_protocol": "HealthCheckProtocol",
    "health_check_port": "HealthCheckPort",
    "health_check_path": "HealthCheckPath",
    "healthy_threshold": "HealthyThresholdCount",
    "unhealthy_threshold": "UnhealthyThresholdCount",
    "health_check_interval": "HealthCheckIntervalSeconds",
}


class TargetGroup(Kind):
    """A target group. AWS refuses to delete one a listener forwards to, and a listener can
    only forward to one that exists: a replacement is made first, under the other name, the
    listeners and auto scaling groups move to it, then the old one goes."""

    kind = "target_group"
    depends_on = ("vpc",)
    immutable = frozenset({"protocol", "port", "vpc", "target_type"})
    create_before_destroy = True
    name_limit = 32

    def discover(self, ctx: Context) -> list[Actual]:
        tgs = ctx.aws.pages("elbv2", "describe_target_groups", "TargetGroups")
        return [self._actual(tg) for tg in _owned_only(ctx, tgs, "TargetGroupArn")]

    def _actual(self, tg: dict[str, Any]) -> Actual:
        props: dict[str, Any] = {
            "protocol": tg["Protocol"],
            "port": tg["Port"],
            "vpc": tg.get("VpcId"),
            "target_type": tg.get("TargetType"),
        }
        for prop, field in HEALTH.items():
            props[prop] = tg.get(field)
        if props["health_check_protocol"] == "TCP":
            props["health_check_path"] = None
        arn = tg["TargetGroupArn"]
        return Actual(self.kind, arn, tg["TargetGroupName"], props, {"arn": arn})

    def _health_args(self, props: dict[str, Any]) -> dict[str, Any]:
        return {field: props[prop] for prop, field in HEALTH.items() if props.get(prop) is not None}

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        def find() -> dict[str, Any] | None:
            return _owned_by_name(
                ctx, "describe_target_groups", "TargetGroups", "TargetGroupArn", name
            )

        try:
            tg = create_once(
                ctx.aws,
                "elbv2",
                lambda c: ctx.settle(
                    lambda: c.create_target_group(
                        Name=name,
                        Protocol=props["protocol"],
                        Port=int(props["port"]),
                        VpcId=props["vpc"],
                        TargetType=props["target_type"],
                        Tags=_tags(ctx, name),
                        **self._health_args(props),
                    )
                )["TargetGroups"][0],
                find,
                timeout=ctx.consistency_timeout,
            )
        except botocore.exceptions.ClientError as err:
            # AWS returns the first group for a matching resend; some endpoints refuse it.
            found = find() if code(err) == "DuplicateTargetGroupName" else None
            if found is None:
                raise
            tg = found
        return self._actual(tg)

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        tg = elb(ctx).modify_target_group(TargetGroupArn=actual.id, **self._health_args(props))
        return self._actual(tg["TargetGroups"][0])

    def delete(self, ctx: Context, actual: Actual) -> None:
        elb(ctx).delete_target_group(TargetGroupArn=actual.id)


class Listener(Kind):
    """A listener, found by load balancer and port; owned when it carries the cluster's tag,
    so listeners users add to the cluster's load balancer are left alone. A port that holds
    one of theirs is refused rather than taken over: squall would neither tag it nor, later,
    delete it, and the target group it forwards to could then never go."""

    kind = "listener"
    depends_on = ("load_balancer", "target_group")
    # AWS refuses to change a listener's protocol to UDP or TCP_UDP on a dual-stack load
    # balancer: a new protocol is a new listener.
    immutable = frozenset({"load_balancer", "port", "protocol"})

    def discover(self, ctx: Context) -> list[Actual]:
        listeners = []
        for lb in ctx.actuals("load_balancer"):
            listeners += ctx.aws.pages(
                "elbv2", "describe_listeners", "Listeners", LoadBalancerArn=lb.id
            )
        if not listeners:
            return []
        tags = _elb_tags(ctx, [x["ListenerArn"] for x in listeners])
        names = {lb.id: lb.name for lb in ctx.actuals("load_balancer")}
        out = []
        for x in listeners:
            forward = [a for a in x.get("DefaultActions", []) if a.get("Type") == "forward"]
            props = {
                "load_balancer": x["LoadBalancerArn"],
                "port": x["Port"],
                "protocol": x["Protocol"],
                "target_group": forward[0].get("TargetGroupArn") if forward else None,
            }
            own = tags.get(x["ListenerArn"], {})
            out.append(
                Actual(
                    self.kind,
                    x["ListenerArn"],
                    own.get("Name") or f"{names.get(x['LoadBalancerArn'])}:{x['Port']}",
                    props,
                    {"arn": x["ListenerArn"]},
                    owned=own.get(OWNER_TAG) == ctx.cluster,
                    ident=(x["LoadBalancerArn"], x["Port"]),
                )
            )
        return out

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return (props["load_balancer"], props["port"])

    def claim(self, ctx: Context, name: str, actual: Actual) -> None:
        if not actual.owned:
            raise _foreign(ctx, actual.props["load_balancer"], actual.props["port"])

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        def find() -> dict[str, Any] | None:
            found = [
                x
                for x in ctx.settle(
                    lambda: elb(ctx).describe_listeners(LoadBalancerArn=props["load_balancer"])
                )["Listeners"]
                if x["Port"] == int(props["port"])
            ]
            if not found:
                return None
            # Made by someone else since the plan: theirs stays theirs.
            arn = found[0]["ListenerArn"]
            if _elb_tags(ctx, [arn]).get(arn, {}).get(OWNER_TAG) != ctx.cluster:
                raise _foreign(ctx, props["load_balancer"], props["port"])
            return found[0]

        try:
            # A port holds one listener, yet not every endpoint refuses a second (moto
            # makes one): look before sending again.
            x = create_once(
                ctx.aws,
                "elbv2",
                lambda c: ctx.settle(
                    lambda: c.create_listener(
                        LoadBalancerArn=props["load_balancer"],
                        Port=int(props["port"]),
                        Protocol=props["protocol"],
                        DefaultActions=[
                            {"Type": "forward", "TargetGroupArn": props["target_group"]}
                        ],
                        Tags=_tags(ctx, name),
                    )
                )["Listeners"][0],
                find,
                timeout=ctx.consistency_timeout,
            )
        except botocore.exceptions.ClientError as err:
            found = find() if code(err) == "DuplicateListener" else None
            if found is None:
                raise
            x = found
        made = self._made(x["ListenerArn"], name, props)
        forward = [a for a in x.get("DefaultActions", []) if a.get("Type") == "forward"]
        if forward and forward[0].get("TargetGroupArn") == props["target_group"]:
            return made
        # The cluster's own, yet forwarding elsewhere (made by a run racing this one).
        return self.update(ctx, name, props, made, set())

    def _made(self, arn: str, name: str, props: dict[str, Any]) -> Actual:
        return Actual(
            self.kind,
            arn,
            name,
            dict(props),
            {"arn": arn},
            ident=(props["load_balancer"], props["port"]),
        )

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        # The protocol is left out: it cannot change here (see immutable), and moto refuses
        # any but HTTP(S) and TCP in this call, even unchanged.
        elb(ctx).modify_listener(
            ListenerArn=actual.id,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": props["target_group"]}],
        )
        return self._made(actual.id, name, props)

    def delete(self, ctx: Context, actual: Actual) -> None:
        elb(ctx).delete_listener(ListenerArn=actual.id)


def _foreign(ctx: Context, lb_arn: str, port: int) -> EngineError:
    names = {lb.id: lb.name for lb in ctx.actuals("load_balancer")}
    return EngineError(
        f"port {port} of {names.get(lb_arn, lb_arn)} has a listener squall does not own; "
        "remove it or choose another port"
    )


class Target(Kind):
    """An instance registered in a target group (auto scaling groups register their own)."""

    kind = "target"
    depends_on = ("target_group", "instance")
    immutable = frozenset({"target_group", "instance", "port"})

    def discover(self, ctx: Context) -> list[Actual]:
        mine = {a.id: a.name for a in ctx.actuals("instance")}
        out = []
        for tg in ctx.actuals("target_group"):
            try:
                health = elb(ctx).describe_target_health(TargetGroupArn=tg.id)
            except botocore.exceptions.ClientError as err:
                if gone(err):
                    continue
                raise
            for d in health["TargetHealthDescriptions"]:
                iid, port = d["Target"]["Id"], d["Target"].get("Port")
                if iid not in mine:
                    continue
                out.append(
                    Actual(
                        self.kind,
                        f"{tg.id}|{iid}|{port}",
                        f"{tg.name} {mine[iid]}:{port}",
                        {"target_group": tg.id, "instance": iid, "port": port},
                        ident=(tg.id, iid, port),
                    )
                )
        return out

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return (props["target_group"], props["instance"], int(props["port"]))

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        ctx.settle(
            lambda: elb(ctx).register_targets(
                TargetGroupArn=props["target_group"],
                Targets=[{"Id": props["instance"], "Port": int(props["port"])}],
            )
        )
        tg, iid, port = props["target_group"], props["instance"], int(props["port"])
        return Actual(
            self.kind,
            f"{tg}|{iid}|{port}",
            name,
            {"target_group": tg, "instance": iid, "port": port},
            ident=(tg, iid, port),
        )

    def delete(self, ctx: Context, actual: Actual) -> None:
        elb(ctx).deregister_targets(
            TargetGroupArn=actual.props["target_group"],
            Targets=[{"Id": actual.props["instance"], "Port": int(actual.props["port"])}],
        )

    def deleted_with(self, actual: Actual) -> tuple[str, ...]:
        return (actual.props["target_group"], actual.props["instance"])
