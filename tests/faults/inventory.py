"""Everything a cluster owns in the emulated AWS, read with plain boto3 straight from moto.

Used to prove that misbehaving AWS or a killed squall never leaves a second copy of anything,
and that destroy leaves nothing behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

OWNER = "squall.dev/cluster"
LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]
Client = Callable[[str], Any]


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", []) or []}


def _mine(name: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{OWNER}", "Values": [name]}]


def inventory(client: Client, name: str, zone_id: str, zone: str) -> dict[str, list[str]]:
    """Kind → the Name (or other identity) of every such resource the cluster owns.

    A duplicate shows up as the same identity twice in one list.
    """
    ec2, elb, asg = client("ec2"), client("elbv2"), client("autoscaling")
    out: dict[str, list[str]] = {}

    def named(items: list[dict[str, Any]], id_key: str) -> list[str]:
        return sorted(_tags(i).get("Name", i[id_key]) for i in items)

    out["vpc"] = named(ec2.describe_vpcs(Filters=_mine(name))["Vpcs"], "VpcId")
    out["subnet"] = named(ec2.describe_subnets(Filters=_mine(name))["Subnets"], "SubnetId")
    out["internet_gateway"] = named(
        ec2.describe_internet_gateways(Filters=_mine(name))["InternetGateways"],
        "InternetGatewayId",
    )
    tables = ec2.describe_route_tables(Filters=_mine(name))["RouteTables"]
    out["route_table"] = named(tables, "RouteTableId")
    out["route"] = sorted(
        f"{_tags(t).get('Name')} {r.get('DestinationCidrBlock') or r.get('DestinationIpv6CidrBlock')}"
        for t in tables
        for r in t.get("Routes", [])
        if r.get("Origin") == "CreateRoute"
    )
    out["route_table_association"] = sorted(
        f"{_tags(t).get('Name')} {a['SubnetId']}"
        for t in tables
        for a in t.get("Associations", [])
        if not a.get("Main")
    )
    groups = ec2.describe_security_groups(Filters=_mine(name))["SecurityGroups"]
    out["security_group"] = sorted(g["GroupName"] for g in groups)
    rules = []
    if groups:
        rules = ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [g["GroupId"] for g in groups]}]
        )["SecurityGroupRules"]
    # Owned rules carry the tag; by content so that two copies of one rule would show.
    out["security_group_rule"] = sorted(
        "{GroupId} {IsEgress} {IpProtocol} {FromPort}-{ToPort} ".format(**r)
        + str(r.get("CidrIpv4") or r.get("CidrIpv6") or r.get("ReferencedGroupInfo", {}))
        for r in rules
        if _tags(r).get(OWNER) == name
    )
    out["launch_template"] = sorted(
        t["LaunchTemplateName"]
        for t in ec2.describe_launch_templates(Filters=_mine(name))["LaunchTemplates"]
    )
    instances = [
        i
        for r in ec2.describe_instances(
            Filters=[*_mine(name), {"Name": "instance-state-name", "Values": LIVE}]
        )["Reservations"]
        for i in r["Instances"]
    ]
    out["controller"] = named(
        [i for i in instances if "aws:autoscaling:groupName" not in _tags(i)], "InstanceId"
    )
    out["worker"] = named(
        [i for i in instances if "aws:autoscaling:groupName" in _tags(i)], "InstanceId"
    )
    out["auto_scaling_group"] = sorted(
        g["AutoScalingGroupName"]
        for g in asg.describe_auto_scaling_groups(
            Filters=[{"Name": f"tag:{OWNER}", "Values": [name]}]
        )["AutoScalingGroups"]
    )

    def elb_owned(items: list[dict[str, Any]], arn_key: str) -> list[dict[str, Any]]:
        arns = [i[arn_key] for i in items]
        tags: dict[str, dict[str, str]] = {}
        for k in range(0, len(arns), 20):
            for d in elb.describe_tags(ResourceArns=arns[k : k + 20])["TagDescriptions"]:
                tags[d["ResourceArn"]] = _tags(d)
        return [i for i in items if tags.get(i[arn_key], {}).get(OWNER) == name]

    lbs = elb_owned(elb.describe_load_balancers()["LoadBalancers"], "LoadBalancerArn")
    out["load_balancer"] = sorted(lb["LoadBalancerName"] for lb in lbs)
    out["target_group"] = sorted(
        tg["TargetGroupName"]
        for tg in elb_owned(elb.describe_target_groups()["TargetGroups"], "TargetGroupArn")
    )
    out["listener"] = sorted(
        f"{lb['LoadBalancerName']}:{x['Port']}"
        for lb in lbs
        for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    )
    sets = client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    out["record"] = sorted(
        f"{s['Name']} {s['Type']}"
        for s in sets
        if s["Name"] == f"{name}.{zone}." or s["Name"].startswith(f"{name}-etcd")
    )
    interfaces = ec2.describe_network_interfaces(Filters=_mine(name))["NetworkInterfaces"]
    out["network_interface"] = sorted(i["NetworkInterfaceId"] for i in interfaces)
    return out


def duplicates(inv: dict[str, list[str]]) -> dict[str, list[str]]:
    """Identities that appear more than once, per kind (a group's workers share one name and
    interfaces are anonymous: those are only counted)."""
    out = {}
    for kind, names in inv.items():
        if kind in ("worker", "network_interface"):
            continue
        twice = sorted(n for n, c in Counter(names).items() if c > 1)
        if twice:
            out[kind] = twice
    return out


def counts(inv: dict[str, list[str]]) -> dict[str, int]:
    return {kind: len(names) for kind, names in inv.items()}
