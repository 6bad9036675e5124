"""Kubeconfigs as kubectl reads and uses them, against a TLS endpoint that plays the apiserver.

The endpoint listens on 127.0.0.1:6443 inside a network namespace the test creates, with the
generated apiserver certificate, and reports who the client proved to be. kubectl resolves the
cluster's API name through an ``/etc/hosts`` bound in its own mount namespace, so it checks the
server certificate against the real name in the kubeconfig, as it would against the NLB.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from squall import assets
from squall.spec import Spec
from squall.state import State

MakeSpec = Callable[..., Spec]

# Accepts a client certificate from the cluster CA when offered and answers every GET with
# what the client proved: its certificate subject and any bearer token.
FAKE_APISERVER = r"""
import http.server, json, ssl, sys
crt, key, ca = sys.argv[1:4]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        cert = self.connection.getpeercert() or {}
        subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
        body = json.dumps({
            "path": self.path,
            "subject": subject,
            "authorization": self.headers.get("Authorization"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_OPTIONAL
server = http.server.HTTPServer(("127.0.0.1", 6443), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""

WITH_HOSTS = """
set -e
mount --bind "$1" /etc/hosts
shift
exec "$@"
"""


@dataclass
class Endpoint:
    netns: str
    hosts: Path

    def kubectl(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "nsenter",
                f"--net={self.netns}",
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                WITH_HOSTS,
                "sh",
                str(self.hosts),
                "kubectl",
                f"--kubeconfig={kubeconfig}",
                "--request-timeout=5s",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ["PATH"], "HOME": str(self.hosts.parent)},
        )


@pytest.fixture
def built(make_spec: MakeSpec, state: State, tmp_path: Path) -> tuple[Spec, assets.Assets, Path]:
    spec = make_spec(cluster_name="gale", dns_zone="k8s.example.net")
    bundle = assets.build(spec, state)
    out = tmp_path / "bundle"
    for f in bundle.files:
        (out / f.path).parent.mkdir(parents=True, exist_ok=True)
        (out / f.path).write_bytes(f.content)
    (out / "bootstrap.conf").write_text(bundle.bootstrap_kubeconfig)
    return spec, bundle, out


@pytest.fixture
def endpoint(built: tuple[Spec, assets.Assets, Path], tmp_path: Path) -> Iterator[Endpoint]:
    _, _, out = built
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost gale.k8s.example.net\n")
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "120"])
    server = None
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while os.readlink(netns) == own:
            assert time.monotonic() < deadline, "network namespace did not appear"
            time.sleep(0.02)
        subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            [
                "nsenter",
                f"--net={netns}",
                "--",
                sys.executable,
                "-c",
                FAKE_APISERVER,
                str(out / "tls/k8s/apiserver.crt"),
                str(out / "tls/k8s/apiserver.key"),
                str(out / "tls/k8s/ca.crt"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        yield Endpoint(netns, hosts)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        holder.terminate()
        holder.wait()


def kubectl_local(*args: str) -> str:
    out = subprocess.run(["kubectl", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_admin_kubeconfig_as_kubectl_reads_it(built: tuple[Spec, assets.Assets, Path]) -> None:
    _, _, out = built
    conf = str(out / "auth/admin.conf")
    assert kubectl_local("--kubeconfig", conf, "config", "get-contexts", "-o", "name").split() == [
        "kubernetes-admin@gale"
    ]
    view = json.loads(kubectl_local("--kubeconfig", conf, "config", "view", "--raw", "-o", "json"))
    assert view["current-context"] == "kubernetes-admin@gale"
    assert view["clusters"][0]["cluster"]["server"] == "https://gale.k8s.example.net:6443"


@pytest.mark.parametrize(
    ("conf", "subject"),
    [
        (
            "auth/admin.conf",
            {"commonName": "kubernetes-admin", "organizationName": "system:masters"},
        ),
        ("auth/controller-manager.conf", {"commonName": "system:kube-controller-manager"}),
        ("auth/scheduler.conf", {"commonName": "system:kube-scheduler"}),
    ],
)
def test_component_kubeconfigs_authenticate_with_their_client_certificate(
    built: tuple[Spec, assets.Assets, Path],
    endpoint: Endpoint,
    conf: str,
    subject: dict[str, str],
) -> None:
    _, _, out = built
    got = endpoint.kubectl(out / conf, "get", "--raw", "/readyz")
    assert got.returncode == 0, got.stderr
    seen = json.loads(got.stdout)
    assert seen["subject"] == subject
    assert seen["authorization"] is None


def test_bootstrap_kubeconfig_presents_the_stored_token(
    built: tuple[Spec, assets.Assets, Path], endpoint: Endpoint, state: State
) -> None:
    _, _, out = built
    got = endpoint.kubectl(out / "bootstrap.conf", "get", "--raw", "/healthz")
    assert got.returncode == 0, got.stderr
    seen = json.loads(got.stdout)
    stored = (state.read("auth/bootstrap-token") or b"").decode().strip()
    assert seen["authorization"] == f"Bearer {stored}"
    assert seen["subject"] == {}


def test_kubectl_refuses_a_server_outside_the_certificate_names(
    built: tuple[Spec, assets.Assets, Path], endpoint: Endpoint, tmp_path: Path
) -> None:
    _, _, out = built
    config = yaml.safe_load((out / "auth/admin.conf").read_text())
    config["clusters"][0]["cluster"]["server"] = "https://localhost:6443"
    other = tmp_path / "other.conf"
    other.write_text(yaml.safe_dump(config))
    got = endpoint.kubectl(other, "get", "--raw", "/readyz")
    assert got.returncode != 0
    assert "certificate is valid for" in got.stderr


def test_kubeconfigs_embed_the_cluster_ca_and_are_deterministic(
    built: tuple[Spec, assets.Assets, Path], make_spec: MakeSpec, state: State
) -> None:
    spec, bundle, out = built
    for name in ("auth/admin.conf", "auth/controller-manager.conf", "auth/scheduler.conf"):
        ca = kubectl_local(
            "--kubeconfig",
            str(out / name),
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        )
        assert base64.b64decode(ca) == (out / "tls/k8s/ca.crt").read_bytes()
    again = assets.build(spec, state)
    assert again.admin_kubeconfig == bundle.admin_kubeconfig
    assert again.bootstrap_kubeconfig == bundle.bootstrap_kubeconfig
