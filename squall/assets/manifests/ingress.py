"""The nginx ingress controller on every worker, behind the NLB's 80/443 listeners.

The NLB sends traffic to instance targets on ports 80 and 443 and health-checks
``:10254/healthz`` on every worker, so the controller runs as a DaemonSet on the host network
of workers only. NLB instance targets keep the client address, so no PROXY protocol is needed.
"""

from __future__ import annotations

from squall.assets.manifests import images
from squall.assets.manifests._objects import (
    INGRESS_LABEL,
    Obj,
    cluster_role,
    cluster_role_binding,
    config_map,
    daemonset,
    env_field,
    ingress_tolerations,
    metadata,
    role,
    role_binding,
    rule,
    sa_subject,
    service_account,
)
from squall.spec import Spec

NAMESPACE = "ingress"
NAME = "nginx-ingress-controller"
CLASS = "nginx"
CONTROLLER_CLASS = "k8s.io/ingress-nginx"
ELECTION_ID = "ingress-nginx-leader"
LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
HEALTH_PORT = 10254
HTTP_PORT = 80
HTTPS_PORT = 443
# The controller image runs nginx as this unprivileged user.
NGINX_UID = 101
NGINX_GID = 82


def _namespace() -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(NAMESPACE)}


def _rbac() -> list[Obj]:
    read = ["get", "list", "watch"]
    return [
        service_account(NAME, NAMESPACE),
        cluster_role(
            f"squall:{NAME}",
            [
                rule(
                    [""],
                    ["configmaps", "endpoints", "nodes", "pods", "secrets", "namespaces"],
                    ["list", "watch"],
                ),
                rule([""], ["nodes"], ["get"]),
                rule([""], ["services"], read),
                rule(["coordination.k8s.io"], ["leases"], ["list", "watch"]),
                rule(["networking.k8s.io"], ["ingresses", "ingressclasses"], read),
                rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
                rule(["discovery.k8s.io"], ["endpointslices"], read),
                rule([""], ["events"], ["create", "patch"]),
            ],
        ),
        cluster_role_binding(f"squall:{NAME}", f"squall:{NAME}", [sa_subject(NAME, NAMESPACE)]),
        role(
            NAME,
            NAMESPACE,
            [
                rule([""], ["namespaces"], ["get"]),
                rule([""], ["configmaps", "pods", "secrets", "endpoints"], read),
                # Leader election decides which replica writes Ingress status.
                rule(
                    ["coordination.k8s.io"],
                    ["leases"],
                    ["get", "update"],
                    resourceNames=[ELECTION_ID],
                ),
                rule(["coordination.k8s.io"], ["leases"], ["create"]),
                rule([""], ["events"], ["create", "patch"]),
            ],
        ),
        role_binding(NAME, NAMESPACE, NAME, [sa_subject(NAME, NAMESPACE)]),
    ]


def _ingress_class() -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": metadata(CLASS)
        | {"annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": CONTROLLER_CLASS},
    }


def _health_probe(**timing: int) -> Obj:
    # The same endpoint the NLB target groups check on every worker.
    probe: Obj = {"httpGet": {"path": "/healthz", "port": HEALTH_PORT, "scheme": "HTTP"}}
    probe.update(timing)
    return probe


def _daemonset(spec: Spec) -> Obj:
    controller: Obj = {
        "name": "controller",
        "image": images.NGINX_INGRESS,
        "args": [
            "/nginx-ingress-controller",
            f"--controller-class={CONTROLLER_CLASS}",
            f"--ingress-class={CLASS}",
            "--watch-ingress-without-class=true",
            f"--election-id={ELECTION_ID}",
            f"--configmap=$(POD_NAMESPACE)/{NAME}",
            f"--healthz-port={HEALTH_PORT}",
            f"--http-port={HTTP_PORT}",
            f"--https-port={HTTPS_PORT}",
            "--report-node-internal-ip-address",
        ],
        "env": [
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": _health_probe(
            initialDelaySeconds=10, periodSeconds=10, timeoutSeconds=5, failureThreshold=5
        ),
        "readinessProbe": _health_probe(periodSeconds=10, timeoutSeconds=5, failureThreshold=3),
        "lifecycle": {"preStop": {"exec": {"command": ["/wait-shutdown"]}}},
        "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
        "securityContext": {
            "runAsUser": NGINX_UID,
            "runAsGroup": NGINX_GID,
            "runAsNonRoot": True,
            # nginx binds 80/443 as an unprivileged user through the file capability on its
            # binary, which a no_new_privs process would not receive.
            "allowPrivilegeEscalation": True,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        },
    }
    return daemonset(
        NAME,
        NAMESPACE,
        LABELS,
        {
            # Host ports 80/443/10254 on each worker are what the NLB targets reach.
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "nodeSelector": {INGRESS_LABEL: "true"},
            "tolerations": ingress_tolerations(spec),
            "serviceAccountName": NAME,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 300,
            "containers": [controller],
        },
    )


def nginx_ingress_manifests(spec: Spec) -> dict[str, list[Obj]]:
    return {
        # Applied in path order: the namespace must exist before what lives in it.
        "ingress/0-namespace.yaml": [_namespace()],
        "ingress/rbac.yaml": _rbac(),
        "ingress/config.yaml": [
            config_map(NAME, {"allow-snippet-annotations": "false"}, namespace=NAMESPACE)
        ],
        "ingress/class.yaml": [_ingress_class()],
        "ingress/daemonset.yaml": [_daemonset(spec)],
    }
