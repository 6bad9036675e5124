"""Helpers for the AWS tests: the real ``squall`` CLI run as a subprocess against an emulated
AWS, cluster files, and small readers for what boto3 reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from squall import emulator

ZONE = "aws.example.com"
ZONE_ID = "Z3PAABBCFAKEC0"
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY demo@squall"
)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment with every AWS setting replaced: nothing may reach real AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


class Squall:
    """Runs the real CLI against one emulated AWS."""

    def __init__(self, aws: emulator.EmulatedAws) -> None:
        self.env = clean_env(aws.env())

    def __call__(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "squall", *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"squall {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def plan_json(self, config: Path) -> dict[str, Any]:
        return json.loads(self("plan", str(config), "--json").stdout)

    def outputs_json(self, config: Path, *extra: str) -> dict[str, Any]:
        return json.loads(self("outputs", str(config), "--json", *extra).stdout)


def cluster_file(directory: Path, name: str, **overrides: Any) -> Path:
    """A cluster file for the emulated zone; each test uses its own cluster name."""
    values: dict[str, Any] = {
        "cluster_name": name,
        "region": "us-east-1",
        "dns_zone": ZONE,
        "dns_zone_id": ZONE_ID,
        "ssh_authorized_key": SSH_KEY,
        "controller_count": 1,
        "worker_count": 2,
    }
    values.update(overrides)
    tables = {
        k: v for k, v in values.items() if isinstance(v, list) and v and isinstance(v[0], dict)
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if k not in tables]
    for key, rows in tables.items():
        for row in rows:
            lines += [f"[[{key}]]", *(f"{k} = {json.dumps(v)}" for k, v in row.items())]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def by_cluster(name: str) -> list[dict[str, Any]]:
    return [{"Name": "tag:squall.dev/cluster", "Values": [name]}]
