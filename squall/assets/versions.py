"""The Kubernetes release squall installs: one place to change when upgrading."""

from __future__ import annotations

KUBERNETES_VERSION = "v1.36.5"
REGISTRY = "registry.k8s.io"


def image(component: str) -> str:
    """The upstream image of a Kubernetes component, e.g. ``kube-apiserver``."""
    return f"{REGISTRY}/{component}:{KUBERNETES_VERSION}"
