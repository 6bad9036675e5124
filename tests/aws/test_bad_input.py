"""A catalogue of broken cluster files: each is refused by one clear line naming the key, a
non-zero exit and no traceback, before anything exists in AWS or in the state directory."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import SSH_KEY, ZONE, ZONE_ID, Squall

GOOD = f'''cluster_name = "NAME"
region = "us-east-1"
dns_zone = "{ZONE}"
dns_zone_id = "{ZONE_ID}"
ssh_authorized_key = "{SSH_KEY}"
'''
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/0123456789abcdef"
SVC = '[[services]]\nname = "app"\nport = 3333\nnode_port = 30333\n'

# (id, text appended to or replacing parts of a good file, fragments the error line contains).
# "@DROP key" removes a line of the good file first.
CASES: list[tuple[str, str, list[str]]] = [
    ("typo", "worker_cont = 2", ["worker_cont", "did you mean 'worker_count'"]),
    ("unknown", "colour = 'blue'", ["colour", "unknown key"]),
    ("missing-zone", "@DROP dns_zone =", ["dns_zone", "required"]),
    ("missing-key", "@DROP ssh_authorized_key", ["ssh_authorized_key", "required"]),
    ("bad-name", "@DROP cluster_name\ncluster_name = 'My_Cluster'", ["cluster_name"]),
    (
        "long-name",
        "@DROP cluster_name\ncluster_name = 'abcdefghijklmnopqrs'",
        ["cluster_name", "18"],
    ),
    ("bad-zone", "@DROP dns_zone =\ndns_zone = 'example'", ["dns_zone", "domain"]),
    ("bad-zone-id", "@DROP dns_zone_id\ndns_zone_id = 'zone-1'", ["dns_zone_id"]),
    (
        "bad-ssh",
        "@DROP ssh_authorized_key\nssh_authorized_key = 'ssh-rsa AAAA'",
        ["ssh_authorized_key"],
    ),
    ("bad-region", "@DROP region\nregion = 'mars-1'", ["region", "not an AWS region"]),
    ("controllers-0", "controller_count = 0", ["controller_count"]),
    ("workers-negative", "worker_count = -3", ["worker_count"]),
    ("workers-string", "worker_count = 'two'", ["worker_count", "whole number"]),
    ("bad-os", "os = 'ubuntu'", ["os", "'flatcar'"]),
    ("bad-stream", "os_stream = 'lts'", ["os_stream"]),
    ("bad-networking", "networking = 'calico'", ["networking", "'cilium'"]),
    ("bad-arch", "controller_arch = 'x86'", ["controller_arch", "'arm64'"]),
    ("bad-price", "worker_price = -1.0", ["worker_price"]),
    ("bad-cidr", "host_cidr = '10.0.0.0/8/2'", ["host_cidr", "CIDR"]),
    ("overlap", "pod_cidr = '10.0.0.0/14'", ["overlaps"]),
    ("bad-tg", "worker_target_groups = ['app']", ["worker_target_groups", "ARN"]),
    ("bad-label", "worker_node_labels = ['=x']", ["worker_node_labels"]),
    ("bad-taint", "worker_node_taints = ['dedicated']", ["worker_node_taints"]),
    ("bad-components", "[components]\nistio = true", ["components.istio"]),
    ("svc-port-taken", SVC.replace("3333", "443"), ["services[0].port", "443"]),
    ("svc-node-port", SVC.replace("30333", "80"), ["services[0].node_port", "30000-32767"]),
    ("svc-protocol", SVC + "protocol = 'sctp'", ["services[0].protocol"]),
    ("svc-dup", SVC + SVC.replace("30333", "30334"), ["services[1]"]),
    ("svc-allow", SVC + "allow = ['the internet']", ["services[0].allow"]),
    (
        "rule-ports",
        "[[firewall_rules]]\ngroup = 'worker'\nprotocol = 'tcp'\nfrom_port = 9\n"
        "to_port = 1\ncidrs = ['10.1.0.0/16']",
        ["firewall_rules[0]", "swap"],
    ),
    (
        "rule-group",
        "[[firewall_rules]]\ngroup = 'db'\nprotocol = 'all'\ncidrs = ['10.1.0.0/16']",
        ["firewall_rules[0].group"],
    ),
    (
        "route-two-targets",
        "[[routes]]\ndestination = '192.168.0.0/24'\ngateway_id = 'igw-1'\n"
        "nat_gateway_id = 'nat-1'",
        ["routes[0]", "exactly one target"],
    ),
    ("route-no-target", "[[routes]]\ndestination = '192.168.0.0/24'", ["routes[0]"]),
    (
        "pool-dup",
        "[[worker_pools]]\nname = 'a'\n[[worker_pools]]\nname = 'a'",
        ["worker_pools[1].name"],
    ),
    ("pool-arch", "[[worker_pools]]\nname = 'a'\narch = 'sparc'", ["worker_pools[0].arch"]),
    ("toml-syntax", "worker_count = = 3", ["TOML syntax error", "line 6"]),
    ("toml-unclosed", "worker_snippets = ['''", ["TOML syntax error"]),
    ("toml-duplicate", "worker_count = 1\nworker_count = 2", ["TOML syntax error"]),
]


def build(text: str, name: str) -> str:
    lines = GOOD.replace("NAME", name).splitlines()
    extra = []
    for line in text.splitlines():
        if line.startswith("@DROP "):
            prefix = line.removeprefix("@DROP ")
            lines = [x for x in lines if not x.startswith(prefix)]
        else:
            extra.append(line)
    # Top-level keys must come before any table, so extras go last and tables stay tables.
    return "\n".join([*lines, *extra]) + "\n"


def owned(client: Callable[[str], Any], name: str) -> list[str]:
    tags = client("ec2").describe_tags(
        Filters=[
            {"Name": "key", "Values": ["squall.dev/cluster"]},
            {"Name": "value", "Values": [name]},
        ]
    )["Tags"]
    lbs = [
        lb["LoadBalancerName"]
        for lb in client("elbv2").describe_load_balancers()["LoadBalancers"]
        if lb["LoadBalancerName"].startswith(f"{name}-")
    ]
    return [t["ResourceId"] for t in tags] + lbs


def test_the_catalogue_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_file_is_refused_cleanly(
    squall: Squall,
    client: Callable[[str], Any],
    tmp_path: Path,
    text: str,
    fragments: list[str],
) -> None:
    name = "bad" + str(abs(hash(text)) % 10**8)
    config = tmp_path / "cluster.toml"
    config.write_text(build(text, name))
    result = squall("apply", str(config), "--yes", check=False)
    assert_one_line(result, fragments)
    assert owned(client, name) == []
    assert not (tmp_path / ".squall").exists()


def assert_one_line(result: subprocess.CompletedProcess[str], fragments: list[str]) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_every_command_refuses_a_broken_file(squall: Squall, tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(build("worker_cont = 2", "badcmds"))
    for command in (
        ["plan", "--json"],
        ["destroy", "--yes"],
        ["outputs", "--json"],
        ["kubeconfig"],
        ["render", "--out", str(tmp_path / "out")],
    ):
        result = squall(command[0], str(config), *command[1:], check=False)
        assert_one_line(result, ["worker_cont", "did you mean 'worker_count'"])
    assert not (tmp_path / ".squall").exists()
    assert not (tmp_path / "out").exists()


def test_missing_file(squall: Squall, tmp_path: Path) -> None:
    result = squall("apply", str(tmp_path / "nope.toml"), "--yes", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope.toml'}: no such file; create one with 'squall init'"
    ]
