"""The cluster file's extension points applied through the CLI to an emulated AWS and read back
with plain boto3: services (TCP, UDP, both), firewall rules, SSH and apiserver narrowing (at
the controllers and at the NLB's own security group), worker pools, the apiserver target
group's client address setting, and IPv6."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import Squall, by_cluster, cluster_file, tags

Client = Callable[[str], Any]
NAME = "ext-svc"
HOST_CIDR = "10.40.0.0/16"
SERVICES = [
    # External and node ports differ, like the seed's some-app.
    {"name": "app", "port": 3333, "node_port": 30333, "allow": ["198.51.100.0/24"]},
    {
        "name": "dns",
        "protocol": "udp",
        "port": 53,
        "node_port": 30053,
        # Nothing answers TCP on a UDP node port: the check goes to a TCP port of the app.
        "health_check_port": 30054,
        "allow": ["10.1.0.0/16", "2600:1f18::/40"],
    },
    {
        "name": "game",
        "protocol": "tcp_udp",
        "port": 7777,
        "node_port": 30777,
        "health_check_path": "/ready",
    },
]
RULES = [
    {
        "group": "worker",
        "protocol": "tcp",
        "from_port": 8000,
        "to_port": 8100,
        "cidrs": ["192.168.0.0/16", "2001:db8::/32"],
    },
    {"group": "controller", "protocol": "icmp", "from_port": -1, "to_port": -1, "cidrs": ["::/0"]},
    {
        "group": "controller",
        "protocol": "tcp",
        "from_port": 9999,
        "to_port": 9999,
        "source_group": "worker",
    },
    {"group": "worker", "protocol": "all", "source_group": "controller"},
]
POOL = {
    "name": "arm",
    "count": 2,
    "instance_type": "t4g.small",
    "arch": "arm64",
    "os_stream": "testing",
    "disk_size": 50,
    "spot_price": 0.02,
    "node_labels": ["pool=arm"],
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cluster_file(
        tmp_path_factory.mktemp("ext"),
        NAME,
        host_cidr=HOST_CIDR,
        worker_count=2,
        services=SERVICES,
        firewall_rules=RULES,
        worker_pools=[POOL],
        ssh_cidrs=["203.0.113.0/24", "2001:db8:5::/48"],
        apiserver_cidrs=["198.51.100.0/24"],
    )


@pytest.fixture(scope="module")
def applied(squall: Squall, config: Path) -> Path:
    squall("apply", str(config), "--yes", "--no-bootstrap")
    return config


def one(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def tg(client: Client, name: str) -> dict[str, Any]:
    return one(client("elbv2").describe_target_groups(Names=[name])["TargetGroups"])


def group(client: Client, name: str) -> dict[str, Any]:
    got = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return one(got["AutoScalingGroups"])


def sg_id(client: Client, role: str) -> str:
    got = client("ec2").describe_security_groups(
        Filters=[*by_cluster(NAME), {"Name": "group-name", "Values": [f"{NAME}-{role}"]}]
    )
    return str(one(got["SecurityGroups"])["GroupId"])


def ingress(client: Client, role: str) -> set[tuple[str, int, int, str]]:
    """(protocol, from, to, source) of a group's ingress rules; source is a CIDR or a role."""
    roles = {sg_id(client, r): r for r in ("controller", "worker", "nlb")}
    rules = client("ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [sg_id(client, role)]}]
    )["SecurityGroupRules"]
    out = set()
    for r in rules:
        if r["IsEgress"]:
            continue
        ref = r.get("ReferencedGroupInfo", {}).get("GroupId")
        source = roles.get(ref, ref) if ref else r.get("CidrIpv4") or r.get("CidrIpv6")
        out.add((r["IpProtocol"], r["FromPort"], r["ToPort"], source))
    return out


def listeners(client: Client) -> dict[int, tuple[str, str]]:
    elb = client("elbv2")
    lb = one(elb.describe_load_balancers(Names=[f"{NAME}-nlb"])["LoadBalancers"])
    out = {}
    for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        action = one(x["DefaultActions"])
        assert action["Type"] == "forward"
        out[x["Port"]] = (x["Protocol"], action["TargetGroupArn"])
    return out


def test_each_service_has_a_listener_and_target_group(applied: Path, client: Client) -> None:
    vpc = one(client("ec2").describe_vpcs(Filters=by_cluster(NAME))["Vpcs"])["VpcId"]
    got = listeners(client)
    expect = {
        "app": ("TCP", 3333, 30333, "TCP", None, 30333),
        "dns": ("UDP", 53, 30053, "TCP", None, 30054),
        "game": ("TCP_UDP", 7777, 30777, "HTTP", "/ready", 30777),
    }
    for svc, (protocol, port, node_port, check, path, health_port) in expect.items():
        group_ = tg(client, f"{NAME}-{svc}")
        assert got[port] == (protocol, group_["TargetGroupArn"])
        assert (group_["Protocol"], group_["Port"], group_["TargetType"]) == (
            protocol,
            node_port,
            "instance",
        )
        assert group_["VpcId"] == vpc
        # TCP unless a path is given, on the node port unless a health_check_port is.
        assert group_["HealthCheckProtocol"] == check
        assert group_["HealthCheckPort"] == str(health_port)
        assert group_.get("HealthCheckPath") == path
        tags_ = client("elbv2").describe_tags(ResourceArns=[group_["TargetGroupArn"]])
        assert tags(one(tags_["TagDescriptions"]))["squall.dev/cluster"] == NAME
    assert set(got) == {6443, 80, 443, 3333, 53, 7777}


