"""The control plane as static pods: kube-apiserver, kube-controller-manager, kube-scheduler.

The kubelet on every controller runs these from ``/etc/kubernetes/manifests``; all of their
keys, certificates and kubeconfigs are laid out flat in ``/etc/kubernetes/pki``.
"""

from __future__ import annotations

from typing import Any

from squall.assets import etcd
from squall.assets.tls import FRONT_PROXY_CLIENT_CN
from squall.assets.versions import image
from squall.spec import Spec

Object = dict[str, Any]

PKI = "/etc/kubernetes/pki"
AUTHENTICATION_CONFIG = "authentication-config.yaml"
APISERVER_PORT = 6443
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259

# The NLB checks /readyz without a client certificate; these are the only paths an anonymous
# request may reach, whatever RBAC would otherwise allow.
ANONYMOUS_PATHS = ("/livez", "/readyz", "/healthz")


def _pki(name: str) -> str:
    return f"{PKI}/{name}"


def _flags(flags: dict[str, str]) -> list[str]:
    return [f"--{k}={v}" for k, v in sorted(flags.items())]


def authentication_config() -> Object:
    """kube-apiserver's AuthenticationConfiguration: anonymous only for the health paths."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "anonymous": {
            "enabled": True,
            "conditions": [{"path": p} for p in ANONYMOUS_PATHS],
        },
    }


def _probe(port: int, path: str, **timing: int) -> Object:
    return {"httpGet": {"scheme": "HTTPS", "port": port, "path": path}, **timing}


def _pod(
    name: str,
    command: list[str],
    *,
    cpu: str,
    liveness: Object,
    extra: Object | None = None,
    env: list[Object] | None = None,
) -> Object:
    container: Object = {
        "name": name,
        "image": image(name),
        "command": command,
        "resources": {"requests": {"cpu": cpu}},
        "livenessProbe": liveness,
        "volumeMounts": [{"name": "pki", "mountPath": PKI, "readOnly": True}],
        **(extra or {}),
    }
    if env:
        container["env"] = env
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"k8s-app": name, "tier": "control-plane"},
        },
        "spec": {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [
                {"name": "pki", "hostPath": {"path": PKI, "type": "Directory"}},
            ],
        },
    }


def apiserver_flags(spec: Spec) -> dict[str, str]:
    return {
        "advertise-address": "$(POD_IP)",
        "allow-privileged": "true",
        # Anonymous access is decided by this file alone; --anonymous-auth must stay unset.
        "authentication-config": _pki(AUTHENTICATION_CONFIG),
        "authorization-mode": "Node,RBAC",
        "client-ca-file": _pki("ca.crt"),
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "etcd-cafile": _pki("etcd-client-ca.crt"),
        "etcd-certfile": _pki("etcd-client.crt"),
        "etcd-keyfile": _pki("etcd-client.key"),
        "etcd-servers": ",".join(etcd.client_urls(spec)),
        "kubelet-client-certificate": _pki("apiserver.crt"),
        "kubelet-client-key": _pki("apiserver.key"),
        "kubelet-preferred-address-types": "InternalIP",
        "proxy-client-cert-file": _pki("aggregation-client.crt"),
        "proxy-client-key-file": _pki("aggregation-client.key"),
        "requestheader-allowed-names": FRONT_PROXY_CLIENT_CN,
        "requestheader-client-ca-file": _pki("aggregation-ca.crt"),
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": str(APISERVER_PORT),
        "service-account-issuer": spec.service_account_issuer,
        "service-account-jwks-uri": f"{spec.service_account_issuer.rstrip('/')}/openid/v1/jwks",
        "service-account-key-file": _pki("service-account.pub"),
        "service-account-signing-key-file": _pki("service-account.key"),
        "service-cluster-ip-range": spec.service_cidr,
        "tls-cert-file": _pki("apiserver.crt"),
        "tls-private-key-file": _pki("apiserver.key"),
    }


def kube_apiserver(spec: Spec) -> Object:
    return _pod(
        "kube-apiserver",
        ["kube-apiserver", *_flags(apiserver_flags(spec))],
        cpu="200m",
        liveness=_probe(
            APISERVER_PORT,
            "/livez",
            initialDelaySeconds=10,
            periodSeconds=10,
            timeoutSeconds=15,
            failureThreshold=8,
        ),
        extra={
            "readinessProbe": _probe(
                APISERVER_PORT, "/readyz", periodSeconds=1, timeoutSeconds=15, failureThreshold=3
            ),
            # etcd may still be forming its quorum on first boot; give the apiserver four
            # minutes before liveness failures restart it.
            "startupProbe": _probe(
                APISERVER_PORT,
                "/livez",
                initialDelaySeconds=10,
                periodSeconds=10,
                timeoutSeconds=15,
                failureThreshold=24,
            ),
        },
        env=[
            {
                "name": "POD_IP",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
            }
        ],
    )


def controller_manager_flags(spec: Spec) -> dict[str, str]:
    kubeconfig = _pki("controller-manager.conf")
    flags = {
        # Node pod CIDRs come from here: flannel reads them, cilium can use them too.
        "allocate-node-cidrs": "true",
        "authentication-kubeconfig": kubeconfig,
        "authorization-kubeconfig": kubeconfig,
        # Workers scrape metrics on 10257 (the controller security group allows it).
        "bind-address": "0.0.0.0",
        "cluster-cidr": spec.pod_cidr,
        "cluster-name": spec.cluster_name,
        "cluster-signing-cert-file": _pki("ca.crt"),
        "cluster-signing-key-file": _pki("ca.key"),
        "configure-cloud-routes": "false",
        # bootstrapsigner publishes cluster-info for token discovery; tokencleaner drops
        # expired bootstrap tokens.
        "controllers": "*,bootstrapsigner,tokencleaner",
        "kubeconfig": kubeconfig,
        "leader-elect": "true",
        "root-ca-file": _pki("ca.crt"),
        "service-account-private-key-file": _pki("service-account.key"),
        "service-cluster-ip-range": spec.service_cidr,
        "use-service-account-credentials": "true",
    }
    if spec.cloud_provider == "external":
        flags["cloud-provider"] = "external"
    return flags


def kube_controller_manager(spec: Spec) -> Object:
    return _pod(
        "kube-controller-manager",
        ["kube-controller-manager", *_flags(controller_manager_flags(spec))],
        cpu="150m",
        liveness=_probe(
            CONTROLLER_MANAGER_PORT,
            "/healthz",
            initialDelaySeconds=25,
            periodSeconds=10,
            timeoutSeconds=15,
            failureThreshold=8,
        ),
    )


def scheduler_flags(spec: Spec) -> dict[str, str]:
    kubeconfig = _pki("scheduler.conf")
    return {
        "authentication-kubeconfig": kubeconfig,
        "authorization-kubeconfig": kubeconfig,
        "bind-address": "0.0.0.0",
        "kubeconfig": kubeconfig,
        "leader-elect": "true",
    }


def kube_scheduler(spec: Spec) -> Object:
    return _pod(
        "kube-scheduler",
        ["kube-scheduler", *_flags(scheduler_flags(spec))],
        cpu="100m",
        liveness=_probe(
            SCHEDULER_PORT,
            "/livez",
            initialDelaySeconds=15,
            periodSeconds=10,
            timeoutSeconds=15,
            failureThreshold=8,
        ),
    )


def static_pods(spec: Spec) -> dict[str, Object]:
    """File name in ``/etc/kubernetes/manifests`` → Pod."""
    return {
        "kube-apiserver.yaml": kube_apiserver(spec),
        "kube-controller-manager.yaml": kube_controller_manager(spec),
        "kube-scheduler.yaml": kube_scheduler(spec),
    }
