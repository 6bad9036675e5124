"""Cluster DNS: CoreDNS behind the ``kube-dns`` Service at the 10th service IP."""

from __future__ import annotations

from squall.assets.manifests import images
from squall.assets.manifests._objects import (
    CLUSTER_DOMAIN,
    KUBE_SYSTEM,
    Obj,
    cluster_role,
    cluster_role_binding,
    config_map,
    config_map_volume,
    critical_addon_tolerations,
    metadata,
    mount,
    rule,
    sa_subject,
    service_account,
)
from squall.spec import Spec

NAME = "coredns"
# kube-dns is the name and label every cluster tool expects of cluster DNS.
LABELS = {"k8s-app": "kube-dns"}
METRICS_PORT = 9153
HEALTH_PORT = 8080
READY_PORT = 8181

# A Corefile is a sequence of directives; each is (name, arguments, nested directives).
Directive = tuple[str, list[str], list["Directive"]]


def _server_block() -> list[Directive]:
    return [
        ("errors", [], []),
        ("health", [], [("lameduck", ["5s"], [])]),
        ("ready", [], []),
        (
            "kubernetes",
            [CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa"],
            [
                ("pods", ["insecure"], []),
                ("fallthrough", ["in-addr.arpa", "ip6.arpa"], []),
            ],
        ),
        ("prometheus", [f":{METRICS_PORT}"], []),
        ("forward", [".", "/etc/resolv.conf"], []),
        ("cache", ["30"], []),
        ("loop", [], []),
        ("reload", [], []),
        ("loadbalance", [], []),
    ]


def _render(directives: list[Directive], depth: int) -> list[str]:
    pad = "    " * depth
    lines = []
    for name, args, children in directives:
        head = " ".join([name, *args])
        if children:
            lines.append(f"{pad}{head} {{")
            lines += _render(children, depth + 1)
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{head}")
    return lines


def corefile() -> str:
    return "\n".join(_render([(".:53", [], _server_block())], 0)) + "\n"


def _rbac() -> list[Obj]:
    return [
        service_account(NAME),
        cluster_role(
            f"squall:{NAME}",
            [
                rule([""], ["endpoints", "services", "pods", "namespaces"], ["list", "watch"]),
                rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
            ],
        ),
        cluster_role_binding(f"squall:{NAME}", f"squall:{NAME}", [sa_subject(NAME)]),
    ]


def _deployment(spec: Spec) -> Obj:
    container: Obj = {
        "name": NAME,
        "image": images.COREDNS,
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": HEALTH_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 60,
            "timeoutSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 5,
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT, "scheme": "HTTP"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [mount("config", "/etc/coredns", read_only=True)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(NAME, KUBE_SYSTEM, LABELS),
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    # Two replicas on one node would fail together.
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": dict(LABELS)},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    # DNS must work before any worker joins, so controllers may host it.
                    "tolerations": critical_addon_tolerations(spec),
                    "dnsPolicy": "Default",
                    "containers": [container],
                    "volumes": [config_map_volume("config", NAME)],
                },
            },
        },
    }


def _service(spec: Spec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("kube-dns", KUBE_SYSTEM, LABELS)
        | {
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT)}
        },
        "spec": {
            "selector": dict(LABELS),
            "clusterIP": spec.cluster_dns_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP"},
            ],
        },
    }


def coredns_manifests(spec: Spec) -> dict[str, list[Obj]]:
    return {
        "coredns/rbac.yaml": _rbac(),
        "coredns/config.yaml": [config_map(NAME, {"Corefile": corefile()})],
        "coredns/deployment.yaml": [_deployment(spec)],
        "coredns/service.yaml": [_service(spec)],
    }
