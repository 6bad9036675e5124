"""A cluster's life through the CLI against an emulated AWS: scaling, what never replaces a
controller, destroy that removes only what the cluster owns, an apply killed halfway, and the
one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from squall import emulator

from .helpers import ZONE, ZONE_ID, Squall, by_cluster, clean_env, cluster_file, tags
from .holdproxy import HoldProxy

Client = Callable[[str], Any]
SNIPPET = """variant: fcos
version: 1.5.0
storage:
  files:
    - path: /etc/hello
      contents:
        inline: hi
"""


def controller(client: Client, name: str, i: int = 0) -> dict[str, Any]:
    got = client("ec2").describe_instances(
        Filters=[
            *by_cluster(name),
            {"Name": "tag:Name", "Values": [f"{name}-controller-{i}"]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )["Reservations"]
    instances = [i for r in got for i in r["Instances"]]
    assert len(instances) == 1, instances
    return instances[0]


def group(client: Client, name: str) -> dict[str, Any]:
    got = client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{name}-worker"]
    )
    assert len(got["AutoScalingGroups"]) == 1
    return dict(got["AutoScalingGroups"][0])


def test_worker_count_changes_the_group_only(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    config = cluster_file(tmp_path, "scale", worker_count=2)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    before = controller(client, "scale")
    template = group(client, "scale")["LaunchTemplate"]

    config = cluster_file(tmp_path, "scale", worker_count=3)
    plan = squall.plan_json(config)
    assert [(c["action"], c["kind"], c["name"]) for c in plan["changes"]] == [
        ("update", "auto_scaling_group", "scale-worker")
    ]
    fields = plan["changes"][0]["fields"]
    assert fields == {
        "desired_capacity": {"before": 2, "after": 3},
        "max_size": {"before": 4, "after": 5},
        "min_size": {"before": 2, "after": 3},
    }
    squall("apply", str(config), "--yes", "--no-bootstrap")

    g = group(client, "scale")
    assert (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == (3, 3, 5)
    assert len(g["Instances"]) == 3
    assert g["LaunchTemplate"] == template
    after = controller(client, "scale")
    assert after["InstanceId"] == before["InstanceId"]
    assert after["LaunchTime"] == before["LaunchTime"]
    assert after["State"]["Name"] == "running"
    assert squall.plan_json(config)["changes"] == []


def test_what_is_no_longer_desired_is_deleted(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    config = cluster_file(tmp_path, "shrink", controller_count=2)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    kept = controller(client, "shrink", 0)["InstanceId"]
    doomed = controller(client, "shrink", 1)["InstanceId"]

    config = cluster_file(tmp_path, "shrink", controller_count=1)
    plan = squall.plan_json(config)
    assert sorted((c["action"], c["kind"], c["name"]) for c in plan["changes"]) == [
        ("delete", "instance", "shrink-controller-1"),
        ("delete", "record", f"shrink-etcd1.{ZONE} A"),
        ("delete", "target", "shrink-controllers shrink-controller-1:6443"),
    ]
    assert next(c for c in plan["changes"] if c["kind"] == "instance")["id"] == doomed
    squall("apply", str(config), "--yes", "--no-bootstrap")

    state = client("ec2").describe_instances(InstanceIds=[doomed])["Reservations"][0]["Instances"][
        0
    ]
    assert state["State"]["Name"] == "terminated"
    assert controller(client, "shrink", 0)["InstanceId"] == kept
    tg = client("elbv2").describe_target_groups(Names=["shrink-controllers"])["TargetGroups"][0]
    health = client("elbv2").describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
    assert [d["Target"]["Id"] for d in health["TargetHealthDescriptions"]] == [kept]
    sets = client("route53").list_resource_record_sets(HostedZoneId=ZONE_ID)["ResourceRecordSets"]
    assert sorted(s["Name"] for s in sets if s["Name"].startswith("shrink-etcd")) == [
        f"shrink-etcd0.{ZONE}."
    ]
    assert squall.plan_json(config)["changes"] == []


def test_new_ami_or_user_data_never_replaces_a_controller(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    config = cluster_file(tmp_path, "keep")
    squall("apply", str(config), "--yes", "--no-bootstrap")
    first = controller(client, "keep")

    # New node configs for controllers: the running controller keeps its first-boot config.
    config = cluster_file(tmp_path, "keep", controller_snippets=[SNIPPET])
    assert squall.plan_json(config)["changes"] == []

    # Another AMI pinned for both roles (as when the stream moves on): the worker template
    # gets a new version and the group rolls; the controller stays.
    pins_path = tmp_path / ".squall" / "keep" / "aws" / "amis.json"
    pins = json.loads(pins_path.read_text())
    images = client("ec2").describe_images(
        Owners=["125523088429"],
        Filters=[
            {"Name": "description", "Values": ["Fedora CoreOS stable *"]},
            {"Name": "architecture", "Values": ["x86_64"]},
        ],
    )["Images"]
    older = min(images, key=lambda i: i["CreationDate"])
    assert older["ImageId"] != first["ImageId"]
    for role in ("controller", "worker"):
        pins[role]["image"]["id"] = older["ImageId"]
    pins_path.write_text(json.dumps(pins))

    plan = squall.plan_json(config)
    changed = {(c["action"], c["kind"]) for c in plan["changes"]}
    assert changed == {("update", "launch_template"), ("update", "auto_scaling_group")}
    template = next(c for c in plan["changes"] if c["kind"] == "launch_template")
    assert template["fields"]["image_id"] == {"before": first["ImageId"], "after": older["ImageId"]}
    out = squall("apply", str(config), "--yes", "--no-bootstrap").stdout
    # The emulated AWS lacks StartInstanceRefresh: squall says so and carries on.
    assert "instance refresh" in out

    g = group(client, "keep")
    assert g["LaunchTemplate"]["Version"] == "2"
    data = client("ec2").describe_launch_template_versions(
        LaunchTemplateId=g["LaunchTemplate"]["LaunchTemplateId"], Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    assert data["VersionNumber"] == 2
    assert data["LaunchTemplateData"]["ImageId"] == older["ImageId"]
    kept = controller(client, "keep")
    assert kept["InstanceId"] == first["InstanceId"]
    assert kept["ImageId"] == first["ImageId"]
    assert squall.plan_json(config)["changes"] == []


def owned_anything(client: Client, name: str) -> dict[str, int]:
    """How many resources of each sort still carry the cluster's tag (or its DNS names)."""
    ec2, elb = client("ec2"), client("elbv2")
    f = by_cluster(name)
    live = [
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    ]
    counts = {
        "vpc": len(ec2.describe_vpcs(Filters=f)["Vpcs"]),
        "subnet": len(ec2.describe_subnets(Filters=f)["Subnets"]),
        "igw": len(ec2.describe_internet_gateways(Filters=f)["InternetGateways"]),
        "route_table": len(ec2.describe_route_tables(Filters=f)["RouteTables"]),
        "security_group": len(ec2.describe_security_groups(Filters=f)["SecurityGroups"]),
        "rule": len(ec2.describe_security_group_rules(Filters=f)["SecurityGroupRules"]),
        "instance": sum(
            len(r["Instances"]) for r in ec2.describe_instances(Filters=f + live)["Reservations"]
        ),
        "launch_template": len(ec2.describe_launch_templates(Filters=f)["LaunchTemplates"]),
        "asg": len(
            client("autoscaling").describe_auto_scaling_groups(
                Filters=[{"Name": "tag:squall.dev/cluster", "Values": [name]}]
            )["AutoScalingGroups"]
        ),
    }
    arns = [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]]
    arns += [tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]]
    owned = [
        d
        for i in range(0, len(arns), 20)
        for d in elb.describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]
        if tags(d).get("squall.dev/cluster") == name
    ]
    counts["elb"] = len(owned)
    sets = client("route53").list_resource_record_sets(HostedZoneId=ZONE_ID)["ResourceRecordSets"]
    counts["record"] = sum(
        1 for s in sets if s["Name"] == f"{name}.{ZONE}." or s["Name"].startswith(f"{name}-etcd")
    )
    return counts


