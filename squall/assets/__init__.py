"""The Kubernetes distribution, cloud-agnostic: TLS, kubeconfigs, static pods, manifests.

``build(spec, state)`` returns everything the controllers need as :class:`Assets`. Secrets are
generated on the first run, kept in the state directory and reused on every later run, so
building twice gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from squall.assets.hostkeys import HostKey
from squall.spec import Spec
from squall.state import State


@dataclass(frozen=True)
class AssetFile:
    """One file of the controller asset bundle, addressed by its path in the render layout."""

    path: str  # relative, e.g. "tls/k8s/ca.key" or "manifests/coredns/deployment.yaml"
    content: bytes
    secret: bool  # private keys and credentials: written 0600, never printed


@dataclass(frozen=True)
class Assets:
    files: tuple[AssetFile, ...]
    ca_cert: str  # PEM of the Kubernetes CA
    bootstrap_kubeconfig: (
        str  # the kubelet's bootstrap-token kubeconfig: the one secret in user data
    )
    admin_kubeconfig: str
    service_account_public_key: str  # PEM
    # Each controller's SSH host key, by index: installed by its node config, pinned by squall.
    host_keys: tuple[HostKey, ...]

    def file(self, path: str) -> AssetFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)


def to_yaml(obj: Any) -> bytes:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).encode()


def to_yaml_documents(objects: list[dict[str, Any]]) -> bytes:
    """A multi-document YAML file, one document per object, in the given order."""
    return yaml.safe_dump_all(
        objects, sort_keys=True, default_flow_style=False, explicit_start=True
    ).encode()


def manifest_files(manifests: dict[str, list[dict[str, Any]]]) -> list[AssetFile]:
    """Cluster manifests (path under ``manifests/`` → objects) as bundle files."""
    out = []
    for rel, objects in sorted(manifests.items()):
        path = PurePosixPath(rel)
        if path.is_absolute() or ".." in path.parts or path.suffix != ".yaml":
            raise ValueError(f"manifest path {rel!r} must be relative and end in .yaml")
        out.append(
            AssetFile(
                path=f"manifests/{path}",
                content=to_yaml_documents(objects),
                # The bootstrap token's Secret travels in these files.
                secret=any(o.get("kind") == "Secret" for o in objects),
            )
        )
    return out


def build(spec: Spec, state: State) -> Assets:
    """The controller asset bundle and the values other layers need from it."""
    from squall.assets import hostkeys, kubeconfig, static_pods, tls, token

    # Another part of the tree provides the cluster manifests; importing it here keeps the
    # rest of this package usable on its own.
    from squall.assets.manifests import cluster_manifests

    bootstrap_token = token.load_or_create(state)
    pki = tls.ensure(spec, state)
    ca_pem = pki.ca.cert_pem

    admin = kubeconfig.client_cert(spec, ca_pem, "kubernetes-admin", pki.admin)
    component_configs = {
        "auth/admin.conf": admin,
        "auth/controller-manager.conf": kubeconfig.client_cert(
            spec, ca_pem, "system:kube-controller-manager", pki.controller_manager
        ),
        "auth/scheduler.conf": kubeconfig.client_cert(
            spec, ca_pem, "system:kube-scheduler", pki.scheduler
        ),
    }

    files = [AssetFile(p, content, secret) for p, (content, secret) in tls.bundle(pki).items()]
    files += [AssetFile(p, kubeconfig.dump(c).encode(), True) for p, c in component_configs.items()]
    files.append(
        AssetFile(
            f"auth/{static_pods.AUTHENTICATION_CONFIG}",
            to_yaml(static_pods.authentication_config()),
            False,
        )
    )
    files += [
        AssetFile(f"static-manifests/{name}", to_yaml(pod), False)
        for name, pod in static_pods.static_pods(spec).items()
    ]
    files += manifest_files(cluster_manifests(spec, bootstrap_token))
    files.sort(key=lambda f: f.path)
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise ValueError("two asset files share a path")

    return Assets(
        files=tuple(files),
        ca_cert=ca_pem.decode(),
        bootstrap_kubeconfig=kubeconfig.dump(kubeconfig.bootstrap(spec, ca_pem, bootstrap_token)),
        admin_kubeconfig=kubeconfig.dump(admin),
        service_account_public_key=pki.service_account_pub.decode(),
        host_keys=tuple(
            hostkeys.controller_host_key(state, i) for i in range(spec.controller_count)
        ),
    )
