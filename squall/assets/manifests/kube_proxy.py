"""kube-proxy: Service load balancing with flannel (Cilium replaces it with eBPF)."""

from __future__ import annotations

import json

from squall.assets.manifests import images
from squall.assets.manifests._objects import (
    KUBE_SYSTEM,
    SA_DIR,
    Obj,
    cluster_role_binding,
    config_map,
    config_map_volume,
    daemonset,
    env_field,
    host_path,
    mount,
    node_daemon_tolerations,
    sa_subject,
    service_account,
)
from squall.spec import Spec

NAME = "kube-proxy"
LABELS = {"k8s-app": NAME}
CONFIG_DIR = "/etc/kubernetes/kube-proxy"
KUBECONFIG_DIR = "/etc/kubernetes/kube-proxy-kubeconfig"
METRICS_PORT = 10249
HEALTHZ_PORT = 10256


def in_cluster_kubeconfig(spec: Spec) -> Obj:
    """A kubeconfig that reaches the apiserver by its public name with the pod's own token.

    kube-proxy is what makes the ``kubernetes`` Service IP work, so it cannot use that IP to
    reach the apiserver; the NLB name works from every node from the first boot.
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": spec.api_url,
                    "certificate-authority": f"{SA_DIR}/ca.crt",
                },
            }
        ],
        "users": [{"name": "service-account", "user": {"tokenFile": f"{SA_DIR}/token"}}],
        "contexts": [
            {"name": "default", "context": {"cluster": "local", "user": "service-account"}}
        ],
        "current-context": "default",
    }


def proxy_config(spec: Spec) -> Obj:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": f"{KUBECONFIG_DIR}/kubeconfig"},
        "clusterCIDR": spec.pod_cidr,
        "mode": "iptables",
        # Prometheus on the nodes scrapes 10249 (the security groups open it to the cluster).
        "metricsBindAddress": f"0.0.0.0:{METRICS_PORT}",
        "healthzBindAddress": f"0.0.0.0:{HEALTHZ_PORT}",
    }


def _daemonset(spec: Spec) -> Obj:
    container: Obj = {
        "name": NAME,
        "image": images.KUBE_PROXY,
        "command": [
            "kube-proxy",
            f"--config={CONFIG_DIR}/config.json",
            "--hostname-override=$(NODE_NAME)",
        ],
        "env": [env_field("NODE_NAME", "spec.nodeName")],
        "ports": [
            {"name": "metrics", "containerPort": METRICS_PORT},
            {"name": "health", "containerPort": HEALTHZ_PORT},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": HEALTHZ_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 15,
            "timeoutSeconds": 15,
        },
        "securityContext": {"privileged": True},
        "volumeMounts": [
            mount("config", CONFIG_DIR, read_only=True),
            mount("kubeconfig", KUBECONFIG_DIR, read_only=True),
            mount("lib-modules", "/lib/modules", read_only=True),
            mount("xtables-lock", "/run/xtables.lock"),
        ],
    }
    return daemonset(
        NAME,
        KUBE_SYSTEM,
        LABELS,
        {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "serviceAccountName": NAME,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": node_daemon_tolerations(spec),
            "containers": [container],
            "volumes": [
                config_map_volume("config", "kube-proxy-config"),
                config_map_volume("kubeconfig", "kube-proxy-kubeconfig"),
                host_path("lib-modules", "/lib/modules", "Directory"),
                # Shared with every other iptables user on the node.
                host_path("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
            ],
        },
    )


def kube_proxy_manifests(spec: Spec) -> dict[str, list[Obj]]:
    return {
        "kube-proxy/rbac.yaml": [
            service_account(NAME),
            # system:node-proxier is Kubernetes' own role for exactly this component.
            cluster_role_binding("squall:kube-proxy", "system:node-proxier", [sa_subject(NAME)]),
        ],
        "kube-proxy/config.yaml": [
            config_map(
                "kube-proxy-config", {"config.json": json.dumps(proxy_config(spec), indent=2)}
            ),
            config_map(
                "kube-proxy-kubeconfig",
                {"kubeconfig": json.dumps(in_cluster_kubeconfig(spec), indent=2)},
            ),
        ],
        "kube-proxy/daemonset.yaml": [_daemonset(spec)],
    }
