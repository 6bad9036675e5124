"""Fixtures shared by every test area."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# A public key only; its private half was never kept.
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY demo@squall"
)

# The controller asset bundle's files, as the issue and docs promise them.
BUNDLE_CONTRACT = frozenset(
    {
        *(
            f"tls/k8s/{n}"
            for n in (
                "ca.crt",
                "ca.key",
                "apiserver.crt",
                "apiserver.key",
                "service-account.pub",
                "service-account.key",
                "aggregation-ca.crt",
                "aggregation-client.crt",
                "aggregation-client.key",
            )
        ),
        *(
            f"tls/etcd/{n}"
            for n in (
                "etcd-client-ca.crt",
                "etcd-client.crt",
                "etcd-client.key",
                "server-ca.crt",
                "server.crt",
                "server.key",
                "peer-ca.crt",
                "peer.crt",
                "peer.key",
            )
        ),
        "auth/admin.conf",
        "auth/controller-manager.conf",
        "auth/scheduler.conf",
        "auth/authentication-config.yaml",
        "static-manifests/kube-apiserver.yaml",
        "static-manifests/kube-controller-manager.yaml",
        "static-manifests/kube-scheduler.yaml",
    }
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


@pytest.fixture
def bundle_contract() -> frozenset[str]:
    """Every file the controller asset bundle must hold (render layout paths)."""
    return BUNDLE_CONTRACT