def test_every_worker_group_registers_in_the_service_target_groups(
    applied: Path, client: Client
) -> None:
    services = {tg(client, f"{NAME}-{s['name']}")["TargetGroupArn"] for s in SERVICES}
    ingress_tgs = {tg(client, f"{NAME}-workers-{s}")["TargetGroupArn"] for s in ("http", "https")}
    main = group(client, f"{NAME}-worker")
    assert set(main["TargetGroupARNs"]) == services | ingress_tgs
    # A pool takes ingress traffic only when it says so (ingress defaults to false).
    pool = group(client, f"{NAME}-arm")
    assert set(pool["TargetGroupARNs"]) == services
    for arn in services:
        health = client("elbv2").describe_target_health(TargetGroupArn=arn)
        registered = {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}
        members = {i["InstanceId"] for g in (main, pool) for i in g["Instances"]}
        assert registered == members and len(members) == 4


def test_service_node_ports_open_to_allow_and_to_the_nlb(applied: Path, client: Client) -> None:
    rules = ingress(client, "worker")
    assert {
        ("tcp", 30333, 30333, "198.51.100.0/24"),
        ("udp", 30053, 30053, "10.1.0.0/16"),
        ("udp", 30053, 30053, "2600:1f18::/40"),
        ("tcp", 30777, 30777, "0.0.0.0/0"),
        ("tcp", 30777, 30777, "::/0"),
        ("udp", 30777, 30777, "0.0.0.0/0"),
        ("udp", 30777, 30777, "::/0"),
    } <= rules
    # Health checks (TCP or HTTP, whatever the service) and the IPv6 clients the NLB hands
    # over from its IPv4 addresses come from the NLB's group, in each service's protocols.
    assert {
        ("tcp", 30333, 30333, "nlb"),
        ("tcp", 30054, 30054, "nlb"),
        ("udp", 30053, 30053, "nlb"),
        ("tcp", 30777, 30777, "nlb"),
        ("udp", 30777, 30777, "nlb"),
    } <= rules
    # Not from the whole VPC any more.
    assert not {r for r in rules if r[3] == HOST_CIDR}
    # allow narrows: the app's node port is not open to the world, nor over UDP.
    assert ("tcp", 30333, 30333, "0.0.0.0/0") not in rules
    assert not {r for r in rules if r[0] == "udp" and r[1] == 30333}
    # A UDP service's node port is not opened over TCP: its health check has its own port.
    assert not {r for r in rules if r[0] == "tcp" and r[1] == 30053}


def test_nlb_group_filters_clients_by_allow(applied: Path, client: Client) -> None:
    rules = ingress(client, "nlb")
    services = {r for r in rules if r[1] not in (6443, 80, 443)}
    # Each service's external port, in its protocols, from its allow list (default: everyone).
    assert services == {
        ("tcp", 3333, 3333, "198.51.100.0/24"),
        ("udp", 53, 53, "10.1.0.0/16"),
        ("udp", 53, 53, "2600:1f18::/40"),
        ("tcp", 7777, 7777, "0.0.0.0/0"),
        ("tcp", 7777, 7777, "::/0"),
        ("udp", 7777, 7777, "0.0.0.0/0"),
        ("udp", 7777, 7777, "::/0"),
    }
    # Ingress stays the cluster's front door, over IPv4 and IPv6.
    for port in (80, 443):
        assert {r[3] for r in rules if r[:3] == ("tcp", port, port)} == {"0.0.0.0/0", "::/0"}
    lb = one(client("elbv2").describe_load_balancers(Names=[f"{NAME}-nlb"])["LoadBalancers"])
    assert lb["SecurityGroups"] == [sg_id(client, "nlb")]


def test_firewall_rules(applied: Path, client: Client) -> None:
    worker, controller = ingress(client, "worker"), ingress(client, "controller")
    assert ("tcp", 8000, 8100, "192.168.0.0/16") in worker
    assert ("tcp", 8000, 8100, "2001:db8::/32") in worker
    assert ("-1", -1, -1, "controller") in worker
    assert ("icmpv6", -1, -1, "::/0") in controller
    assert ("tcp", 9999, 9999, "worker") in controller
    rules = client("ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [sg_id(client, "worker")]}]
    )["SecurityGroupRules"]
    # Every rule squall made carries the cluster's tag: that is how it knows its own.
    made = [r for r in rules if r.get("CidrIpv4") == "192.168.0.0/16"]
    assert tags(one(made))["squall.dev/cluster"] == NAME


