"""The cluster manifests that the one-shot bootstrap on controller 0 applies.

:func:`cluster_manifests` returns every object as plain data, keyed by its file path under the
bundle's ``manifests/`` folder; serializing them is the caller's job. The output depends on the
spec and token only, so a re-render is byte-for-byte the same.
"""

from __future__ import annotations

from squall.assets.manifests._objects import Obj
from squall.assets.manifests.bootstrap import bootstrap_manifests
from squall.assets.manifests.cilium import cilium_manifests
from squall.assets.manifests.coredns import coredns_manifests
from squall.assets.manifests.flannel import flannel_manifests
from squall.assets.manifests.ingress import nginx_ingress_manifests
from squall.assets.manifests.kube_proxy import kube_proxy_manifests
from squall.assets.token import BootstrapToken
from squall.spec import Spec

__all__ = ["cluster_manifests"]


def cluster_manifests(spec: Spec, token: BootstrapToken) -> dict[str, list[Obj]]:
    """Every add-on the spec asks for, as ``{path: [object, ...]}`` in a stable order."""
    files = bootstrap_manifests(token)
    if spec.components.coredns:
        files |= coredns_manifests(spec)
    if spec.networking == "cilium":
        # Cilium's eBPF load balancing replaces kube-proxy.
        if spec.components.cilium:
            files |= cilium_manifests(spec)
    else:
        if spec.components.kube_proxy:
            files |= kube_proxy_manifests(spec)
        if spec.components.flannel:
            files |= flannel_manifests(spec)
    if spec.ingress_controller == "nginx":
        files |= nginx_ingress_manifests(spec)
    return files
