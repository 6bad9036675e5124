"""Fixtures shared by every test area."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# A public key only; its private half was never kept.
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY demo@squall"
)

ClusterData = Callable[..., dict[str, Any]]


@pytest.fixture
def cluster_data() -> ClusterData:
    """A factory for the smallest valid cluster file, as decoded TOML, with overrides applied."""

    def make(**overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "cluster_name": "tempest",
            "dns_zone": "aws.example.com",
            "dns_zone_id": "Z3PAABBCFAKEC0",
            "ssh_authorized_key": SSH_KEY,
        }
        data.update(overrides)
        return data

    return make
