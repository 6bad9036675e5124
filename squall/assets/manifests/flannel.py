"""flannel: a plain VXLAN overlay, paired with kube-proxy for Services.

flannel takes each node's pod range from ``Node.spec.podCIDR``, which the controller-manager
allocates from ``pod_cidr`` (``--allocate-node-cidrs``).
"""

from __future__ import annotations

import json

from squall.assets.manifests import images
from squall.assets.manifests._objects import (
    KUBE_SYSTEM,
    Obj,
    cluster_role,
    cluster_role_binding,
    config_map,
    config_map_volume,
    daemonset,
    env,
    env_field,
    host_path,
    mount,
    node_daemon_tolerations,
    rule,
    sa_subject,
    service_account,
)
from squall.spec import Spec

NAME = "flannel"
CONFIG_MAP = "flannel-config"
LABELS = {"k8s-app": NAME}
VXLAN_PORT = 8472
API_PORT = 6443


def net_conf(spec: Spec) -> Obj:
    return {
        "Network": spec.pod_cidr,
        # The Linux default VXLAN port, stated so that it visibly matches the security groups.
        "Backend": {"Type": "vxlan", "Port": VXLAN_PORT},
    }


def cni_conf() -> Obj:
    return {
        "name": "cbr0",
        "cniVersion": "1.0.0",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            # hostPort support (the ingress controller and user pods may use it).
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _rbac() -> list[Obj]:
    return [
        service_account(NAME),
        cluster_role(
            f"squall:{NAME}",
            [
                rule([""], ["pods"], ["get"]),
                rule([""], ["nodes"], ["get", "list", "watch"]),
                rule([""], ["nodes/status"], ["patch"]),
            ],
        ),
        cluster_role_binding(f"squall:{NAME}", f"squall:{NAME}", [sa_subject(NAME)]),
    ]


def _daemonset(spec: Spec) -> Obj:
    # The flannel CNI plugin delegates to the standard bridge, host-local, portmap and
    # loopback plugins, which neither OS puts in /opt/cni/bin: this image installs them all
    # together with the flannel plugin and writes the CNI config from the ConfigMap.
    init_containers: list[Obj] = [
        {
            "name": "install-cni",
            "image": images.FLANNEL_CNI,
            "command": ["/install-cni.sh"],
            "env": [
                {
                    "name": "CNI_NETWORK_CONFIG",
                    "valueFrom": {"configMapKeyRef": {"name": CONFIG_MAP, "key": "cni-conf.json"}},
                }
            ],
            "volumeMounts": [
                mount("cni-bin-dir", "/host/opt/cni/bin"),
                mount("cni-conf-dir", "/host/etc/cni/net.d"),
            ],
        },
    ]
    flannel: Obj = {
        "name": NAME,
        "image": images.FLANNEL,
        "command": ["/opt/bin/flanneld"],
        "args": ["--ip-masq", "--kube-subnet-mgr"],
        "env": [
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
            env("EVENT_QUEUE_DEPTH", "5000"),
            # Services need kube-proxy and kube-proxy needs a ready node; reaching the
            # apiserver by name breaks that cycle.
            env("KUBERNETES_SERVICE_HOST", spec.api_fqdn),
            env("KUBERNETES_SERVICE_PORT", str(API_PORT)),
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "50Mi"}},
        "securityContext": {
            "privileged": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
        },
        "volumeMounts": [
            mount("run-flannel", "/run/flannel"),
            mount("config", "/etc/kube-flannel", read_only=True),
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
            "initContainers": init_containers,
            "containers": [flannel],
            "volumes": [
                host_path("run-flannel", "/run/flannel", "DirectoryOrCreate"),
                host_path("cni-bin-dir", "/opt/cni/bin", "DirectoryOrCreate"),
                host_path("cni-conf-dir", "/etc/cni/net.d", "DirectoryOrCreate"),
                host_path("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
                config_map_volume("config", CONFIG_MAP),
            ],
        },
    )


def flannel_manifests(spec: Spec) -> dict[str, list[Obj]]:
    return {
        "network/flannel-config.yaml": [
            config_map(
                CONFIG_MAP,
                {
                    "net-conf.json": json.dumps(net_conf(spec), indent=2),
                    "cni-conf.json": json.dumps(cni_conf(), indent=2),
                },
            )
        ],
        "network/flannel-rbac.yaml": _rbac(),
        "network/flannel.yaml": [_daemonset(spec)],
    }
