"""apply, a second apply and destroy through the real CLI while AWS misbehaves.

Between squall and the emulated AWS sits the fault proxy: throttling, 500s, dropped
connections, responses lost after the call took effect, and NotFound for ids created moments
ago. Every command must still succeed, the cluster must hold exactly what a fault-free apply of
the same shape makes (nothing twice), and destroy must leave nothing. Faults are seeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from squall import emulator

from .inventory import counts, duplicates, inventory
from .proxy import FAULTS, FaultPolicy, FaultProxy, makes_something

ZONE = "aws.example.com"
ZONE_ID = "Z3PAABBCFAKEC0"
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY demo@squall"
)
RATE = 0.15
# On top of RATE: a lost response to a create is the fault most likely to duplicate.
LOST_CREATES = 0.3


@pytest.fixture(scope="module")
def aws() -> Iterator[emulator.EmulatedAws]:
    with emulator.start({ZONE: ZONE_ID}) as emulated:
        yield emulated


@pytest.fixture(scope="module")
def client(aws: emulator.EmulatedAws) -> Callable[[str], Any]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=aws.region
    )
    return lambda service: session.client(service, endpoint_url=aws.endpoint)


def env_for(endpoint: str, region: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=region,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return env


def squall(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "squall", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=400,
    )
    assert proc.returncode == 0, (
        f"squall {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def cluster_file(directory: Path, name: str, controllers: int, workers: int) -> Path:
    path = directory / f"{name}.toml"
    values = {
        "cluster_name": name,
        "region": "us-east-1",
        "dns_zone": ZONE,
        "dns_zone_id": ZONE_ID,
        "ssh_authorized_key": SSH_KEY,
        "controller_count": controllers,
        "worker_count": workers,
    }
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


_reference: dict[tuple[int, int], dict[str, int]] = {}


def reference(
    aws: emulator.EmulatedAws, client: Callable[[str], Any], tmp: Path, shape: tuple[int, int]
) -> dict[str, int]:
    """What a fault-free apply of this shape owns, kind by kind."""
    if shape not in _reference:
        name = f"ref{shape[0]}x{shape[1]}"
        config = cluster_file(tmp, name, *shape)
        squall(env_for(aws.endpoint, aws.region), "apply", str(config), "--yes", "--no-bootstrap")
        inv = inventory(client, name, ZONE_ID, ZONE)
        assert not duplicates(inv), duplicates(inv)
        _reference[shape] = counts(inv)
    return _reference[shape]


@pytest.mark.parametrize(
    ("seed", "controllers", "workers"),
    [(11, 1, 2), (23, 1, 2), (37, 3, 5)],
)
def test_apply_reapply_destroy_converge_under_faults(
    aws: emulator.EmulatedAws,
    client: Callable[[str], Any],
    tmp_path: Path,
    seed: int,
    controllers: int,
    workers: int,
) -> None:
    want = reference(aws, client, tmp_path, (controllers, workers))
    assert want["vpc"] == 1 and want["controller"] == controllers and want["worker"] == workers
    name = f"f{seed}x{controllers}x{workers}"
    config = cluster_file(tmp_path, name, controllers, workers)
    port = urllib.parse.urlsplit(aws.endpoint).port
    assert port is not None
    with FaultProxy(
        port, FaultPolicy(rate=RATE, seed=seed, lost_create_rate=LOST_CREATES)
    ) as proxy:
        env = env_for(proxy.url, aws.region)

        squall(env, "apply", str(config), "--yes", "--no-bootstrap")
        inv = inventory(client, name, ZONE_ID, ZONE)
        assert duplicates(inv) == {}
        assert counts(inv) == want

        again = squall(env, "apply", str(config), "--yes", "--no-bootstrap")
        assert "No changes" in again.stdout, again.stdout
        assert counts(inventory(client, name, ZONE_ID, ZONE)) == want

        squall(env, "destroy", str(config), "--yes")
        log = proxy.log

    assert counts(inventory(client, name, ZONE_ID, ZONE)) == {k: 0 for k in want}
    # The run really was hostile: every kind of fault, on at least a tenth of the requests.
    assert set(log.faults) == set(FAULTS), log.faults
    assert log.faulted >= 0.10 * log.requests, (log.faulted, log.requests)
    lost_creates = {
        op for (fault, op) in log.hits if fault == "lost_response" and makes_something(op)
    }
    assert {"CreateVpc", "RunInstances"} & lost_creates or len(lost_creates) >= 3, log.hits
    assert any(fault == "not_found" for fault, _ in log.hits)
