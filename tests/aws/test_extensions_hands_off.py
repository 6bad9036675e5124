"""What the cluster does not own stays untouched: target groups, listeners, rules and routes
made with plain boto3 beside the cluster survive applies and destroys; worker_target_groups and
routes through a VPC peering connection work; a pool comes and goes alone; a wrong target group
is one line at plan time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .helpers import Squall, by_cluster, cluster_file, tags

Client = Callable[[str], Any]
PEER_CIDR = "192.168.0.0/16"


def one(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def vpc_id(client: Client, name: str) -> str:
    return str(one(client("ec2").describe_vpcs(Filters=by_cluster(name))["Vpcs"])["VpcId"])


def route_table(client: Client, name: str) -> dict[str, Any]:
    return one(client("ec2").describe_route_tables(Filters=by_cluster(name))["RouteTables"])


def routes(client: Client, name: str) -> set[tuple[str, str]]:
    out = set()
    for r in route_table(client, name)["Routes"]:
        if r.get("Origin") != "CreateRoute":
            continue
        dest = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
        target = r.get("GatewayId") or r.get("VpcPeeringConnectionId") or ""
        out.add((dest, target))
    return out


def nlb_arn(client: Client, name: str) -> str:
    got = client("elbv2").describe_load_balancers(Names=[f"{name}-nlb"])["LoadBalancers"]
    return str(one(got)["LoadBalancerArn"])


def worker_sg(client: Client, name: str) -> str:
    got = client("ec2").describe_security_groups(
        Filters=[*by_cluster(name), {"Name": "group-name", "Values": [f"{name}-worker"]}]
    )
    return str(one(got["SecurityGroups"])["GroupId"])


def group(client: Client, name: str) -> dict[str, Any]:
    got = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return one(got["AutoScalingGroups"])


def mentions(plan: dict[str, Any], *needles: str) -> list[dict[str, Any]]:
    return [c for c in plan["changes"] if any(n in repr(c) for n in needles)]


def test_foreign_resources_survive_applies_and_destroy(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    name = "ext-hands"
    ec2, elb = client("ec2"), client("elbv2")
    config = cluster_file(tmp_path, name, host_cidr="10.50.0.0/16", worker_count=1)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    vpc = vpc_id(client, name)
    table = route_table(client, name)["RouteTableId"]
    assert squall.outputs_json(config)["route_table_id"] == table

    # Made by hand, with the outputs, as the seed shows: a peer VPC and its peering, a
    # target group in the cluster's VPC, a listener on the cluster's NLB, a worker rule and
    # a route in the cluster's table.
    peer = ec2.create_vpc(CidrBlock=PEER_CIDR)["Vpc"]["VpcId"]
    pcx = ec2.create_vpc_peering_connection(VpcId=vpc, PeerVpcId=peer)["VpcPeeringConnection"][
        "VpcPeeringConnectionId"
    ]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    app_tg = elb.create_target_group(
        Name="byhand-app", Protocol="TCP", Port=30400, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    other_tg = elb.create_target_group(
        Name="byhand-other", Protocol="TCP", Port=30401, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    listener = elb.create_listener(
        LoadBalancerArn=nlb_arn(client, name),
        Protocol="TCP",
        Port=4000,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": other_tg}],
        Tags=[{"Key": "Name", "Value": "byhand-listener"}],
    )["Listeners"][0]["ListenerArn"]
    rule = ec2.authorize_security_group_ingress(
        GroupId=worker_sg(client, name),
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 30400,
                "ToPort": 30400,
                "IpRanges": [{"CidrIp": "172.16.0.0/12"}],
            }
        ],
        TagSpecifications=[
            {
                "ResourceType": "security-group-rule",
                "Tags": [{"Key": "Name", "Value": "byhand-rule"}],
            }
        ],
    )["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    client("autoscaling").attach_load_balancer_target_groups(
        AutoScalingGroupName=f"{name}-worker", TargetGroupARNs=[other_tg]
    )
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock="10.200.0.0/16", VpcPeeringConnectionId=pcx
    )

    # The plan leaves all of it alone; the cluster file's route and target group come in.
    config = cluster_file(
        tmp_path,
        name,
        host_cidr="10.50.0.0/16",
        worker_count=1,
        routes=[{"destination": PEER_CIDR, "vpc_peering_connection_id": pcx}],
        worker_target_groups=[app_tg],
    )
    plan = squall.plan_json(config)
    assert sorted((c["action"], c["kind"]) for c in plan["changes"]) == [
        ("create", "route"),
        ("update", "auto_scaling_group"),
    ]
    assert not mentions(plan, listener, rule, "10.200.0.0/16")
    asg = one([c for c in plan["changes"] if c["kind"] == "auto_scaling_group"])
    change = asg["fields"]["target_groups"]
    assert other_tg in change["before"] and other_tg in change["after"]
    assert app_tg not in change["before"] and app_tg in change["after"]
    squall("apply", str(config), "--yes", "--no-bootstrap")

    assert (PEER_CIDR, pcx) in routes(client, name)
    assert ("10.200.0.0/16", pcx) in routes(client, name)
    workers = group(client, f"{name}-worker")
    assert {app_tg, other_tg} <= set(workers["TargetGroupARNs"])
    health = elb.describe_target_health(TargetGroupArn=app_tg)["TargetHealthDescriptions"]
    assert {d["Target"]["Id"] for d in health} == {i["InstanceId"] for i in workers["Instances"]}
    assert squall.plan_json(config)["changes"] == []

    # A route and a target group dropped from the file go; the hand-made route (same
    # target) and the target group attached by hand stay.
    config = cluster_file(tmp_path, name, host_cidr="10.50.0.0/16", worker_count=1)
    plan = squall.plan_json(config)
    assert sorted((c["action"], c["kind"], c["name"]) for c in plan["changes"]) == [
        ("delete", "route", f"{name} {PEER_CIDR}"),
        ("update", "auto_scaling_group", f"{name}-worker"),
    ]
    squall("apply", str(config), "--yes", "--no-bootstrap")
    assert (PEER_CIDR, pcx) not in routes(client, name)
    assert ("10.200.0.0/16", pcx) in routes(client, name)
    attached = set(group(client, f"{name}-worker")["TargetGroupARNs"])
    assert other_tg in attached and app_tg not in attached
    listeners = elb.describe_listeners(LoadBalancerArn=nlb_arn(client, name))["Listeners"]
    assert listener in {x["ListenerArn"] for x in listeners}

    # Destroy names what AWS removes along with the cluster's NLB, groups and table, and
    # deletes nothing the cluster does not own.
    out = squall("destroy", str(config), "--yes").stdout
    assert "byhand-listener" in out
    assert "byhand-rule" in out
    assert "10.200.0.0/16" in out
    assert not ec2.describe_vpcs(Filters=by_cluster(name))["Vpcs"]
    assert one(ec2.describe_vpcs(VpcIds=[peer])["Vpcs"])["VpcId"] == peer
    left = elb.describe_target_groups(TargetGroupArns=[app_tg, other_tg])["TargetGroups"]
    assert {t["TargetGroupName"] for t in left} == {"byhand-app", "byhand-other"}


def test_pool_added_then_removed_touches_nothing_else(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    name = "ext-pool"
    config = cluster_file(tmp_path, name, host_cidr="10.60.0.0/16", worker_count=1)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    before = group(client, f"{name}-worker")

    pool = {
        "name": "big",
        "count": 1,
        "instance_type": "m5.large",
        "node_taints": ["big=true:NoSchedule"],
    }
    with_pool = cluster_file(
        tmp_path, name, host_cidr="10.60.0.0/16", worker_count=1, worker_pools=[pool]
    )
    plan = squall.plan_json(with_pool)
    assert sorted((c["action"], c["kind"], c["name"]) for c in plan["changes"]) == [
        ("create", "auto_scaling_group", f"{name}-big"),
        ("create", "launch_template", f"{name}-big"),
    ]
    squall("apply", str(with_pool), "--yes", "--no-bootstrap")
    big = group(client, f"{name}-big")
    assert big["LaunchTemplate"]["LaunchTemplateName"] == f"{name}-big"
    assert tags(big)["squall.dev/cluster"] == name and len(big["Instances"]) == 1

    config = cluster_file(tmp_path, name, host_cidr="10.60.0.0/16", worker_count=1)
    plan = squall.plan_json(config)
    assert sorted((c["action"], c["kind"], c["name"]) for c in plan["changes"]) == [
        ("delete", "auto_scaling_group", f"{name}-big"),
        ("delete", "launch_template", f"{name}-big"),
    ]
    squall("apply", str(config), "--yes", "--no-bootstrap")
    after = group(client, f"{name}-worker")
    assert after["LaunchTemplate"] == before["LaunchTemplate"]
    assert {i["InstanceId"] for i in after["Instances"]} == {
        i["InstanceId"] for i in before["Instances"]
    }
    got = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{name}-big"])
    assert got["AutoScalingGroups"] == []
    squall("destroy", str(config), "--yes")


def test_wrong_worker_target_groups_are_one_line_at_plan_time(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    name = "ext-badtg"
    missing = (
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef"
    )
    elsewhere_vpc = client("ec2").create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    elsewhere = client("elbv2").create_target_group(
        Name="elsewhere", Protocol="TCP", Port=30500, VpcId=elsewhere_vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    cases = ((missing, "does not exist", "apply"), (elsewhere, f"is in {elsewhere_vpc}", "plan"))
    for arn, fragment, command in cases:
        config = cluster_file(tmp_path, name, worker_target_groups=[arn])
        proc = squall(command, str(config), *(["--yes"] if command == "apply" else []), check=False)
        assert proc.returncode != 0
        line = proc.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, line
        assert "worker_target_groups: target group" in line and fragment in line, line
    assert not client("ec2").describe_vpcs(Filters=by_cluster(name))["Vpcs"]
