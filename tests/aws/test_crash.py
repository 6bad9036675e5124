"""squall killed with SIGKILL halfway through an apply or a destroy, at chosen calls: while
parallel creates are in flight, and at several points of a destroy. A plain re-run must
converge to exactly what an uninterrupted run makes (nothing twice), and destroy must leave
nothing of the cluster behind."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from squall import emulator

from .helpers import ZONE, ZONE_ID, Squall, clean_env, cluster_file
from .holdproxy import HoldProxy

Client = Callable[[str], Any]
SHAPE = {"controller_count": 2, "worker_count": 2}


def _inventory_module() -> ModuleType:
    # Shared with the fault tests, which live in a sibling test package.
    path = Path(__file__).resolve().parent.parent / "faults" / "inventory.py"
    spec = importlib.util.spec_from_file_location("squall_tests_inventory", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inv = _inventory_module()


def owned(client: Client, name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = inv.inventory(client, name, ZONE_ID, ZONE)
    return found


def counts(client: Client, name: str) -> dict[str, int]:
    found = owned(client, name)
    assert inv.duplicates(found) == {}, inv.duplicates(found)
    result: dict[str, int] = inv.counts(found)
    return result


_reference: dict[str, dict[str, int]] = {}


def reference(squall: Squall, client: Client, tmp_path: Path) -> dict[str, int]:
    """What an uninterrupted apply of the same shape owns."""
    if "counts" not in _reference:
        config = cluster_file(tmp_path, "crashref", **SHAPE)
        squall("apply", str(config), "--yes", "--no-bootstrap")
        _reference["counts"] = counts(client, "crashref")
    return _reference["counts"]


def killed(aws: emulator.EmulatedAws, args: list[str], action: str, linger: float) -> list[str]:
    """Run squall until the first ``action`` call has reached AWS, wait ``linger`` seconds
    for the calls running beside it, then SIGKILL it. Returns the calls AWS saw."""
    with HoldProxy(aws.endpoint, hold=action) as proxy:
        env = clean_env({**aws.env(), "AWS_ENDPOINT_URL": proxy.url})
        proc = subprocess.Popen(
            [sys.executable, "-m", "squall", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proxy.held.wait(120), f"{action} never came: {proxy.actions[-5:]}"
            time.sleep(linger)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        return list(proxy.actions)


def zero(want: dict[str, int]) -> dict[str, int]:
    return {k: 0 for k in want}


@pytest.mark.parametrize(
    "action",
    [
        "AttachInternetGateway",
        "AuthorizeSecurityGroupIngress",
        "CreateTargetGroup",
        "CreateLaunchTemplate",
    ],
)
def test_apply_killed_amid_parallel_creates_converges(
    aws: emulator.EmulatedAws, squall: Squall, client: Client, tmp_path: Path, action: str
) -> None:
    want = reference(squall, client, tmp_path)
    name = f"ck-{action.lower()[:14]}"
    config = cluster_file(tmp_path, name, **SHAPE)
    calls = killed(aws, ["apply", str(config), "--yes", "--no-bootstrap"], action, linger=0.2)
    # Killed while other creates ran beside the held one.
    held_at = calls.index(action)
    assert any(c.startswith(("Create", "Authorize", "RunInstances")) for c in calls[held_at + 1 :])
    partial = counts(client, name)
    assert partial != want and partial["vpc"] == 1

    squall("apply", str(config), "--yes", "--no-bootstrap")
    assert counts(client, name) == want
    assert squall.plan_json(config)["changes"] == []

    squall("destroy", str(config), "--yes")
    assert counts(client, name) == zero(want)


@pytest.mark.parametrize(
    "action",
    [
        "DeleteAutoScalingGroup",
        "TerminateInstances",
        "DeleteLoadBalancer",
        "DeleteSecurityGroup",
        "DeleteSubnet",
    ],
)
def test_destroy_killed_converges(
    aws: emulator.EmulatedAws, squall: Squall, client: Client, tmp_path: Path, action: str
) -> None:
    want = reference(squall, client, tmp_path)
    name = f"cd-{action.lower()[:14]}"
    config = cluster_file(tmp_path, name, **SHAPE)
    squall("apply", str(config), "--yes", "--no-bootstrap")
    assert counts(client, name) == want

    killed(aws, ["destroy", str(config), "--yes"], action, linger=0.0)
    partial = counts(client, name)
    assert partial != want and partial != zero(want)

    # Changing one's mind after a killed destroy: apply brings back exactly the cluster…
    squall("apply", str(config), "--yes", "--no-bootstrap")
    assert counts(client, name) == want
    assert squall.plan_json(config)["changes"] == []
    # …and a killed destroy re-run finishes the job.
    killed(aws, ["destroy", str(config), "--yes"], action, linger=0.0)
    squall("destroy", str(config), "--yes")
    assert counts(client, name) == zero(want)
    assert "Nothing to destroy" in squall("destroy", str(config), "--yes").stdout
