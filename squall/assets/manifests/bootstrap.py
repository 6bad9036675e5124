"""How nodes join: the bootstrap token, TLS bootstrapping RBAC and the kubelet API's clients.

A new kubelet authenticates with the bootstrap token (group ``system:bootstrappers``), asks for
a client certificate with a CSR, and the controller-manager approves it because of the
bindings below. Later renewals come from the node's own identity (group ``system:nodes``).
"""

from __future__ import annotations

from squall.assets.manifests._objects import (
    KUBE_SYSTEM,
    Obj,
    cluster_role,
    cluster_role_binding,
    group_subject,
    metadata,
    rule,
    user_subject,
)
from squall.assets.token import BootstrapToken

BOOTSTRAPPERS = "system:bootstrappers"
NODES = "system:nodes"
# The kube-apiserver presents its serving certificate (CN kube-apiserver) as its kubelet
# client, so that is the user the kubelets' webhook authorizer sees.
APISERVER_USER = "kube-apiserver"
CSR_APPROVER = "system:certificates.k8s.io:certificatesigningrequests"


def token_secret(token: BootstrapToken) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(f"bootstrap-token-{token.id}", KUBE_SYSTEM),
        "type": "bootstrap.kubernetes.io/token",
        # Every token is in system:bootstrappers already; no extra groups are needed, and the
        # token only authenticates (it never signs the cluster-info ConfigMap).
        "stringData": {
            "token-id": token.id,
            "token-secret": token.secret,
            "usage-bootstrap-authentication": "true",
        },
    }


def bootstrap_rbac() -> list[Obj]:
    kubelet_api_role = "squall:kubelet-api"
    return [
        cluster_role_binding(
            "squall:node-bootstrapper", "system:node-bootstrapper", [group_subject(BOOTSTRAPPERS)]
        ),
        cluster_role_binding(
            "squall:approve-node-client-csr",
            f"{CSR_APPROVER}:nodeclient",
            [group_subject(BOOTSTRAPPERS)],
        ),
        cluster_role_binding(
            "squall:approve-node-client-renewal-csr",
            f"{CSR_APPROVER}:selfnodeclient",
            [group_subject(NODES)],
        ),
        # kubectl logs/exec/port-forward and metrics reach the kubelet through the apiserver.
        # nodes/pods, nodes/healthz and nodes/configz are the fine-grained subresources the
        # kubelet checks first since Kubernetes 1.33; nodes/proxy covers older kubelets.
        cluster_role(
            kubelet_api_role,
            [
                rule(
                    [""],
                    [
                        "nodes/proxy",
                        "nodes/stats",
                        "nodes/log",
                        "nodes/spec",
                        "nodes/metrics",
                        "nodes/pods",
                        "nodes/healthz",
                        "nodes/configz",
                    ],
                    ["*"],
                )
            ],
        ),
        cluster_role_binding(kubelet_api_role, kubelet_api_role, [user_subject(APISERVER_USER)]),
    ]


def bootstrap_manifests(token: BootstrapToken) -> dict[str, list[Obj]]:
    return {
        "bootstrap/token.yaml": [token_secret(token)],
        "bootstrap/rbac.yaml": bootstrap_rbac(),
    }
