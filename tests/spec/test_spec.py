"""The cluster file: defaults, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from squall import spec

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/0123456789abcdef"
SVC = {"name": "some-app", "port": 3333, "node_port": 30333}
RULE = {
    "group": "worker",
    "protocol": "tcp",
    "from_port": 3333,
    "to_port": 3333,
    "cidrs": ["10.9.0.0/16"],
}
ROUTE = {"destination": "192.168.4.0/24", "vpc_peering_connection_id": "pcx-0123456789abcdef0"}


def test_defaults_follow_typhoon(cluster_data: Any) -> None:
    s = spec.parse(cluster_data())
    assert (s.controller_count, s.worker_count) == (1, 1)
    assert (s.controller_type, s.worker_type) == ("t3.small", "t3.small")
    assert (s.worker_disk_size, s.worker_disk_type, s.worker_disk_iops) == (30, "gp3", 3000)
    assert (s.host_cidr, s.pod_cidr, s.service_cidr) == (
        "10.0.0.0/16",
        "10.20.0.0/14",
        "10.3.0.0/16",
    )
    assert s.networking == "cilium" and s.os == "fedora-coreos" and s.os_stream == "stable"
    assert s.worker_price == 0 and s.worker_public_ipv4 is True and s.worker_target_groups == []
    assert s.ingress_controller == "nginx"
    assert s.service_account_issuer == "https://kubernetes.default.svc.cluster.local"
    assert s.api_url == "https://tempest.aws.example.com:6443"
    assert s.service_ip(1) == "10.3.0.1" and s.cluster_dns_ip == "10.3.0.10"


def test_extensions_parse(cluster_data: Any) -> None:
    s = spec.parse(
        cluster_data(
            services=[
                SVC,
                {
                    "name": "dns",
                    "protocol": "udp",
                    "port": 53,
                    "node_port": 30053,
                    "health_check_port": 30054,
                },
            ],
            firewall_rules=[
                RULE,
                {"group": "controller", "protocol": "icmp", "source_group": "worker"},
            ],
            routes=[ROUTE, {"destination": "2600:1f18::/40", "transit_gateway_id": "tgw-0abc"}],
            worker_pools=[
                {"name": "arm", "count": 2, "arch": "arm64", "node_labels": ["pool=arm"]}
            ],
            worker_target_groups=[ARN],
        )
    )
    assert s.services[0].allow == ["0.0.0.0/0", "::/0"]
    assert s.routes[0].target == ("vpc_peering_connection_id", "pcx-0123456789abcdef0")
    assert s.routes[1].destination == "2600:1f18::/40"
    assert s.worker_pools[0].ingress is False


# Each row: overrides to the minimal file, then fragments the one-line error must contain
# (the key it names, and the fix it suggests).
BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown key suggests", {"worker_cont": 2}, ["worker_cont", "did you mean 'worker_count'"]),
    ("unknown key no match", {"zzz": 1}, ["zzz", "unknown key"]),
    (
        "unknown key in table",
        {"services": [{**SVC, "protocl": "tcp"}]},
        ["services[0].protocl", "protocol"],
    ),
    ("missing required", {"dns_zone": None}, ["dns_zone", "required"]),
    ("name uppercase", {"cluster_name": "Tempest"}, ["cluster_name", "lowercase"]),
    ("name underscore", {"cluster_name": "my_cluster"}, ["cluster_name", "DNS label"]),
    (
        "name too long",
        {"cluster_name": "abcdefghijklmnopqrs"},
        ["cluster_name", "19 characters", "18"],
    ),
    ("zone not a domain", {"dns_zone": "not a domain"}, ["dns_zone", "domain"]),
    ("zone id", {"dns_zone_id": "hostedzone"}, ["dns_zone_id", "hosted zone id"]),
    (
        "ssh key garbage",
        {"ssh_authorized_key": "ssh-rsa nope"},
        ["ssh_authorized_key", "OpenSSH public key"],
    ),
    (
        "ssh private key",
        {"ssh_authorized_key": "-----BEGIN OPENSSH PRIVATE KEY-----"},
        ["ssh_authorized_key"],
    ),
    (
        "controller count 0",
        {"controller_count": 0},
        ["controller_count", "greater than or equal to 1"],
    ),
    ("worker count negative", {"worker_count": -1}, ["worker_count", "greater than or equal to 0"]),
    ("count as string", {"worker_count": "2"}, ["worker_count", "whole number"]),
    ("bad cidr", {"host_cidr": "10.0.0.0/33"}, ["host_cidr", "CIDR"]),
    ("cidr host bits", {"pod_cidr": "10.20.0.1/14"}, ["pod_cidr", "CIDR"]),
    ("ipv6 host cidr", {"host_cidr": "fd00::/48"}, ["host_cidr", "IPv4"]),
    ("pod overlaps host", {"pod_cidr": "10.0.128.0/17"}, ["pod_cidr", "overlaps host_cidr"]),
    (
        "service overlaps pod",
        {"service_cidr": "10.21.0.0/16"},
        ["service_cidr", "overlaps pod_cidr"],
    ),
    ("pod range too small", {"pod_cidr": "10.20.0.0/22"}, ["pod_cidr", "/20 or larger"]),
    ("host too small", {"host_cidr": "10.0.0.0/26"}, ["host_cidr", "/24 or larger"]),
    ("os enum", {"os": "ubuntu"}, ["os", "'fedora-coreos'", "'flatcar'"]),
    ("os_stream enum", {"os_stream": "beta"}, ["os_stream", "'stable'"]),
    ("os_image enum", {"os_image": "stable"}, ["os_image", "'flatcar-stable'"]),
    ("networking enum", {"networking": "calico"}, ["networking", "'cilium'"]),
    ("arch enum", {"worker_arch": "x86_64"}, ["worker_arch", "'amd64'"]),
    ("ingress enum", {"ingress_controller": "traefik"}, ["ingress_controller", "'nginx'"]),
    ("negative price", {"worker_price": -0.1}, ["worker_price", "greater than or equal to 0"]),
    ("unknown region", {"region": "us-east-7"}, ["region", "not an AWS region", "did you mean"]),
    (
        "bad tg arn",
        {"worker_target_groups": ["arn:aws:ec2:x"]},
        ["worker_target_groups", "target group ARN"],
    ),
    ("dup tg arn", {"worker_target_groups": [ARN, ARN]}, ["worker_target_groups", "twice"]),
    ("label", {"worker_node_labels": ["novalue"]}, ["worker_node_labels", "key=value"]),
    (
        "label kubelet may not set",
        {"worker_node_labels": ["node-role.kubernetes.io/worker="]},
        ["worker_node_labels", "may not set", "node.kubernetes.io/"],
    ),
    (
        "pool label kubelet may not set",
        {"worker_pools": [{"name": "a", "node_labels": ["k8s.io/x=y"]}]},
        ["worker_pools[0].node_labels", "may not set"],
    ),
    (
        "udp without health port",
        {"services": [{**SVC, "protocol": "udp"}]},
        ["services[0]", "health_check_port"],
    ),
    ("root disk type", {"worker_disk_type": "st1"}, ["worker_disk_type", "'gp3'"]),
    (
        "toleration key",
        {"daemonset_tolerations": ["not a key!"]},
        ["daemonset_tolerations", "taint key"],
    ),
    ("taint", {"worker_node_taints": ["a=b:Never"]}, ["worker_node_taints", "Effect"]),
    ("empty snippet", {"worker_snippets": ["  "]}, ["worker_snippets", "empty"]),
    (
        "svc port 0",
        {"services": [{**SVC, "port": 0}]},
        ["services[0].port", "greater than or equal to 1"],
    ),
    ("svc port high", {"services": [{**SVC, "port": 70000}]}, ["services[0].port", "65535"]),
    (
        "svc port 6443",
        {"services": [{**SVC, "port": 6443}]},
        ["services[0].port", "kube-apiserver"],
    ),
    (
        "svc port 443",
        {"services": [{**SVC, "port": 443}]},
        ["services[0].port", "choose another port"],
    ),
    (
        "svc node port",
        {"services": [{**SVC, "node_port": 8080}]},
        ["services[0].node_port", "30000-32767"],
    ),
    (
        "svc protocol",
        {"services": [{**SVC, "protocol": "tls"}]},
        ["services[0].protocol", "'tcp_udp'"],
    ),
    (
        "svc bad allow",
        {"services": [{**SVC, "allow": ["everyone"]}]},
        ["services[0].allow", "CIDR"],
    ),
    ("svc empty allow", {"services": [{**SVC, "allow": []}]}, ["services[0].allow", "empty"]),
    (
        "svc path",
        {"services": [{**SVC, "health_check_path": "healthz"}]},
        ["health_check_path", "absolute"],
    ),
    (
        "svc dup name",
        {"services": [SVC, {**SVC, "port": 4444, "node_port": 30444}]},
        ["services[1].name", "already used"],
    ),
    (
        "svc dup port",
        {"services": [SVC, {**SVC, "name": "other", "node_port": 30444}]},
        ["services[1].port", "3333/tcp"],
    ),
    (
        "svc dup port tcp_udp",
        {"services": [SVC, {"name": "u", "protocol": "tcp_udp", "port": 3333, "node_port": 30444}]},
        ["services[1].port"],
    ),
    (
        "svc dup node port",
        {"services": [SVC, {**SVC, "name": "other", "port": 4444}]},
        ["services[1].node_port", "already used"],
    ),
    (
        "svc long name",
        {"services": [{**SVC, "name": "a-very-long-service-name-x"}]},
        ["services[0].name", "32"],
    ),
    (
        "too many services",
        {
            "services": [
                {"name": f"s{i}", "port": 1000 + i, "node_port": 30000 + i} for i in range(48)
            ]
        },
        ["services:", "at most 47"],
    ),
    ("rule group", {"firewall_rules": [{**RULE, "group": "nlb"}]}, ["firewall_rules[0].group"]),
    (
        "rule protocol",
        {"firewall_rules": [{**RULE, "protocol": "gre"}]},
        ["firewall_rules[0].protocol"],
    ),
    (
        "rule from>to",
        {"firewall_rules": [{**RULE, "from_port": 4000, "to_port": 3000}]},
        ["firewall_rules[0]", "swap"],
    ),
    (
        "rule no source",
        {"firewall_rules": [{**RULE, "cidrs": []}]},
        ["firewall_rules[0]", "exactly one"],
    ),
    (
        "rule two sources",
        {"firewall_rules": [{**RULE, "source_group": "worker"}]},
        ["firewall_rules[0]", "exactly one"],
    ),
    (
        "rule bad sg",
        {"firewall_rules": [{**RULE, "cidrs": [], "source_group": "web"}]},
        ["source_group"],
    ),
    (
        "rule bad cidr",
        {"firewall_rules": [{**RULE, "cidrs": ["1.2.3.4/40"]}]},
        ["firewall_rules[0].cidrs"],
    ),
    (
        "route no target",
        {"routes": [{"destination": "192.168.4.0/24"}]},
        ["routes[0]", "exactly one target"],
    ),
    (
        "route two targets",
        {"routes": [{**ROUTE, "gateway_id": "igw-0abc"}]},
        ["routes[0]", "not 2"],
    ),
    (
        "route bad dest",
        {"routes": [{**ROUTE, "destination": "192.168.4/24"}]},
        ["routes[0].destination"],
    ),
    (
        "route wrong prefix",
        {"routes": [{"destination": "192.168.4.0/24", "nat_gateway_id": "igw-1"}]},
        ["routes[0]", "nat-"],
    ),
    ("route dup", {"routes": [ROUTE, ROUTE]}, ["routes[1].destination", "already used"]),
    ("pool name", {"worker_pools": [{"name": "GPU"}]}, ["worker_pools[0].name", "DNS label"]),
    (
        "pool dup",
        {"worker_pools": [{"name": "a"}, {"name": "a"}]},
        ["worker_pools[1].name", "unique"],
    ),
    ("pool count", {"worker_pools": [{"name": "a", "count": -2}]}, ["worker_pools[0].count"]),
    (
        "pool taint",
        {"worker_pools": [{"name": "a", "node_taints": ["x"]}]},
        ["worker_pools[0].node_taints"],
    ),
    ("ssh cidr", {"ssh_cidrs": ["203.0.113.0/33"]}, ["ssh_cidrs", "not a network CIDR"]),
    ("ssh cidr host bits", {"ssh_cidrs": ["10.0.0.1/8"]}, ["ssh_cidrs", "host bits"]),
    ("ssh empty", {"ssh_cidrs": []}, ["ssh_cidrs", "empty", "bootstrap"]),
    ("api cidr", {"apiserver_cidrs": ["2001:db8::/129"]}, ["apiserver_cidrs", "CIDR"]),
    ("api empty", {"apiserver_cidrs": []}, ["apiserver_cidrs", "empty"]),
    (
        "svc tcp and udp on one port",
        {
            "services": [
                SVC,
                {**SVC, "name": "u", "protocol": "udp", "node_port": 30444, "health_check_port": 1},
            ]
        },
        ["services[1].port", "tcp_udp"],
    ),
    (
        "pool named worker",
        {"worker_pools": [{"name": "worker"}]},
        ["worker_pools[0].name", "tempest-worker"],
    ),
    (
        "route default",
        {"routes": [{**ROUTE, "destination": "::/0"}]},
        ["routes[0].destination", "default route"],
    ),
    ("components key", {"components": {"calico": False}}, ["components.calico", "unknown key"]),
    ("components type", {"components": {"coredns": "no"}}, ["components.coredns", "true or false"]),
]


@pytest.mark.parametrize(("overrides", "fragments"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_mistakes_get_one_clear_line(
    cluster_data: Any, overrides: dict[str, Any], fragments: list[str]
) -> None:
    data = cluster_data(**overrides)
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(spec.SpecError) as info:
        spec.parse(data)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('cluster_name = "a"\nworker_count = = 2\n')
    with pytest.raises(spec.SpecError, match=r"TOML syntax error.*line 2"):
        spec.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(spec.SpecError, match="no such file; create one with 'squall init'"):
        spec.load(tmp_path / "nope.toml")


def test_labels_the_kubelet_may_set(cluster_data: Any) -> None:
    ok = [
        "node.kubernetes.io/pool=a",
        "x.node.kubernetes.io/y=1",
        "topology.kubernetes.io/zone=z",
        "example.com/team=blue",
        "plain=yes",
    ]
    assert spec.parse(cluster_data(worker_node_labels=ok)).worker_node_labels == ok


def test_udp_health_port(cluster_data: Any) -> None:
    udp = {**SVC, "protocol": "udp", "health_check_port": 30080}
    s = spec.parse(
        cluster_data(services=[udp, {**SVC, "name": "t", "port": 4000, "node_port": 30400}])
    )
    assert [x.health_port for x in s.services] == [30080, 30400]


def test_even_controller_count_warns(cluster_data: Any) -> None:
    assert spec.warnings(spec.parse(cluster_data(controller_count=3))) == []
    (warning,) = spec.warnings(spec.parse(cluster_data(controller_count=2)))
    assert warning.startswith("controller_count: 2 is even")


def test_zone_trailing_dot_and_zone_id_prefix(cluster_data: Any) -> None:
    s = spec.parse(
        cluster_data(dns_zone="aws.example.com.", dns_zone_id="/hostedzone/Z3PAABBCFAKEC0")
    )
    assert (s.dns_zone, s.dns_zone_id) == ("aws.example.com", "Z3PAABBCFAKEC0")


def test_etcd_names(cluster_data: Any) -> None:
    s = spec.parse(cluster_data(controller_count=3))
    assert s.etcd_fqdns == [f"tempest-etcd{i}.aws.example.com" for i in range(3)]
