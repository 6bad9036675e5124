"""AWS's default quota of rules per security group: squall warns before apply fails on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squall import spec as spec_mod
from squall.aws import security

from .helpers import SSH_KEY, ZONE, ZONE_ID, Squall, cluster_file


def services(n: int) -> list[dict[str, Any]]:
    return [{"name": f"s{i}", "port": 2000 + i, "node_port": 30000 + i} for i in range(n)]


def parsed(n: int) -> spec_mod.Spec:
    return spec_mod.parse(
        {
            "cluster_name": "quota",
            "dns_zone": ZONE,
            "dns_zone_id": ZONE_ID,
            "ssh_authorized_key": SSH_KEY,
            "services": services(n),
        }
    )


def test_quota_counts_ipv4_and_ipv6_apart() -> None:
    few = parsed(4)
    assert security.quota_warnings(few, security.security(few)) == []
    many = parsed(30)
    warnings = security.quota_warnings(many, security.security(many))
    assert warnings and all("quota-worker" in w and "inbound" in w for w in warnings)
    # Each service opens its node port to 0.0.0.0/0, to ::/0 and to the NLB's group, which
    # counts in both families: both run out, IPv4 (SSH and ingress rules) further.
    counts = {w.split(" IPv")[1][0]: int(w.split(" needs ")[1].split()[0]) for w in warnings}
    assert set(counts) == {"4", "6"} and counts["4"] > counts["6"]


def test_plan_shows_the_warning(squall: Squall, tmp_path: Path) -> None:
    config = cluster_file(tmp_path, "quota", services=services(30))
    result = squall("plan", str(config))
    assert "warning: security group quota-worker needs" in result.stderr


def test_a_rule_from_a_users_security_group(squall: Squall, tmp_path: Path) -> None:
    rule = {"group": "worker", "protocol": "tcp", "from_port": 9000, "to_port": 9000}
    data = {
        "cluster_name": "sgsrc",
        "dns_zone": ZONE,
        "dns_zone_id": ZONE_ID,
        "ssh_authorized_key": SSH_KEY,
        "firewall_rules": [{**rule, "source_group": "sg-0123456789abcdef0"}],
    }
    parsed = spec_mod.parse(data)
    wanted = security.security(parsed)
    (made,) = [r for r in wanted if r.props.get("from_port") == 9000]
    assert made.props["source_group"] == "sg-0123456789abcdef0"
    assert "cidr" not in made.props
    assert security.quota_warnings(parsed, wanted) == []
    config = cluster_file(tmp_path, "sgsrc", firewall_rules=data["firewall_rules"])
    result = squall("plan", str(config), "--json", check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
