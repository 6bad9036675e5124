"""Small builders for the Kubernetes objects every add-on needs.

Each returns a plain dict shaped like the API object, so callers compose data and the YAML
serializer at the edge never sees anything but dicts, lists and scalars.
"""

from __future__ import annotations

from typing import Any

from squall.spec import Spec

Obj = dict[str, Any]

KUBE_SYSTEM = "kube-system"
CLUSTER_DOMAIN = "cluster.local"
RBAC = "rbac.authorization.k8s.io"
RBAC_V1 = f"{RBAC}/v1"

CONTROLLER_TAINT = "node-role.kubernetes.io/controller"
WORKER_LABEL = "node.kubernetes.io/node"
# Workers whose group the NLB sends HTTP/HTTPS to (the main workers, pools with ingress = true):
# only they run the ingress controller.
INGRESS_LABEL = "squall.dev/ingress"
# With an external cloud provider the kubelet taints new nodes until the cloud controller
# manager initializes them; networking must come up first or that manager never can.
CLOUD_UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"

# Where pods find the credentials their service account projects into them.
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def daemonset(name: str, namespace: str, labels: dict[str, str], pod: Obj) -> Obj:
    """One pod per node, replaced a node at a time so a bad rollout stops early."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def service_account(name: str, namespace: str = KUBE_SYSTEM) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, namespace)}


def rule(groups: list[str], resources: list[str], verbs: list[str], **extra: list[str]) -> Obj:
    # Fresh lists everywhere: a list shared between two objects would serialize as a YAML alias.
    out: Obj = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    out.update({k: list(v) for k, v in extra.items()})
    return out


def cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRole",
        "metadata": metadata(name),
        "rules": rules,
    }


def role(name: str, namespace: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": "Role",
        "metadata": metadata(name, namespace),
        "rules": rules,
    }


def sa_subject(name: str, namespace: str = KUBE_SYSTEM) -> Obj:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def group_subject(name: str) -> Obj:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def user_subject(name: str) -> Obj:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def cluster_role_binding(name: str, cluster_role_name: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name),
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": cluster_role_name},
        "subjects": [dict(s) for s in subjects],
    }


def role_binding(name: str, namespace: str, role_name: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": RBAC_V1,
        "kind": "RoleBinding",
        "metadata": metadata(name, namespace),
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role_name},
        "subjects": [dict(s) for s in subjects],
    }


def config_map(name: str, data: dict[str, str], namespace: str = KUBE_SYSTEM) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, namespace),
        "data": dict(data),
    }


def env(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def env_field(name: str, field_path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def mount(name: str, path: str, read_only: bool = False, **extra: str) -> Obj:
    out: Obj = {"name": name, "mountPath": path}
    if read_only:
        out["readOnly"] = True
    out.update(extra)
    return out


def host_path(name: str, path: str, kind: str | None = None) -> Obj:
    source: Obj = {"path": path}
    if kind is not None:
        source["type"] = kind
    return {"name": name, "hostPath": source}


def config_map_volume(name: str, config_map_name: str) -> Obj:
    return {"name": name, "configMap": {"name": config_map_name}}


def exists_toleration(key: str, effect: str | None = None) -> Obj:
    out: Obj = {"key": key, "operator": "Exists"}
    if effect is not None:
        out["effect"] = effect
    return out


def _taint_key(taint: str) -> str:
    # key[=value]:Effect, validated by the spec
    return taint.partition(":")[0].partition("=")[0]


def node_daemon_tolerations(spec: Spec) -> list[Obj]:
    """Tolerations of a DaemonSet that every node needs (networking, service proxy).

    Controllers and nodes not yet ready are tolerated (the CNI is what makes them ready), plus
    every key of ``daemonset_tolerations``. squall goes beyond Typhoon and adds the keys of the
    taints it puts on workers itself, so that a tainted worker pool still gets a network.
    """
    keys = [CONTROLLER_TAINT, NOT_READY_TAINT]
    if spec.cloud_provider == "external":
        keys.append(CLOUD_UNINITIALIZED_TAINT)
    keys += spec.daemonset_tolerations
    keys += [_taint_key(t) for t in spec.worker_node_taints]
    keys += [_taint_key(t) for pool in spec.worker_pools for t in pool.node_taints]
    return [exists_toleration(k) for k in dict.fromkeys(keys)]


def ingress_tolerations(spec: Spec) -> list[Obj]:
    """The taints of the workers the NLB sends 80/443 to: their ingress controller must run."""
    keys = [_taint_key(t) for t in spec.worker_node_taints]
    keys += [_taint_key(t) for p in spec.worker_pools if p.ingress for t in p.node_taints]
    return [exists_toleration(k) for k in dict.fromkeys(keys)]


def critical_addon_tolerations(spec: Spec) -> list[Obj]:
    """Tolerations of cluster-wide Deployments that may run on controllers."""
    out = [exists_toleration(CONTROLLER_TAINT, "NoSchedule")]
    if spec.cloud_provider == "external":
        out.append(exists_toleration(CLOUD_UNINITIALIZED_TAINT, "NoSchedule"))
    return out
