"""Cilium: the default CNI, with eBPF Service load balancing in place of kube-proxy.

Ports match the security groups: VXLAN on UDP 8472, node-to-node health on TCP 4240 (plus
ICMP echo), metrics on 9962 (agent), 9963 (operator), 9964 (embedded Envoy) and 9965 (Hubble).
"""

from __future__ import annotations

from squall.assets.manifests import images
from squall.assets.manifests._objects import (
    KUBE_SYSTEM,
    NOT_READY_TAINT,
    Obj,
    cluster_role,
    cluster_role_binding,
    config_map,
    config_map_volume,
    critical_addon_tolerations,
    daemonset,
    env,
    env_field,
    exists_toleration,
    host_path,
    metadata,
    mount,
    node_daemon_tolerations,
    rule,
    sa_subject,
    service_account,
)
from squall.spec import Spec

CONFIG_MAP = "cilium-config"
AGENT = "cilium-agent"
OPERATOR = "cilium-operator"
AGENT_LABELS = {"k8s-app": "cilium"}
OPERATOR_LABELS = {"name": OPERATOR, "io.cilium/app": "operator"}

TUNNEL_PORT = 8472
HEALTH_PORT = 4240
AGENT_HEALTHZ_PORT = 9876
AGENT_METRICS_PORT = 9962
OPERATOR_METRICS_PORT = 9963
ENVOY_METRICS_PORT = 9964
HUBBLE_METRICS_PORT = 9965
OPERATOR_API = "127.0.0.1:9234"
API_PORT = 6443

CONFIG_DIR = "/tmp/cilium/config-map"
CGROUP_ROOT = "/run/cilium/cgroupv2"
CNI_CONF = "/host/etc/cni/net.d/05-cilium.conflist"
# Nodes registered with this taint get no pods until Cilium runs there and lifts it.
AGENT_NOT_READY_TAINT = "node.cilium.io/agent-not-ready"

# The operator keeps its own CRDs current; RBAC cannot match names by suffix, so they are listed.
CRDS = (
    "ciliumbgpadvertisements",
    "ciliumbgpclusterconfigs",
    "ciliumbgpnodeconfigoverrides",
    "ciliumbgpnodeconfigs",
    "ciliumbgppeerconfigs",
    "ciliumcidrgroups",
    "ciliumclusterwideenvoyconfigs",
    "ciliumclusterwidenetworkpolicies",
    "ciliumegressgatewaypolicies",
    "ciliumendpoints",
    "ciliumendpointslices",
    "ciliumenvoyconfigs",
    "ciliumgatewayclassconfigs",
    "ciliumidentities",
    "ciliuml2announcementpolicies",
    "ciliumloadbalancerippools",
    "ciliumlocalredirectpolicies",
    "ciliumnetworkpolicies",
    "ciliumnodeconfigs",
    "ciliumnodes",
    "ciliumpodippools",
)


def cilium_config(spec: Spec) -> dict[str, str]:
    """The agent's and operator's settings (one file per key in their config directory)."""
    return {
        "cluster-name": "default",
        "cluster-id": "0",
        "identity-allocation-mode": "crd",
        "debug": "false",
        "enable-policy": "default",
        # Addressing and IPAM: each node gets a /24 of pod_cidr from the operator.
        "enable-ipv4": "true",
        "enable-ipv6": "false",
        "ipam": "cluster-pool",
        "cluster-pool-ipv4-cidr": spec.pod_cidr,
        "cluster-pool-ipv4-mask-size": "24",
        # Overlay: VXLAN on the port the security groups open between nodes.
        "routing-mode": "tunnel",
        "tunnel-protocol": "vxlan",
        "tunnel-port": str(TUNNEL_PORT),
        "enable-ipv4-masquerade": "true",
        "enable-bpf-masquerade": "true",
        "install-iptables-rules": "true",
        # kube-proxy replacement: Services, NodePorts and hostPorts in eBPF.
        "kube-proxy-replacement": "true",
        "bpf-lb-sock": "true",
        "cgroup-root": CGROUP_ROOT,
        # Health between nodes, and the agent's own liveness endpoint.
        "enable-health-checking": "true",
        "enable-endpoint-health-checking": "true",
        "cluster-health-port": str(HEALTH_PORT),
        "agent-health-port": str(AGENT_HEALTHZ_PORT),
        # Metrics.
        "enable-metrics": "true",
        "prometheus-serve-addr": f":{AGENT_METRICS_PORT}",
        "operator-prometheus-serve-addr": f":{OPERATOR_METRICS_PORT}",
        "operator-api-serve-addr": OPERATOR_API,
        "proxy-prometheus-port": str(ENVOY_METRICS_PORT),
        "enable-hubble": "true",
        "hubble-socket-path": "/var/run/cilium/hubble.sock",
        "hubble-metrics-server": f":{HUBBLE_METRICS_PORT}",
        "hubble-metrics": "dns drop tcp flow icmp",
        # L7 policy runs Envoy inside the agent rather than as another DaemonSet.
        "enable-l7-proxy": "true",
        "external-envoy-proxy": "false",
        "enable-k8s-networkpolicy": "true",
        # CNI: the agent writes its config only once it can serve pods, and removes others.
        "write-cni-conf-when-ready": CNI_CONF,
        "cni-exclusive": "true",
        "cni-log-file": "/var/run/cilium/cilium-cni.log",
    }


