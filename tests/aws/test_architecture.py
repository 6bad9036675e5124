"""Every fact of the AWS architecture (facts §1–§5), applied through the CLI to an emulated AWS
and read back with plain boto3, with what squall adds to it: the NLB's own security group.

Two clusters share the module's emulated AWS: ``arch-c`` (cilium, Fedora CoreOS, three
controllers, spot workers) and ``arch-f`` (flannel, Flatcar beta,
arm64 workers, no public IPv4 on workers).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import ZONE, ZONE_ID, Squall, by_cluster, cluster_file, tags

CILIUM = "arch-c"
FLANNEL = "arch-f"
FCOS_OWNER = "125523088429"
FLATCAR_OWNER = "075585003325"

Client = Callable[[str], Any]


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("arch")
    return {
        CILIUM: cluster_file(
            d,
            CILIUM,
            host_cidr="10.8.0.0/16",
            controller_count=3,
            worker_count=2,
            networking="cilium",
            worker_price=0.0213,
            worker_cpu_credits="unlimited",
        ),
        FLANNEL: cluster_file(
            d,
            FLANNEL,
            controller_count=1,
            worker_count=1,
            networking="flannel",
            os="flatcar",
            os_image="flatcar-beta",
            worker_arch="arm64",
            worker_type="t4g.small",
            worker_public_ipv4=False,
            controller_disk_size=40,
            controller_disk_iops=4000,
        ),
    }


@pytest.fixture(scope="module")
def applied(squall: Squall, configs: dict[str, Path]) -> dict[str, Path]:
    for config in configs.values():
        squall("apply", str(config), "--yes", "--no-bootstrap")
    return configs


@pytest.fixture(scope="module")
def rendered(
    squall: Squall, applied: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """What `squall render` writes for each cluster (same state, so the same node configs)."""
    out = {}
    for name, config in applied.items():
        d = tmp_path_factory.mktemp(f"render-{name}")
        squall("render", str(config), "--out", str(d))
        out[name] = d
    return out


def one(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def vpc_of(client: Client, name: str) -> dict[str, Any]:
    return one(client("ec2").describe_vpcs(Filters=by_cluster(name))["Vpcs"])


def zones(client: Client) -> list[str]:
    got = client("ec2").describe_availability_zones()["AvailabilityZones"]
    return sorted(z["ZoneName"] for z in got if z["State"] == "available")


def subnets_of(client: Client, name: str) -> list[dict[str, Any]]:
    got = client("ec2").describe_subnets(Filters=by_cluster(name))["Subnets"]
    return sorted(got, key=lambda s: int(tags(s)["Name"].rsplit("-", 1)[1]))


def nlb_of(client: Client, name: str) -> dict[str, Any]:
    got = client("elbv2").describe_load_balancers(Names=[f"{name}-nlb"])["LoadBalancers"]
    return one(got)


def tg_of(client: Client, name: str) -> dict[str, Any]:
    return one(client("elbv2").describe_target_groups(Names=[name])["TargetGroups"])


def controllers_of(client: Client, name: str) -> list[dict[str, Any]]:
    got = client("ec2").describe_instances(
        Filters=[
            *by_cluster(name),
            {"Name": "tag:Name", "Values": [f"{name}-controller-*"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    return sorted((i for r in got for i in r["Instances"]), key=lambda i: tags(i)["Name"])


# --- §1 network -------------------------------------------------------------------------


def test_vpc_is_dualstack_with_dns(applied: dict[str, Path], client: Client) -> None:
    vpc = vpc_of(client, CILIUM)
    assert vpc["CidrBlock"] == "10.8.0.0/16"
    assert tags(vpc)["Name"] == CILIUM
    v6 = one(vpc["Ipv6CidrBlockAssociationSet"])
    assert v6["Ipv6CidrBlockState"]["State"] == "associated"
    assert ipaddress.ip_network(v6["Ipv6CidrBlock"]).prefixlen == 56
    ec2 = client("ec2")
    for attr, key in (
        ("enableDnsSupport", "EnableDnsSupport"),
        ("enableDnsHostnames", "EnableDnsHostnames"),
    ):
        got = ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute=attr)
        assert got[key]["Value"] is True, attr
    assert vpc_of(client, FLANNEL)["CidrBlock"] == "10.0.0.0/16"


def test_one_internet_gateway_attached(applied: dict[str, Path], client: Client) -> None:
    vpc = vpc_of(client, CILIUM)
    gws = client("ec2").describe_internet_gateways(Filters=by_cluster(CILIUM))["InternetGateways"]
    gw = one(gws)
    assert [a["VpcId"] for a in gw["Attachments"]] == [vpc["VpcId"]]


def test_one_public_subnet_per_zone(applied: dict[str, Path], client: Client) -> None:
    vpc = vpc_of(client, CILIUM)
    block6 = ipaddress.ip_network(vpc["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"])
    subnets = subnets_of(client, CILIUM)
    assert [s["AvailabilityZone"] for s in subnets] == zones(client)
    v4 = list(ipaddress.ip_network("10.8.0.0/16").subnets(new_prefix=20))
    v6 = block6.subnets(new_prefix=64)
    for i, s in enumerate(subnets):
        assert tags(s)["Name"] == f"{CILIUM}-public-{i}"
        assert s["VpcId"] == vpc["VpcId"]
        assert s["CidrBlock"] == str(v4[i])
        assert one(s["Ipv6CidrBlockAssociationSet"])["Ipv6CidrBlock"] == str(next(v6))
        assert s["MapPublicIpOnLaunch"] is True
        assert s["AssignIpv6AddressOnCreation"] is True
        dns = s["PrivateDnsNameOptionsOnLaunch"]
        assert dns["HostnameType"] == "resource-name"
        assert dns["EnableResourceNameDnsARecord"] is True
        assert dns["EnableResourceNameDnsAAAARecord"] is True


def test_route_table_has_separate_default_routes(applied: dict[str, Path], client: Client) -> None:
    ec2 = client("ec2")
    table = one(ec2.describe_route_tables(Filters=by_cluster(CILIUM))["RouteTables"])
    gw = one(ec2.describe_internet_gateways(Filters=by_cluster(CILIUM))["InternetGateways"])
    made = [r for r in table["Routes"] if r.get("Origin") == "CreateRoute"]
    assert sorted(
        (r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock"), r["GatewayId"])
        for r in made
    ) == sorted([("0.0.0.0/0", gw["InternetGatewayId"]), ("::/0", gw["InternetGatewayId"])])
    associated = {a["SubnetId"] for a in table["Associations"] if not a.get("Main")}
    assert associated == {s["SubnetId"] for s in subnets_of(client, CILIUM)}


# --- §3 firewalls -----------------------------------------------------------------------

# The facts tables, written out again here: (protocol, from, to, source).
C, W, SELF, NLB = "controller", "worker", "self", "nlb"
CONTROLLER_RULES = {
    ("tcp", 22, 22, "0.0.0.0/0"),
    ("tcp", 22, 22, "::/0"),
    ("tcp", 2379, 2380, SELF),
    ("tcp", 2381, 2381, W),
    ("tcp", 6443, 6443, "0.0.0.0/0"),
    # squall goes beyond: what the NLB forwards arrives from the NLB's own group.
    ("tcp", 6443, 6443, NLB),
    ("udp", 8472, 8472, W),
    ("udp", 8472, 8472, SELF),
    ("tcp", 9100, 9100, W),
    ("tcp", 10249, 10249, W),
    ("tcp", 10250, 10250, W),
    ("tcp", 10250, 10250, SELF),
    ("tcp", 10257, 10257, W),
    ("tcp", 10259, 10259, W),
}
CONTROLLER_CILIUM = {
    ("icmp", 8, 0, W),
    ("icmp", 8, 0, SELF),
    ("tcp", 4240, 4240, W),
    ("tcp", 4240, 4240, SELF),
    ("tcp", 9962, 9965, W),
    ("tcp", 9962, 9965, SELF),
}
WORKER_RULES = {
    ("tcp", 22, 22, "0.0.0.0/0"),
    ("tcp", 80, 80, "0.0.0.0/0"),
    ("tcp", 443, 443, "0.0.0.0/0"),
    ("udp", 8472, 8472, C),
    ("udp", 8472, 8472, SELF),
    ("tcp", 9100, 9100, SELF),
    ("tcp", 10249, 10249, SELF),
    ("tcp", 10250, 10250, C),
    ("tcp", 10250, 10250, SELF),
    ("tcp", 10254, 10254, "0.0.0.0/0"),
}
WORKER_CILIUM = {
    ("icmp", 8, 0, C),
    ("icmp", 8, 0, SELF),
    ("tcp", 4240, 4240, C),
    ("tcp", 4240, 4240, SELF),
    ("tcp", 9962, 9965, C),
    ("tcp", 9962, 9965, SELF),
}
EGRESS = {("-1", -1, -1, "0.0.0.0/0"), ("-1", -1, -1, "::/0")}
# The NLB's group with the default apiserver_cidrs: everyone, over IPv4 and IPv6, as before.
NLB_RULES = {
    ("tcp", 6443, 6443, "0.0.0.0/0"),
    ("tcp", 6443, 6443, "::/0"),
    ("tcp", 80, 80, "0.0.0.0/0"),
    ("tcp", 80, 80, "::/0"),
    ("tcp", 443, 443, "0.0.0.0/0"),
    ("tcp", 443, 443, "::/0"),
}


def rules_of(client: Client, cluster: str) -> dict[str, dict[bool, set[tuple[Any, ...]]]]:
    ec2 = client("ec2")
    groups = ec2.describe_security_groups(Filters=by_cluster(cluster))["SecurityGroups"]
    role = {g["GroupId"]: g["GroupName"].removeprefix(f"{cluster}-") for g in groups}
    assert sorted(role.values()) == ["controller", "nlb", "worker"]
    out: dict[str, dict[bool, set[tuple[Any, ...]]]] = {
        r: {True: set(), False: set()} for r in role.values()
    }
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": list(role)}])[
        "SecurityGroupRules"
    ]
    for r in rules:
        ref = r.get("ReferencedGroupInfo", {}).get("GroupId")
        source = (
            ("self" if ref == r["GroupId"] else role[ref])
            if ref
            else r.get("CidrIpv4") or r.get("CidrIpv6")
        )
        rule = (r["IpProtocol"], r["FromPort"], r["ToPort"], source)
        bucket = out[role[r["GroupId"]]][r["IsEgress"]]
        assert rule not in bucket, f"duplicate rule {rule}"
        bucket.add(rule)
    return out


def test_firewall_rules_with_cilium(applied: dict[str, Path], client: Client) -> None:
    rules = rules_of(client, CILIUM)
    assert rules["controller"][False] == CONTROLLER_RULES | CONTROLLER_CILIUM
    assert rules["worker"][False] == WORKER_RULES | WORKER_CILIUM
    assert rules["controller"][True] == EGRESS
    assert rules["worker"][True] == EGRESS
    assert rules["nlb"][False] == NLB_RULES
    # Only into the VPC, where targets and health checks are: AWS's allow-all rule is gone.
    assert rules["nlb"][True] == {("-1", -1, -1, "10.8.0.0/16")}


def test_firewall_rules_with_flannel(applied: dict[str, Path], client: Client) -> None:
    rules = rules_of(client, FLANNEL)
    assert rules["controller"][False] == CONTROLLER_RULES
    assert rules["worker"][False] == WORKER_RULES
    assert rules["controller"][True] == EGRESS
    assert rules["worker"][True] == EGRESS
    assert rules["nlb"][False] == NLB_RULES
    assert rules["nlb"][True] == {("-1", -1, -1, "10.0.0.0/16")}


# --- §2 load balancing ------------------------------------------------------------------


def test_nlb_is_dualstack_internet_facing_cross_zone(
    applied: dict[str, Path], client: Client
) -> None:
    lb = nlb_of(client, CILIUM)
    assert lb["Type"] == "network"
    assert lb["Scheme"] == "internet-facing"
    assert lb["IpAddressType"] == "dualstack"
    assert sorted(z["SubnetId"] for z in lb["AvailabilityZones"]) == sorted(
        s["SubnetId"] for s in subnets_of(client, CILIUM)
    )
    attrs = client("elbv2").describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])
    values = {a["Key"]: a["Value"] for a in attrs["Attributes"]}
    assert values["load_balancing.cross_zone.enabled"] == "true"


def test_nlb_carries_its_own_security_group(applied: dict[str, Path], client: Client) -> None:
    for name in applied:
        group = one(
            client("ec2").describe_security_groups(
                Filters=[*by_cluster(name), {"Name": "group-name", "Values": [f"{name}-nlb"]}]
            )["SecurityGroups"]
        )
        assert group["VpcId"] == vpc_of(client, name)["VpcId"]
        assert tags(group) == {"Name": f"{name}-nlb", "squall.dev/cluster": name}
        assert nlb_of(client, name)["SecurityGroups"] == [group["GroupId"]]


def test_listeners_forward_to_target_groups(applied: dict[str, Path], client: Client) -> None:
    elb = client("elbv2")
    lb = nlb_of(client, CILIUM)
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    got = {}
    for x in listeners:
        action = one(x["DefaultActions"])
        assert action["Type"] == "forward"
        tg = one(
            elb.describe_target_groups(TargetGroupArns=[action["TargetGroupArn"]])["TargetGroups"]
        )
        got[(x["Port"], x["Protocol"])] = tg["TargetGroupName"]
    assert got == {
        (6443, "TCP"): f"{CILIUM}-controllers",
        (80, "TCP"): f"{CILIUM}-workers-http",
        (443, "TCP"): f"{CILIUM}-workers-https",
    }


def test_target_group_health_checks(applied: dict[str, Path], client: Client) -> None:
    vpc = vpc_of(client, CILIUM)["VpcId"]
    controllers = tg_of(client, f"{CILIUM}-controllers")
    assert (controllers["Protocol"], controllers["Port"], controllers["TargetType"]) == (
        "TCP",
        6443,
        "instance",
    )
    assert controllers["VpcId"] == vpc
    assert controllers["HealthCheckProtocol"] == "HTTPS"
    assert controllers["HealthCheckPort"] == "6443"
    assert controllers["HealthCheckPath"] == "/readyz"
    assert controllers["HealthyThresholdCount"] == 3
    assert controllers["UnhealthyThresholdCount"] == 3
    assert controllers["HealthCheckIntervalSeconds"] == 10
    for suffix, port in (("http", 80), ("https", 443)):
        tg = tg_of(client, f"{CILIUM}-workers-{suffix}")
        assert (tg["Protocol"], tg["Port"], tg["TargetType"], tg["VpcId"]) == (
            "TCP",
            port,
            "instance",
            vpc,
        )
        assert tg["HealthCheckProtocol"] == "HTTP"
        assert tg["HealthCheckPort"] == "10254"
        assert tg["HealthCheckPath"] == "/healthz"
        assert (tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (3, 3)
        assert tg["HealthCheckIntervalSeconds"] == 10


# --- §4 instances -----------------------------------------------------------------------


def newest_image(client: Client, owner: str, filters: list[dict[str, Any]]) -> str:
    images = client("ec2").describe_images(Owners=[owner], Filters=filters)["Images"]
    assert len(images) >= 2, "the emulator seeds an older and a newer build"
    return str(max(images, key=lambda i: i["CreationDate"])["ImageId"])


def test_controllers(applied: dict[str, Path], rendered: dict[str, Path], client: Client) -> None:
    ec2 = client("ec2")
    instances = controllers_of(client, CILIUM)
    assert [tags(i)["Name"] for i in instances] == [f"{CILIUM}-controller-{i}" for i in range(3)]
    subnets = subnets_of(client, CILIUM)
    group = one(
        ec2.describe_security_groups(
            Filters=[
                *by_cluster(CILIUM),
                {"Name": "group-name", "Values": [f"{CILIUM}-controller"]},
            ]
        )["SecurityGroups"]
    )["GroupId"]
    fcos = newest_image(
        client,
        FCOS_OWNER,
        [
            {"Name": "description", "Values": ["Fedora CoreOS stable *"]},
            {"Name": "architecture", "Values": ["x86_64"]},
        ],
    )
    for i, inst in enumerate(instances):
        # Round-robin over the zones' subnets, so three controllers sit in three zones.
        assert inst["SubnetId"] == subnets[i % len(subnets)]["SubnetId"]
        assert inst["InstanceType"] == "t3.small"
        assert inst["ImageId"] == fcos
        assert [g["GroupId"] for n in inst["NetworkInterfaces"] for g in n["Groups"]] == [group]
        assert inst.get("PublicIpAddress")
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        root = one(
            ec2.describe_volumes(
                Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}]
            )["Volumes"]
        )
        assert (root["VolumeType"], root["Size"], root["Iops"], root["Encrypted"]) == (
            "gp3",
            30,
            3000,
            True,
        )
        user_data = ec2.describe_instance_attribute(
            InstanceId=inst["InstanceId"], Attribute="userData"
        )
        config = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert config == (rendered[CILIUM] / "ignition" / f"controller-{i}.ign").read_text()
        assert json.loads(config)["ignition"]["version"] == "3.3.0"
    assert len({i["Placement"]["AvailabilityZone"] for i in instances}) == 3
    tg = tg_of(client, f"{CILIUM}-controllers")
    health = client("elbv2").describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
    assert sorted(
        (d["Target"]["Id"], d["Target"]["Port"]) for d in health["TargetHealthDescriptions"]
    ) == sorted((i["InstanceId"], 6443) for i in instances)


def test_controller_disk_settings(applied: dict[str, Path], client: Client) -> None:
    inst = one(controllers_of(client, FLANNEL))
    root = one(
        client("ec2").describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}]
        )["Volumes"]
    )
    assert (root["VolumeType"], root["Size"], root["Iops"], root["Encrypted"]) == (
        "gp3",
        40,
        4000,
        True,
    )


def asg_of(client: Client, name: str) -> dict[str, Any]:
    return one(
        client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[f"{name}-worker"]
        )["AutoScalingGroups"]
    )


def template_data(client: Client, group: dict[str, Any]) -> dict[str, Any]:
    lt = group["LaunchTemplate"]
    got = client("ec2").describe_launch_template_versions(
        LaunchTemplateId=lt["LaunchTemplateId"], Versions=[lt["Version"]]
    )
    return dict(one(got["LaunchTemplateVersions"])["LaunchTemplateData"])


def test_worker_group(applied: dict[str, Path], client: Client) -> None:
    group = asg_of(client, CILIUM)
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (2, 2, 4)
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(
        s["SubnetId"] for s in subnets_of(client, CILIUM)
    )
    assert sorted(group["TargetGroupARNs"]) == sorted(
        [
            tg_of(client, f"{CILIUM}-workers-http")["TargetGroupArn"],
            tg_of(client, f"{CILIUM}-workers-https")["TargetGroupArn"],
        ]
    )
    assert group["HealthCheckGracePeriod"] == 30
    assert group["DefaultCooldown"] == 30
    assert len(group["Instances"]) == 2
    assert tags(group)["squall.dev/cluster"] == CILIUM


def test_worker_launch_template(
    applied: dict[str, Path], rendered: dict[str, Path], client: Client
) -> None:
    data = template_data(client, asg_of(client, CILIUM))
    worker_sg = one(
        client("ec2").describe_security_groups(
            Filters=[*by_cluster(CILIUM), {"Name": "group-name", "Values": [f"{CILIUM}-worker"]}]
        )["SecurityGroups"]
    )["GroupId"]
    assert data["InstanceType"] == "t3.small"
    assert data["ImageId"] == newest_image(
        client,
        FCOS_OWNER,
        [
            {"Name": "description", "Values": ["Fedora CoreOS stable *"]},
            {"Name": "architecture", "Values": ["x86_64"]},
        ],
    )
    disk = one(data["BlockDeviceMappings"])
    assert disk["DeviceName"] == "/dev/xvda"
    assert disk["Ebs"]["VolumeType"] == "gp3"
    assert disk["Ebs"]["Encrypted"] is True
    assert disk["Ebs"]["DeleteOnTermination"] is True
    nic = one(data["NetworkInterfaces"])
    assert nic["AssociatePublicIpAddress"] is True
    assert nic["Groups"] == [worker_sg]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"MaxPrice": "0.0213"},
    }
    assert data["CreditSpecification"] == {"CpuCredits": "unlimited"}
    user_data = base64.b64decode(data["UserData"]).decode()
    assert user_data == (rendered[CILIUM] / "ignition" / "worker.ign").read_text()


def test_flatcar_arm64_workers_without_public_ipv4(
    applied: dict[str, Path], client: Client
) -> None:
    data = template_data(client, asg_of(client, FLANNEL))
    assert data["ImageId"] == newest_image(
        client,
        FLATCAR_OWNER,
        [
            {"Name": "name", "Values": ["Flatcar-beta-*"]},
            {"Name": "architecture", "Values": ["arm64"]},
        ],
    )
    assert data["InstanceType"] == "t4g.small"
    assert one(data["NetworkInterfaces"])["AssociatePublicIpAddress"] is False
    assert "InstanceMarketOptions" not in data
    controller = one(controllers_of(client, FLANNEL))
    assert controller["ImageId"] == newest_image(
        client,
        FLATCAR_OWNER,
        [
            {"Name": "name", "Values": ["Flatcar-beta-*"]},
            {"Name": "architecture", "Values": ["x86_64"]},
        ],
    )


# --- §2 DNS -----------------------------------------------------------------------------


def test_dns_records(applied: dict[str, Path], client: Client) -> None:
    sets = client("route53").list_resource_record_sets(HostedZoneId=ZONE_ID)["ResourceRecordSets"]
    lb = nlb_of(client, CILIUM)
    api = [s for s in sets if s["Name"] == f"{CILIUM}.{ZONE}."]
    assert sorted(s["Type"] for s in api) == ["A", "AAAA"]
    for s in api:
        assert s["AliasTarget"]["DNSName"].rstrip(".") == lb["DNSName"]
        assert s["AliasTarget"]["HostedZoneId"] == lb["CanonicalHostedZoneId"]
        assert s["AliasTarget"]["EvaluateTargetHealth"] is True
    for i, inst in enumerate(controllers_of(client, CILIUM)):
        etcd = one([s for s in sets if s["Name"] == f"{CILIUM}-etcd{i}.{ZONE}."])
        assert etcd["Type"] == "A"
        assert etcd["TTL"] == 300
        assert etcd["ResourceRecords"] == [{"Value": inst["PrivateIpAddress"]}]


# --- §5 outputs, plans ------------------------------------------------------------------


def test_outputs_equal_what_aws_holds(
    applied: dict[str, Path], squall: Squall, client: Client
) -> None:
    out = squall.outputs_json(applied[CILIUM], "--show-sensitive")
    ec2 = client("ec2")
    lb = nlb_of(client, CILIUM)
    assert out["vpc_id"] == vpc_of(client, CILIUM)["VpcId"]
    assert out["subnet_ids"] == [s["SubnetId"] for s in subnets_of(client, CILIUM)]
    assert out["ingress_dns_name"] == lb["DNSName"]
    assert out["ingress_zone_id"] == lb["CanonicalHostedZoneId"]
    assert out["nlb_id"] == lb["LoadBalancerArn"]
    assert (
        out["worker_target_group_http"] == tg_of(client, f"{CILIUM}-workers-http")["TargetGroupArn"]
    )
    assert (
        out["worker_target_group_https"]
        == tg_of(client, f"{CILIUM}-workers-https")["TargetGroupArn"]
    )
    worker_sg = ec2.describe_security_groups(
        Filters=[*by_cluster(CILIUM), {"Name": "group-name", "Values": [f"{CILIUM}-worker"]}]
    )["SecurityGroups"]
    assert out["worker_security_groups"] == [worker_sg[0]["GroupId"]]
    table = one(ec2.describe_route_tables(Filters=by_cluster(CILIUM))["RouteTables"])
    assert out["route_table_id"] == table["RouteTableId"]
    assert out["nlb_security_group"] == one(lb["SecurityGroups"])
    assert "BEGIN PUBLIC KEY" in out["service_account_public_key"]
    assert f"https://{CILIUM}.{ZONE}:6443" in out["kubeconfig"]
    assert f"https://{CILIUM}.{ZONE}:6443" in out["kubeconfig-admin"]
    # Without --show-sensitive the credentials stay out of the output.
    hidden = squall.outputs_json(applied[CILIUM])
    assert hidden["kubeconfig"] is None and hidden["kubeconfig-admin"] is None
    assert hidden["vpc_id"] == out["vpc_id"]


def test_second_plan_is_empty(applied: dict[str, Path], squall: Squall) -> None:
    for config in applied.values():
        plan = squall.plan_json(config)
        assert plan["changes"] == []
        text = squall("plan", str(config)).stdout
        assert "No changes" in text


def test_plans_show_secrets_only_as_digests(squall: Squall, tmp_path: Path) -> None:
    # A fresh cluster's plan carries every node config as user data.
    config = cluster_file(tmp_path, "arch-secret")
    plan = squall("plan", str(config), "--json").stdout
    text = squall("plan", str(config)).stdout
    out = tmp_path / "render"
    squall("render", str(config), "--out", str(out))
    token = yaml.safe_load((out / "manifests" / "bootstrap" / "token.yaml").read_text())
    secret = token["stringData"]["token-secret"]
    assert len(secret) == 16
    configs = [(out / "ignition" / n).read_text() for n in ("controller-0.ign", "worker.ign")]
    for shown in (plan, text):
        assert secret not in shown
        for node_config in configs:
            # Not the node config, nor any telling piece of it (it may be compressed).
            middle = len(node_config) // 2
            assert node_config[middle : middle + 48] not in shown
    users = [c for c in json.loads(plan)["changes"] if "user_data" in c["fields"]]
    assert len(users) == 2
    assert all(c["fields"]["user_data"]["after"].startswith("sha256:") for c in users)
