"""The Kubernetes distribution, cloud-agnostic: TLS, kubeconfigs, static pods, manifests.

``build(spec, state)`` returns everything the controllers need as :class:`Assets`. Secrets are
generated on the first run, kept in the state directory and reused on every later run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssetFile:
    """One file of the controller asset bundle, addressed by its path in the render layout."""

    path: str  # relative, e.g. "tls/k8s/ca.key" or "manifests/coredns/deployment.yaml"
    content: bytes
    secret: bool  # private keys and credentials: written 0600, never printed


@dataclass(frozen=True)
class Assets:
    files: tuple[AssetFile, ...]
    ca_cert: str  # PEM of the Kubernetes CA
    bootstrap_kubeconfig: (
        str  # the kubelet's bootstrap-token kubeconfig: the one secret in user data
    )
    admin_kubeconfig: str
    service_account_public_key: str  # PEM