def _api_env(spec: Spec) -> list[Obj]:
    # Without kube-proxy the kubernetes Service IP does not work until Cilium itself runs, so
    # Cilium reaches the apiserver by its public name.
    return [
        env("KUBERNETES_SERVICE_HOST", spec.api_fqdn),
        env("KUBERNETES_SERVICE_PORT", str(API_PORT)),
    ]


def _agent_rbac() -> list[Obj]:
    return [
        service_account(AGENT),
        cluster_role(
            f"squall:{AGENT}",
            [
                rule(["networking.k8s.io"], ["networkpolicies"], ["get", "list", "watch"]),
                rule(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
                rule(
                    [""],
                    ["namespaces", "services", "pods", "endpoints", "nodes"],
                    ["get", "list", "watch"],
                ),
                rule([""], ["nodes/status"], ["patch"]),
                rule(
                    ["apiextensions.k8s.io"],
                    ["customresourcedefinitions"],
                    ["get", "list", "watch"],
                ),
                # Read access to Cilium's own group: the agent watches every Cilium kind its
                # release knows, and new releases add kinds.
                rule(["cilium.io"], ["*"], ["get", "list", "watch"]),
                rule(
                    ["cilium.io"],
                    ["ciliumidentities", "ciliumendpoints", "ciliumnodes"],
                    ["create"],
                ),
                rule(["cilium.io"], ["ciliumidentities"], ["update"]),
                rule(["cilium.io"], ["ciliumendpoints"], ["delete", "get"]),
                rule(["cilium.io"], ["ciliumnodes", "ciliumnodes/status"], ["get", "update"]),
                rule(
                    ["cilium.io"],
                    [
                        "ciliumnetworkpolicies/status",
                        "ciliumclusterwidenetworkpolicies/status",
                        "ciliumendpoints/status",
                        "ciliumendpoints",
                        "ciliuml2announcementpolicies/status",
                        "ciliumbgpnodeconfigs/status",
                    ],
                    ["patch"],
                ),
            ],
        ),
        cluster_role_binding(f"squall:{AGENT}", f"squall:{AGENT}", [sa_subject(AGENT)]),
    ]


def _operator_rbac() -> list[Obj]:
    return [
        service_account(OPERATOR),
        cluster_role(
            f"squall:{OPERATOR}",
            [
                # Restarting pods that started before Cilium puts them under its management.
                rule([""], ["pods"], ["get", "list", "watch", "delete"]),
                rule([""], ["configmaps"], ["patch"], resourceNames=[CONFIG_MAP]),
                rule([""], ["nodes"], ["list", "watch", "patch"]),
                rule([""], ["nodes/status"], ["patch"]),
                rule(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
                rule([""], ["services/status"], ["update", "patch"]),
                rule([""], ["namespaces", "services"], ["get", "list", "watch"]),
                rule(["cilium.io"], ["*"], ["get", "list", "watch"]),
                rule(
                    ["cilium.io"],
                    ["ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"],
                    ["create", "update", "deletecollection", "patch"],
                ),
                rule(
                    ["cilium.io"],
                    ["ciliumnetworkpolicies/status", "ciliumclusterwidenetworkpolicies/status"],
                    ["patch", "update"],
                ),
                rule(["cilium.io"], ["ciliumendpoints", "ciliumidentities"], ["delete"]),
                rule(["cilium.io"], ["ciliumidentities"], ["update", "create"]),
                rule(["cilium.io"], ["ciliumnodes"], ["create", "update", "delete"]),
                rule(["cilium.io"], ["ciliumnodes/status"], ["update"]),
                rule(
                    ["cilium.io"],
                    [
                        "ciliumendpointslices",
                        "ciliumenvoyconfigs",
                        "ciliumbgppeerconfigs",
                        "ciliumbgpadvertisements",
                        "ciliumbgpnodeconfigs",
                    ],
                    ["create", "update", "delete", "patch", "deletecollection"],
                ),
                rule(
                    ["cilium.io"],
                    ["ciliumbgpclusterconfigs/status", "ciliumbgppeerconfigs/status"],
                    ["update"],
                ),
                rule(["cilium.io"], ["ciliumpodippools"], ["create"]),
                rule(["cilium.io"], ["ciliumloadbalancerippools/status"], ["patch"]),
                rule(
                    ["apiextensions.k8s.io"],
                    ["customresourcedefinitions"],
                    ["create", "get", "list", "watch"],
                ),
                rule(
                    ["apiextensions.k8s.io"],
                    ["customresourcedefinitions"],
                    ["update"],
                    resourceNames=[f"{crd}.cilium.io" for crd in CRDS],
                ),
                # Leader election between operator replicas.
                rule(["coordination.k8s.io"], ["leases"], ["create", "get", "update"]),
            ],
        ),
        cluster_role_binding(f"squall:{OPERATOR}", f"squall:{OPERATOR}", [sa_subject(OPERATOR)]),
    ]


def _agent_probe(**timing: int) -> Obj:
    probe: Obj = {
        "httpGet": {
            "host": "127.0.0.1",
            "path": "/healthz",
            "port": AGENT_HEALTHZ_PORT,
            "scheme": "HTTP",
            # A brief answer skips the full status, which is slow while the agent starts.
            "httpHeaders": [{"name": "brief", "value": "true"}],
        }
    }
    probe.update(timing)
    return probe


def _agent_daemonset(spec: Spec) -> Obj:
    image = images.CILIUM_AGENT
    init_containers: list[Obj] = [
        {
            "name": "install-cni-binaries",
            "image": image,
            "command": ["/install-plugin.sh"],
            "securityContext": {"privileged": True},
            "volumeMounts": [mount("cni-bin-dir", "/host/opt/cni/bin")],
        },
        {
            # Socket load balancing attaches to the cgroup v2 root, which must be a mount of
            # its own on the host, not inside the container.
            "name": "mount-cgroup",
            "image": image,
            "command": [
                "sh",
                "-ec",
                "cp /usr/bin/cilium-mount /hostbin/cilium-mount; "
                'nsenter --cgroup=/hostproc/1/ns/cgroup --mount=/hostproc/1/ns/mnt "${BIN_PATH}/cilium-mount" "${CGROUP_ROOT}"; '
                "rm /hostbin/cilium-mount",
            ],
            "env": [env("CGROUP_ROOT", CGROUP_ROOT), env("BIN_PATH", "/opt/cni/bin")],
            "securityContext": {"privileged": True},
            "volumeMounts": [
                mount("hostproc", "/hostproc"),
                mount("cni-bin-dir", "/hostbin"),
            ],
        },
        {
            "name": "clean-cilium-state",
            "image": image,
            "command": ["/init-container.sh"],
            "env": [
                # Kept state survives agent restarts; clean only when asked via the ConfigMap.
                {
                    "name": "CILIUM_ALL_STATE",
                    "valueFrom": {
                        "configMapKeyRef": {
                            "name": CONFIG_MAP,
                            "key": "clean-cilium-state",
                            "optional": True,
                        }
                    },
                },
                {
                    "name": "CILIUM_BPF_STATE",
                    "valueFrom": {
                        "configMapKeyRef": {
                            "name": CONFIG_MAP,
                            "key": "clean-cilium-bpf-state",
                            "optional": True,
                        }
                    },
                },
                *_api_env(spec),
            ],
            "securityContext": {"privileged": True},
            "volumeMounts": [
                mount("bpf-maps", "/sys/fs/bpf"),
                mount("cilium-cgroup", CGROUP_ROOT, mountPropagation="HostToContainer"),
                mount("cilium-run", "/var/run/cilium"),
            ],
        },
    ]
    agent: Obj = {
        "name": "cilium-agent",
        "image": image,
        "command": ["cilium-agent"],
        "args": [f"--config-dir={CONFIG_DIR}"],
        "env": [
            env_field("K8S_NODE_NAME", "spec.nodeName"),
            env_field("CILIUM_K8S_NAMESPACE", "metadata.namespace"),
            *_api_env(spec),
        ],
        "ports": [
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            {"name": "prometheus", "containerPort": AGENT_METRICS_PORT, "protocol": "TCP"},
            {"name": "envoy-metrics", "containerPort": ENVOY_METRICS_PORT, "protocol": "TCP"},
            {"name": "hubble-metrics", "containerPort": HUBBLE_METRICS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _agent_probe(failureThreshold=105, periodSeconds=2),
        "livenessProbe": _agent_probe(periodSeconds=30, failureThreshold=10, timeoutSeconds=5),
        "readinessProbe": _agent_probe(periodSeconds=30, failureThreshold=3, timeoutSeconds=5),
        "lifecycle": {"preStop": {"exec": {"command": ["/cni-uninstall.sh"]}}},
        "securityContext": {"privileged": True},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            mount("bpf-maps", "/sys/fs/bpf", mountPropagation="Bidirectional"),
            mount("cilium-cgroup", CGROUP_ROOT),
            mount("cilium-run", "/var/run/cilium"),
            mount("cni-conf-dir", "/host/etc/cni/net.d"),
            mount("lib-modules", "/lib/modules", read_only=True),
            mount("xtables-lock", "/run/xtables.lock"),
            mount("config", CONFIG_DIR, read_only=True),
        ],
    }
    return daemonset(
        "cilium",
        KUBE_SYSTEM,
        AGENT_LABELS,
        {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "serviceAccountName": AGENT,
            "automountServiceAccountToken": True,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [
                *node_daemon_tolerations(spec),
                exists_toleration(AGENT_NOT_READY_TAINT),
            ],
            "initContainers": init_containers,
            "containers": [agent],
            "terminationGracePeriodSeconds": 1,
            "volumes": [
                host_path("cilium-run", "/var/run/cilium", "DirectoryOrCreate"),
                host_path("bpf-maps", "/sys/fs/bpf", "DirectoryOrCreate"),
                host_path("hostproc", "/proc", "Directory"),
                host_path("cilium-cgroup", CGROUP_ROOT, "DirectoryOrCreate"),
                host_path("cni-bin-dir", "/opt/cni/bin", "DirectoryOrCreate"),
                host_path("cni-conf-dir", "/etc/cni/net.d", "DirectoryOrCreate"),
                host_path("lib-modules", "/lib/modules", "Directory"),
                host_path("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
                config_map_volume("config", CONFIG_MAP),
            ],
        },
    )


def _operator_deployment(spec: Spec) -> Obj:
    operator: Obj = {
        "name": "cilium-operator",
        "image": images.CILIUM_OPERATOR,
        "command": ["cilium-operator-generic"],
        "args": [f"--config-dir={CONFIG_DIR}"],
        "env": [
            env_field("K8S_NODE_NAME", "spec.nodeName"),
            env_field("CILIUM_K8S_NAMESPACE", "metadata.namespace"),
            *_api_env(spec),
        ],
        "ports": [
            {"name": "prometheus", "containerPort": OPERATOR_METRICS_PORT, "protocol": "TCP"}
        ],
        "livenessProbe": {
            "httpGet": {
                "host": OPERATOR_API.partition(":")[0],
                "path": "/healthz",
                "port": int(OPERATOR_API.partition(":")[2]),
                "scheme": "HTTP",
            },
            "initialDelaySeconds": 60,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [mount("config", CONFIG_DIR, read_only=True)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(OPERATOR, KUBE_SYSTEM, OPERATOR_LABELS),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(OPERATOR_LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": dict(OPERATOR_LABELS)},
                "spec": {
                    # The operator hands out pod CIDRs, so it must run before any pod network
                    # exists: on the host network, on nodes that are not ready yet.
                    "hostNetwork": True,
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": OPERATOR,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "tolerations": [
                        *critical_addon_tolerations(spec),
                        exists_toleration(NOT_READY_TAINT),
                        exists_toleration(AGENT_NOT_READY_TAINT),
                    ],
                    "containers": [operator],
                    "volumes": [config_map_volume("config", CONFIG_MAP)],
                },
            },
        },
    }


def cilium_manifests(spec: Spec) -> dict[str, list[Obj]]:
    return {
        "network/cilium-config.yaml": [config_map(CONFIG_MAP, cilium_config(spec))],
        "network/cilium-rbac.yaml": _agent_rbac() + _operator_rbac(),
        "network/cilium-agent.yaml": [_agent_daemonset(spec)],
        "network/cilium-operator.yaml": [_operator_deployment(spec)],
    }
