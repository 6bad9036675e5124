"""A service's node port or protocol changed in the cluster file, applied through the CLI to an
emulated AWS and read back with plain boto3: the target group cannot change either in place,
so a new one is made under the other name, the listener and the worker groups move to it,
and only then does the old one go (AWS refuses to delete a target group a listener forwards
to). And a port of the NLB that holds someone else's listener is refused at plan time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from .helpers import Squall, by_cluster, cluster_file, tags

Client = Callable[[str], Any]
# An apply that waited for a target group still in use would wait out its 900 s deadline;
# this one has nothing to wait for.
APPLY_LIMIT = 240.0
APP = {"name": "app", "port": 3333, "node_port": 30333}


def one(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def nlb_arn(client: Client, name: str) -> str:
    got = client("elbv2").describe_load_balancers(Names=[f"{name}-nlb"])["LoadBalancers"]
    return str(one(got)["LoadBalancerArn"])


def listeners(client: Client, name: str) -> dict[int, tuple[str, str]]:
    """Port → (protocol, target group ARN) of every listener on the cluster's NLB."""
    got = client("elbv2").describe_listeners(LoadBalancerArn=nlb_arn(client, name))["Listeners"]
    out = {}
    for x in got:
        action = one(x["DefaultActions"])
        assert action["Type"] == "forward"
        out[x["Port"]] = (x["Protocol"], action["TargetGroupArn"])
    return out


def listener_ids(client: Client, name: str) -> dict[int, str]:
    got = client("elbv2").describe_listeners(LoadBalancerArn=nlb_arn(client, name))["Listeners"]
    return {x["Port"]: x["ListenerArn"] for x in got}


def target_group(client: Client, arn: str) -> dict[str, Any]:
    return one(client("elbv2").describe_target_groups(TargetGroupArns=[arn])["TargetGroups"])


def gone(client: Client, arn: str) -> bool:
    try:
        client("elbv2").describe_target_groups(TargetGroupArns=[arn])
    except botocore.exceptions.ClientError as err:
        return "NotFound" in err.response["Error"]["Code"]
    return False


def workers(client: Client, name: str) -> dict[str, Any]:
    got = client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{name}-worker"]
    )
    return one(got["AutoScalingGroups"])


def apply_in_time(squall: Squall, config: Path) -> None:
    started = time.monotonic()
    squall("apply", str(config), "--yes", "--no-bootstrap", timeout=APPLY_LIMIT)
    assert time.monotonic() - started < APPLY_LIMIT


def check_moved(
    squall: Squall,
    client: Client,
    config: Path,
    name: str,
    old_arn: str,
    *,
    protocol: str,
    node_port: int,
    tg_name: str,
) -> str:
    """The service's listener forwards to a new target group as wanted, the workers are
    registered in it, the old one is gone and nothing is left to do; returns the new ARN."""
    listener_protocol, arn = listeners(client, name)[APP["port"]]
    assert listener_protocol == protocol
    assert arn != old_arn
    group = target_group(client, arn)
    assert (group["Protocol"], group["Port"], group["TargetGroupName"]) == (
        protocol,
        node_port,
        tg_name,
    )
    assert len(tg_name) <= 32
    group_tags = one(client("elbv2").describe_tags(ResourceArns=[arn])["TagDescriptions"])
    assert tags(group_tags)["squall.dev/cluster"] == name
    assert gone(client, old_arn)
    asg = workers(client, name)
    assert arn in asg["TargetGroupARNs"] and old_arn not in asg["TargetGroupARNs"]
    health = client("elbv2").describe_target_health(TargetGroupArn=arn)
    registered = {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}
    assert registered == {i["InstanceId"] for i in asg["Instances"]} and len(registered) == 2
    assert squall.plan_json(config)["changes"] == []
    return arn


def rules(client: Client, name: str) -> set[str]:
    """Ids of every rule in the cluster's security groups."""
    ec2 = client("ec2")
    groups = [
        g["GroupId"]
        for g in ec2.describe_security_groups(Filters=by_cluster(name))["SecurityGroups"]
    ]
    got = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": groups}])
    return {r["SecurityGroupRuleId"] for r in got["SecurityGroupRules"]}


def replaced_group(plan: dict[str, Any]) -> dict[str, Any]:
    return one([c for c in plan["changes"] if c["kind"] == "target_group"])


# A UDP listener too: re-pointing it must not name its protocol, which some endpoints refuse.
UDP_APP = {**APP, "protocol": "udp", "health_check_port": 30999}


@pytest.mark.parametrize("service", [APP, UDP_APP], ids=["tcp", "udp"])
def test_node_port_change_moves_the_listener_then_deletes_the_old_group(
    service: dict[str, Any], squall: Squall, client: Client, tmp_path: Path
) -> None:
    protocol = str(service.get("protocol", "tcp")).upper()
    name = f"chg-port-{protocol.lower()}"
    cidr = "10.81.0.0/16"
    config = cluster_file(tmp_path, name, host_cidr=cidr, services=[service])
    squall("apply", str(config), "--yes", "--no-bootstrap")
    _, first = listeners(client, name)[APP["port"]]
    assert target_group(client, first)["TargetGroupName"] == f"{name}-app"
    listener_arns = listener_ids(client, name)

    moved = cluster_file(tmp_path, name, host_cidr=cidr, services=[{**service, "node_port": 30444}])
    plan = squall.plan_json(moved)
    change = replaced_group(plan)
    assert (change["action"], change["forces_replacement"]) == ("replace", ["port"])
    # The listener is re-pointed in place, not replaced: the port keeps serving.
    assert [c["action"] for c in plan["changes"] if c["kind"] == "listener"] == ["update"]
    other = change["new_name"]
    assert other not in (None, f"{name}-app") and other.startswith(f"{name}-app-")
    apply_in_time(squall, moved)
    second = check_moved(
        squall, client, moved, name, first, protocol=protocol, node_port=30444, tg_name=other
    )
    assert listener_ids(client, name) == listener_arns

    # Back again: the old name is free once more, and taken.
    config = cluster_file(tmp_path, name, host_cidr=cidr, services=[service])
    change = replaced_group(squall.plan_json(config))
    assert change["new_name"] == f"{name}-app"
    apply_in_time(squall, config)
    check_moved(
        squall,
        client,
        config,
        name,
        second,
        protocol=protocol,
        node_port=30333,
        tg_name=f"{name}-app",
    )


