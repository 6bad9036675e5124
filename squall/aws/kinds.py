"""The engine's kinds with what this architecture adds: which routes the cluster owns, and
target group attributes.

Ownership is a decision of the architecture, not of the reconciler: routes carry no tags, so
the cluster says which ones are its own (see :func:`squall.aws.network.owns_route`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from squall.engine.core import Actual, Context, Kind
from squall.engine.kinds import all_kinds
from squall.engine.kinds.ec2 import Route
from squall.engine.kinds.elbv2 import TargetGroup, elb

PRESERVE_CLIENT_IP = "preserve_client_ip.enabled"


class ClusterRoute(Route):
    """Routes of the cluster's table; owned when the engine says so (a route through the
    cluster's own internet gateway) or when ``owns`` recognizes it exactly."""

    def __init__(self, owns: Callable[[dict[str, Any]], bool]) -> None:
        self.owns = owns

    def discover(self, ctx: Context) -> list[Actual]:
        found = super().discover(ctx)
        for a in found:
            a.owned = a.owned or self.owns(a.props)
        return found


class AttributedTargetGroup(TargetGroup):
    """A target group whose ``preserve_client_ip`` prop, when given, is kept in AWS; left
    out, AWS's default stands and is not compared."""

    def discover(self, ctx: Context) -> list[Actual]:
        found = super().discover(ctx)
        for a in found:
            a.props["preserve_client_ip"] = _preserve(ctx, a.id)
        return found

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        actual = super().create(ctx, name, props)
        return self._attributes(ctx, actual, props)

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        updated = super().update(ctx, name, props, actual, changed)
        return self._attributes(ctx, updated, props)

    def _attributes(self, ctx: Context, actual: Actual, props: dict[str, Any]) -> Actual:
        want = props.get("preserve_client_ip")
        if want is not None:
            ctx.settle(
                lambda: elb(ctx).modify_target_group_attributes(
                    TargetGroupArn=actual.id,
                    Attributes=[{"Key": PRESERVE_CLIENT_IP, "Value": str(bool(want)).lower()}],
                )
            )
        actual.props["preserve_client_ip"] = _preserve(ctx, actual.id)
        return actual


def _preserve(ctx: Context, arn: str) -> bool | None:
    got = ctx.settle(lambda: elb(ctx).describe_target_group_attributes(TargetGroupArn=arn))
    values = {a["Key"]: a["Value"] for a in got["Attributes"]}
    value = values.get(PRESERVE_CLIENT_IP)
    return None if value is None else value == "true"


def cluster_kinds(
    zone_id: str,
    owns_record: Callable[[str, str], bool],
    owns_route: Callable[[dict[str, Any]], bool],
) -> list[Kind]:
    replace: dict[str, Kind] = {
        "route": ClusterRoute(owns_route),
        "target_group": AttributedTargetGroup(),
    }
    return [replace.get(k.kind, k) for k in all_kinds(zone_id, owns_record)]