def test_ssh_and_apiserver_cidrs_narrow_the_wide_open_rules(applied: Path, client: Client) -> None:
    ssh = {"203.0.113.0/24", "2001:db8:5::/48"}
    for role in ("controller", "worker"):
        rules = ingress(client, role)
        assert {r[3] for r in rules if r[:3] == ("tcp", 22, 22)} == ssh
    vpc = one(client("ec2").describe_vpcs(Filters=by_cluster(NAME))["Vpcs"])
    vpc_ipv6 = vpc["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]

    def admit_6443(role: str) -> set[str]:
        return {
            source
            for proto, low, high, source in ingress(client, role)
            if proto in ("tcp", "-1") and (low == -1 or low <= 6443 <= high)
        }

    # Directly: the listed CIDRs; through the NLB: whatever the NLB's group lets in, since
    # the controllers see the NLB's private addresses (client addresses not kept).
    assert admit_6443("controller") == {"198.51.100.0/24", "nlb"}
    # At the NLB: the listed CIDRs, and the nodes themselves over IPv6 (no ::/0, no 0.0.0.0/0).
    assert admit_6443("nlb") == {"198.51.100.0/24", vpc_ipv6}


def test_apiserver_target_group_does_not_keep_client_addresses(
    applied: Path, client: Client
) -> None:
    elb = client("elbv2")
    arn = tg(client, f"{NAME}-controllers")["TargetGroupArn"]
    attrs = elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
    assert {a["Key"]: a["Value"] for a in attrs}["preserve_client_ip.enabled"] == "false"
    # Ingress and services keep them, so that allow lists see the real clients.
    arn = tg(client, f"{NAME}-app")["TargetGroupArn"]
    attrs = elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
    assert {a["Key"]: a["Value"] for a in attrs}.get("preserve_client_ip.enabled") != "false"


def test_worker_pool_has_its_own_template_image_and_node_config(
    applied: Path, squall: Squall, client: Client, tmp_path: Path
) -> None:
    pool = group(client, f"{NAME}-arm")
    assert (pool["MinSize"], pool["DesiredCapacity"], pool["MaxSize"]) == (2, 2, 4)
    assert tags(pool)["squall.dev/cluster"] == NAME
    lt = pool["LaunchTemplate"]
    assert lt["LaunchTemplateName"] == f"{NAME}-arm"
    data = one(
        client("ec2").describe_launch_template_versions(
            LaunchTemplateId=lt["LaunchTemplateId"], Versions=[lt["Version"]]
        )["LaunchTemplateVersions"]
    )["LaunchTemplateData"]
    assert data["InstanceType"] == "t4g.small"
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 50
    assert data["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.02"
    assert data["NetworkInterfaces"][0]["Groups"] == [sg_id(client, "worker")]
    images = client("ec2").describe_images(
        Owners=["125523088429"],
        Filters=[
            {"Name": "architecture", "Values": ["arm64"]},
            {"Name": "description", "Values": ["Fedora CoreOS testing *"]},
        ],
    )["Images"]
    assert data["ImageId"] == max(images, key=lambda i: i["CreationDate"])["ImageId"]
    out = tmp_path / "render"
    squall("render", str(applied), "--out", str(out))
    user_data = base64.b64decode(data["UserData"]).decode()
    assert user_data == (out / "ignition" / "worker-arm.ign").read_text()
    assert user_data != (out / "ignition" / "worker.ign").read_text()


def test_ipv6_rows_of_the_seed_table(applied: Path, client: Client) -> None:
    ec2 = client("ec2")
    # Node IPv6 addresses: every subnet hands one out on launch from the VPC's /56.
    for s in ec2.describe_subnets(Filters=by_cluster(NAME))["Subnets"]:
        assert s["AssignIpv6AddressOnCreation"] is True
        assert s["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"].endswith("/64")
    # Outbound IPv6: a default route to the internet gateway, and egress allowed.
    table = one(ec2.describe_route_tables(Filters=by_cluster(NAME))["RouteTables"])
    assert any(r.get("DestinationIpv6CidrBlock") == "::/0" for r in table["Routes"])
    for role in ("controller", "worker"):
        egress = ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [sg_id(client, role)]}]
        )["SecurityGroupRules"]
        assert any(r["IsEgress"] and r.get("CidrIpv6") == "::/0" for r in egress)
    # Ingress: a dualstack NLB behind A and AAAA records.
    lb = one(client("elbv2").describe_load_balancers(Names=[f"{NAME}-nlb"])["LoadBalancers"])
    assert lb["IpAddressType"] == "dualstack"
    zone = client("route53").list_resource_record_sets(HostedZoneId="Z3PAABBCFAKEC0")
    kinds = {s["Type"] for s in zone["ResourceRecordSets"] if s["Name"].startswith(f"{NAME}.")}
    assert kinds == {"A", "AAAA"}


def test_second_plan_is_empty(applied: Path, squall: Squall) -> None:
    assert squall.plan_json(applied)["changes"] == []