def test_destroy_removes_what_the_cluster_owns_and_nothing_else(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    ec2, elb = client("ec2"), client("elbv2")
    # Beside the cluster: a VPC, a target group, an instance and a record of someone else.
    other_vpc = ec2.create_vpc(CidrBlock="172.16.0.0/16")["Vpc"]["VpcId"]
    other_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock="172.16.0.0/24")["Subnet"][
        "SubnetId"
    ]
    other_tg = elb.create_target_group(
        Name="bystander", Protocol="TCP", Port=80, VpcId=other_vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    image = ec2.describe_images(Owners=["125523088429"])["Images"][0]["ImageId"]
    other_instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=other_subnet
    )["Instances"][0]["InstanceId"]
    client("route53").change_resource_record_sets(
        HostedZoneId=ZONE_ID,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"gone-app.{ZONE}",
                        "Type": "A",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                }
            ]
        },
    )

    config = cluster_file(tmp_path, "gone", controller_count=2)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    before = owned_anything(client, "gone")
    assert all(before[k] > 0 for k in before), before
    # A rule a user added to the cluster's worker group by hand is theirs, not the cluster's.
    worker_sg = ec2.describe_security_groups(
        Filters=[*by_cluster("gone"), {"Name": "group-name", "Values": ["gone-worker"]}]
    )["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=worker_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 3333,
                "ToPort": 3333,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    assert squall.plan_json(config)["changes"] == []

    plan = squall("destroy", str(config), "--yes")
    assert "Destroyed cluster gone" in plan.stdout
    after = owned_anything(client, "gone")
    assert after == {k: 0 for k in before}
    # The hand-made rule went with its group; everything beside the cluster is still there.
    assert ec2.describe_vpcs(VpcIds=[other_vpc])["Vpcs"]
    assert elb.describe_target_groups(TargetGroupArns=[other_tg])["TargetGroups"]
    state = ec2.describe_instances(InstanceIds=[other_instance])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "running"
    sets = client("route53").list_resource_record_sets(HostedZoneId=ZONE_ID)["ResourceRecordSets"]
    assert any(s["Name"] == f"gone-app.{ZONE}." for s in sets)

    again = squall("destroy", str(config), "--yes")
    assert "Nothing to destroy" in again.stdout


@pytest.mark.parametrize("action", ["CreateVpc", "RunInstances", "CreateAutoScalingGroup"])
def test_apply_killed_halfway_converges_without_duplicates(
    aws: emulator.EmulatedAws, squall: Squall, client: Client, tmp_path: Path, action: str
) -> None:
    name = f"kill-{action.lower()[:10]}"
    config = cluster_file(tmp_path, name, controller_count=2)
    with HoldProxy(aws.endpoint, hold=action) as proxy:
        env = clean_env({**aws.env(), "AWS_ENDPOINT_URL": proxy.url})
        proc = subprocess.Popen(
            [sys.executable, "-m", "squall", "apply", str(config), "--yes", "--no-bootstrap"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proxy.held.wait(120), f"{action} never came: {proxy.actions[-5:]}"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    # AWS made what the held call asked for, but the apply is not complete.
    partial = owned_anything(client, name)
    assert partial["vpc"] == 1
    assert partial["record"] < 4

    squall("apply", str(config), "--yes", "--no-bootstrap")
    counts = owned_anything(client, name)
    zones = len(client("ec2").describe_availability_zones()["AvailabilityZones"])
    assert counts["vpc"] == 1
    assert counts["igw"] == 1
    assert counts["route_table"] == 1
    assert counts["subnet"] == zones
    assert counts["security_group"] == 3  # controllers, workers, the NLB
    assert counts["launch_template"] == 1
    assert counts["asg"] == 1
    assert counts["elb"] == 4  # the NLB and its three target groups
    assert counts["record"] == 4  # A, AAAA, two etcd
    controllers = [controller(client, name, i)["InstanceId"] for i in range(2)]
    assert len(set(controllers)) == 2
    assert squall.plan_json(config)["changes"] == []


def test_ctrl_c_stops_at_once_with_a_safe_message(
    aws: emulator.EmulatedAws, squall: Squall, client: Client, tmp_path: Path
) -> None:
    config = cluster_file(tmp_path, "intr")
    with HoldProxy(aws.endpoint, hold="CreateLoadBalancer") as proxy:
        env = clean_env({**aws.env(), "AWS_ENDPOINT_URL": proxy.url})
        proc = subprocess.Popen(
            [sys.executable, "-m", "squall", "apply", str(config), "--yes", "--no-bootstrap"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proxy.held.wait(120)
            # A call is in flight and never answered: the process must not wait for it.
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert "interrupted; re-run the same command to continue" in stderr
    assert "Traceback" not in stderr
    squall("apply", str(config), "--yes", "--no-bootstrap")
    assert squall.plan_json(config)["changes"] == []
    assert owned_anything(client, "intr")["elb"] == 4


def test_apply_without_a_terminal_needs_yes(squall: Squall, client: Client, tmp_path: Path) -> None:
    config = cluster_file(tmp_path, "ask")
    proc = squall("apply", str(config), "--no-bootstrap", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "pass --yes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert owned_anything(client, "ask")["vpc"] == 0
    proc = squall("destroy", str(config), check=False)
    assert proc.returncode == 0 and "Nothing to destroy" in proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_aws_errors_are_one_clear_line(
    aws: emulator.EmulatedAws, squall: Squall, tmp_path: Path
) -> None:
    def variant(label: str, **overrides: Any) -> Path:
        d = tmp_path / label
        d.mkdir()
        return cluster_file(d, "errs", **overrides)

    config = variant("plain")
    no_credentials = clean_env({"AWS_ENDPOINT_URL": aws.endpoint})
    line = one_line_error(squall("plan", str(config), check=False, env=no_credentials))
    assert "no AWS credentials" in line and "AWS_PROFILE" in line

    unknown_zone = variant("zone-id", dns_zone_id="Z0000000NOSUCH")
    line = one_line_error(squall("plan", str(unknown_zone), check=False))
    assert "dns_zone_id" in line and "Z0000000NOSUCH" in line

    wrong_zone_name = variant("zone-name", dns_zone="other.example.com")
    line = one_line_error(squall("plan", str(wrong_zone_name), check=False))
    assert "aws.example.com" in line and "other.example.com" in line

    with HoldProxy(aws.endpoint, deny="DescribeVpcs") as proxy:
        denied = clean_env({**aws.env(), "AWS_ENDPOINT_URL": proxy.url})
        line = one_line_error(squall("plan", str(config), check=False, env=denied))
    assert "UnauthorizedOperation" in line and "IAM permission" in line

    proc = squall("outputs", str(config), check=False)
    line = one_line_error(proc)
    assert "squall apply" in line
