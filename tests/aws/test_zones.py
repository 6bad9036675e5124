"""The zones a cluster spans are fixed at its first apply, so a zone that comes or goes in
AWS's list never re-numbers subnets or moves controllers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .helpers import Squall, by_cluster, cluster_file


def subnet_zones(client: Callable[[str], Any], name: str) -> dict[str, str]:
    subnets = client("ec2").describe_subnets(Filters=by_cluster(name))["Subnets"]
    return {
        next(t["Value"] for t in s["Tags"] if t["Key"] == "Name"): s["AvailabilityZone"]
        for s in subnets
    }


def test_first_apply_pins_the_zones(
    squall: Squall, client: Callable[[str], Any], tmp_path: Path
) -> None:
    config = cluster_file(tmp_path, "zpin")
    squall("apply", str(config), "--yes", "--no-bootstrap")
    available = [
        z["ZoneName"]
        for z in client("ec2").describe_availability_zones()["AvailabilityZones"]
        if z["State"] == "available"
    ]
    pinned = json.loads((tmp_path / ".squall" / "zpin" / "aws" / "zones.json").read_text())
    assert sorted(pinned) == sorted(available)
    assert subnet_zones(client, "zpin") == {f"zpin-public-{i}": z for i, z in enumerate(pinned)}
    squall("destroy", str(config), "--yes")


def test_pinned_zones_win_over_what_aws_lists(
    squall: Squall, client: Callable[[str], Any], tmp_path: Path
) -> None:
    zones = [
        z["ZoneName"] for z in client("ec2").describe_availability_zones()["AvailabilityZones"]
    ]
    # As if the cluster had been made when AWS listed only three zones, in this order.
    pinned = [zones[2], zones[0], zones[1]]
    state = tmp_path / ".squall" / "zfix" / "aws"
    state.mkdir(parents=True)
    (state / "zones.json").write_text(json.dumps(pinned))
    config = cluster_file(tmp_path, "zfix", controller_count=3)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    assert subnet_zones(client, "zfix") == {f"zfix-public-{i}": z for i, z in enumerate(pinned)}
    controllers = client("ec2").describe_instances(
        Filters=[*by_cluster("zfix"), {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"]
    placed = sorted(
        (
            next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"),
            i["Placement"]["AvailabilityZone"],
        )
        for r in controllers
        for i in r["Instances"]
        if any(t["Key"] == "Name" and "-controller-" in t["Value"] for t in i["Tags"])
    )
    assert placed == [(f"zfix-controller-{i}", pinned[i]) for i in range(3)]
    assert squall.plan_json(config)["changes"] == []
    squall("destroy", str(config), "--yes")
