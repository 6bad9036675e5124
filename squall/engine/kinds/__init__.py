"""The AWS resource kinds the engine knows, one module per AWS service."""

from __future__ import annotations

from collections.abc import Callable

from squall.engine.core import Kind
from squall.engine.kinds.autoscaling import AutoScalingGroup
from squall.engine.kinds.ec2 import (
    Instance,
    InternetGateway,
    LaunchTemplate,
    Route,
    RouteTable,
    RouteTableAssociation,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Vpc,
)
from squall.engine.kinds.elbv2 import Listener, LoadBalancer, Target, TargetGroup
from squall.engine.kinds.route53 import Record


def all_kinds(zone_id: str, owns_record: Callable[[str, str], bool]) -> list[Kind]:
    """One instance of every kind, records scoped to one hosted zone and a set of names."""
    return [
        Vpc(),
        InternetGateway(),
        RouteTable(),
        Route(),
        Subnet(),
        RouteTableAssociation(),
        SecurityGroup(),
        SecurityGroupRule(),
        TargetGroup(),
        LoadBalancer(),
        Listener(),
        LaunchTemplate(),
        AutoScalingGroup(),
        Instance(),
        Target(),
        Record(zone_id, owns_record),
    ]
