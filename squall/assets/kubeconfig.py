"""Kubeconfigs: how the admin, the control-plane components and new kubelets reach the API.

Each one is built as a plain dict and serialized to YAML only at the edge, with sorted keys,
so rendering the same cluster twice gives the same bytes.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from squall.assets.tls import KeyPair
from squall.assets.token import BootstrapToken
from squall.spec import Spec

Kubeconfig = dict[str, Any]

BOOTSTRAP_USER = "kubelet-bootstrap"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    *, cluster: str, server: str, ca_pem: bytes, user: str, credentials: dict[str, str]
) -> Kubeconfig:
    """A kubeconfig with one cluster, one user and the one context joining them."""
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def client_cert(spec: Spec, ca_pem: bytes, user: str, pair: KeyPair) -> Kubeconfig:
    """A kubeconfig that authenticates with a client certificate."""
    return kubeconfig(
        cluster=spec.cluster_name,
        server=spec.api_url,
        ca_pem=ca_pem,
        user=user,
        credentials={
            "client-certificate-data": _b64(pair.cert_pem),
            "client-key-data": _b64(pair.key_pem),
        },
    )


def bootstrap(spec: Spec, ca_pem: bytes, token: BootstrapToken) -> Kubeconfig:
    """The kubelet's first kubeconfig: a bootstrap token good only for requesting its cert."""
    return kubeconfig(
        cluster=spec.cluster_name,
        server=spec.api_url,
        ca_pem=ca_pem,
        user=BOOTSTRAP_USER,
        credentials={"token": token.value},
    )


def dump(config: Kubeconfig) -> str:
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)