def test_protocol_change_moves_the_listener_then_deletes_the_old_group(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    name = "chg-proto"
    cidr = "10.82.0.0/16"
    config = cluster_file(tmp_path, name, host_cidr=cidr, services=[APP])
    squall("apply", str(config), "--yes", "--no-bootstrap")
    protocol, first = listeners(client, name)[APP["port"]]
    assert protocol == "TCP"

    before = listener_ids(client, name)

    both = cluster_file(tmp_path, name, host_cidr=cidr, services=[{**APP, "protocol": "tcp_udp"}])
    plan = squall.plan_json(both)
    change = replaced_group(plan)
    assert (change["action"], change["forces_replacement"]) == ("replace", ["protocol"])
    # AWS will not turn a listener of a dual-stack NLB into TCP_UDP: it is made anew.
    listener = one([c for c in plan["changes"] if c["kind"] == "listener"])
    assert (listener["action"], listener["forces_replacement"]) == ("replace", ["protocol"])
    apply_in_time(squall, both)
    after = listener_ids(client, name)
    assert after[APP["port"]] != before[APP["port"]]
    assert {p: a for p, a in after.items() if p != APP["port"]} == {
        p: a for p, a in before.items() if p != APP["port"]
    }
    check_moved(
        squall,
        client,
        both,
        name,
        first,
        protocol="TCP_UDP",
        node_port=30333,
        tg_name=change["new_name"],
    )


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_port_holding_someone_elses_listener_is_refused(
    command: str, squall: Squall, client: Client, tmp_path: Path
) -> None:
    name = f"chg-foreign-{command}"
    cidr = "10.83.0.0/16" if command == "plan" else "10.84.0.0/16"
    config = cluster_file(tmp_path, name, host_cidr=cidr, worker_count=1, services=[APP])
    squall("apply", str(config), "--yes", "--no-bootstrap")
    elb = client("elbv2")
    vpc = one(client("ec2").describe_vpcs(Filters=by_cluster(name))["Vpcs"])["VpcId"]
    theirs = elb.create_target_group(
        Name=f"byhand-{command}", Protocol="TCP", Port=31000, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    listener = elb.create_listener(
        LoadBalancerArn=nlb_arn(client, name),
        Protocol="TCP",
        Port=4444,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": theirs}],
    )["Listeners"][0]["ListenerArn"]
    before_listeners = listeners(client, name)
    before_groups = {g["TargetGroupArn"] for g in elb.describe_target_groups()["TargetGroups"]}
    before_rules = rules(client, name)

    web = {"name": "web", "port": 4444, "node_port": 30444}
    wanted = cluster_file(tmp_path, name, host_cidr=cidr, worker_count=1, services=[APP, web])
    args = ["--yes", "--no-bootstrap"] if command == "apply" else []
    proc = squall(command, str(wanted), *args, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"error: port 4444 of {name}-nlb has a listener squall does not own; "
        "remove it or choose another port"
    ], proc.stderr
    assert "Traceback" not in proc.stdout

    assert listeners(client, name) == before_listeners
    assert before_listeners[4444] == ("TCP", theirs)
    assert {g["TargetGroupArn"] for g in elb.describe_target_groups()["TargetGroups"]} == (
        before_groups
    )
    got = one(elb.describe_tags(ResourceArns=[listener])["TagDescriptions"])
    assert "squall.dev/cluster" not in tags(got)
    assert rules(client, name) == before_rules


def test_an_apply_stopped_between_new_and_old_group_is_finished(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    """Both groups exist, as an apply interrupted after making the new one leaves them: the
    next plan keeps the one that fits, moves the listener to it and deletes the other."""
    name = "chg-resume"
    cidr = "10.85.0.0/16"
    config = cluster_file(tmp_path, name, host_cidr=cidr, services=[APP])
    squall("apply", str(config), "--yes", "--no-bootstrap")
    _, first = listeners(client, name)[APP["port"]]
    moved = cluster_file(tmp_path, name, host_cidr=cidr, services=[{**APP, "node_port": 30444}])
    other = replaced_group(squall.plan_json(moved))["new_name"]
    vpc = one(client("ec2").describe_vpcs(Filters=by_cluster(name))["Vpcs"])["VpcId"]
    made = client("elbv2").create_target_group(
        Name=other,
        Protocol="TCP",
        Port=30444,
        VpcId=vpc,
        TargetType="instance",
        Tags=[{"Key": "Name", "Value": other}, {"Key": "squall.dev/cluster", "Value": name}],
    )["TargetGroups"][0]["TargetGroupArn"]

    plan = squall.plan_json(moved)
    groups = {(c["action"], c["id"]) for c in plan["changes"] if c["kind"] == "target_group"}
    # The hand-made one differs only in its health check, which changes in place.
    assert groups == {("delete", first), ("update", made)}
    apply_in_time(squall, moved)
    assert (
        check_moved(
            squall, client, moved, name, first, protocol="TCP", node_port=30444, tg_name=other
        )
        == made
    )
