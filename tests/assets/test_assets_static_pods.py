"""Control-plane static pods: valid for Kubernetes 1.36, and wired to files the bundle provides."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from squall import assets
from squall.spec import Spec
from squall.state import State

MakeSpec = Callable[..., Spec]
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBE_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"

# Where the controller layout puts each bundle path (the contract of the asset bundle).
LAYOUT = (
    (re.compile(r"^tls/etcd/(server|peer)"), "/etc/ssl/etcd/etcd/"),
    (re.compile(r"^tls/etcd/etcd-client"), "/etc/kubernetes/pki/"),
    (re.compile(r"^tls/k8s/"), "/etc/kubernetes/pki/"),
    (re.compile(r"^auth/"), "/etc/kubernetes/pki/"),
    (re.compile(r"^static-manifests/"), "/etc/kubernetes/manifests/"),
)


def laid_out(bundle: assets.Assets) -> set[str]:
    """Absolute paths the bundle's files get on a controller."""
    out = set()
    for f in bundle.files:
        for pattern, directory in LAYOUT:
            if pattern.match(f.path):
                out.add(directory + f.path.rsplit("/", 1)[1])
    return out


def pods(bundle: assets.Assets) -> dict[str, dict]:
    return {
        name: yaml.safe_load(bundle.file(f"static-manifests/{name}.yaml").content)
        for name in COMPONENTS
    }


def flags(pod: dict) -> dict[str, str]:
    command = pod["spec"]["containers"][0]["command"]
    out = {}
    for arg in command[1:]:
        key, _, value = arg.removeprefix("--").partition("=")
        assert key not in out, f"flag {key} given twice"
        out[key] = value
    return out


@pytest.fixture
def bundle(make_spec: MakeSpec, state: State) -> assets.Assets:
    return assets.build(make_spec(controller_count=3), state)


def test_static_pods_validate_against_kubernetes_1_36(
    bundle: assets.Assets, tmp_path: Path
) -> None:
    paths = []
    for name in COMPONENTS:
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(bundle.file(f"static-manifests/{name}.yaml").content)
        paths.append(str(path))
    out = subprocess.run(
        [str(KUBE_VALIDATE), "--strict", "-k", "1.36.0", *paths], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("INFO") == len(COMPONENTS), out.stdout


def test_every_file_a_static_pod_names_is_laid_out_by_the_bundle(bundle: assets.Assets) -> None:
    present = laid_out(bundle)
    for name, pod in pods(bundle).items():
        referenced = [v for v in flags(pod).values() if v.startswith("/etc/")]
        assert referenced, name
        missing = [p for p in referenced if p not in present]
        assert not missing, f"{name} names files the bundle does not provide: {missing}"
        mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert all(any(p.startswith(m + "/") for m in mounts) for p in referenced), name


def test_control_plane_shape(bundle: assets.Assets) -> None:
    for name, pod in pods(bundle).items():
        spec = pod["spec"]
        assert pod["metadata"]["namespace"] == "kube-system"
        assert spec["hostNetwork"] is True
        assert spec["priorityClassName"] == "system-node-critical"
        container = spec["containers"][0]
        assert re.fullmatch(rf"registry\.k8s\.io/{name}:v1\.36\.\d+", container["image"])
        assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_apiserver_flags(bundle: assets.Assets) -> None:
    f = flags(pods(bundle)["kube-apiserver"])
    assert "anonymous-auth" not in f
    assert f["authentication-config"] == "/etc/kubernetes/pki/authentication-config.yaml"
    assert f["authorization-mode"] == "Node,RBAC"
    assert "NodeRestriction" in f["enable-admission-plugins"].split(",")
    assert f["enable-bootstrap-token-auth"] == "true"
    assert f["secure-port"] == "6443"
    assert f["service-cluster-ip-range"] == "10.3.0.0/16"
    assert f["etcd-servers"].split(",") == [
        f"https://tempest-etcd{i}.aws.example.com:2379" for i in range(3)
    ]
    assert f["kubelet-client-certificate"] == "/etc/kubernetes/pki/apiserver.crt"
    assert f["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"


def test_anonymous_access_only_for_health_paths(bundle: assets.Assets) -> None:
    config = yaml.safe_load(bundle.file("auth/authentication-config.yaml").content)
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert config["kind"] == "AuthenticationConfiguration"
    assert config["anonymous"]["enabled"] is True
    assert sorted(c["path"] for c in config["anonymous"]["conditions"]) == [
        "/healthz",
        "/livez",
        "/readyz",
    ]


def test_requestheader_names_match_the_aggregation_client_certificate(
    bundle: assets.Assets,
) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    f = flags(pods(bundle)["kube-apiserver"])
    cert = x509.load_pem_x509_certificate(bundle.file("tls/k8s/aggregation-client.crt").content)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert f["requestheader-allowed-names"] == cn


@pytest.mark.parametrize("provider", [None, "external"])
def test_controller_manager_flags(make_spec: MakeSpec, state: State, provider: str | None) -> None:
    overrides = {"cloud_provider": provider} if provider else {}
    bundle = assets.build(make_spec(pod_cidr="10.64.0.0/14", **overrides), state)
    f = flags(pods(bundle)["kube-controller-manager"])
    assert f["allocate-node-cidrs"] == "true"
    assert f["cluster-cidr"] == "10.64.0.0/14"
    assert f["cluster-signing-cert-file"] == "/etc/kubernetes/pki/ca.crt"
    assert f["cluster-signing-key-file"] == "/etc/kubernetes/pki/ca.key"
    assert f["service-account-private-key-file"] == "/etc/kubernetes/pki/service-account.key"
    assert f.get("cloud-provider") == provider
