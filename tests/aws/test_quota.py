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
