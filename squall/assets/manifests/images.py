"""Container images of the cluster add-ons, pinned to exact upstream releases.

Pinning keeps a render reproducible: the same cluster file always yields the same manifests,
and an upgrade is a reviewed change to this file.
"""

from __future__ import annotations

from squall.assets import versions

# kube-proxy follows the control plane's release.
KUBE_PROXY = versions.image("kube-proxy")
COREDNS = "registry.k8s.io/coredns/coredns:v1.14.7"

CILIUM_VERSION = "v1.19.7"
CILIUM_AGENT = f"quay.io/cilium/cilium:{CILIUM_VERSION}"
CILIUM_OPERATOR = f"quay.io/cilium/operator-generic:{CILIUM_VERSION}"

FLANNEL = "ghcr.io/flannel-io/flannel:v0.28.9"
# The flannel CNI plugin bundled with the standard plugins it delegates to.
FLANNEL_CNI = "quay.io/poseidon/flannel-cni:v0.4.4"

# The kubernetes/ingress-nginx project was retired in March 2026; v1.15.1 is its final
# controller release and receives no further fixes. squall keeps it because the NLB's worker
# health checks speak its health endpoint (:10254/healthz); replacing the controller is a
# change of this image and of ingress.py only.
NGINX_INGRESS = "registry.k8s.io/ingress-nginx/controller:v1.15.1"
