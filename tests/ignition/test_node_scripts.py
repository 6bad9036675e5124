"""The programs a node runs at boot, run here for real: bash, curl, sed, base64, openssl."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from squall import ignition
from squall.assets.etcd import etcd_env
from squall.bootstrap.deliver import BOOTSTRAP_TIMEOUT
from squall.ignition.nodes import BOOTSTRAP_UNIT_TIMEOUT

from .ignition_doc import Cluster, NodeDoc, exec_args, flag, unit_values

TOKEN = "imds-session-token-1"
METADATA = {
    "placement/availability-zone": "us-east-1b",
    "instance-id": "i-0123456789abcdef0",
    "local-hostname": "i-0123456789abcdef0.ec2.internal",
}


class FakeImds(BaseHTTPRequestHandler):
    """An IMDSv2-only metadata service: no session token, no answer."""

    requests: list[str]

    def do_PUT(self) -> None:
        self.requests.append(f"PUT {self.path}")
        if self.path == "/latest/api/token" and self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self._send(200, TOKEN)
        else:
            self._send(400, "bad token request")

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self._send(401, "")
            return
        key = self.path.removeprefix("/latest/meta-data/")
        if key in METADATA:
            self._send(200, METADATA[key])
        else:
            self._send(404, "")

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (FakeImds,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def metadata_script(cluster: Cluster, os_name: str) -> bytes:
    spec, bundle = cluster(os=os_name)
    node = NodeDoc.of(ignition.worker(spec, None, bundle).to_json())
    unit = node.unit("node-metadata.service")["contents"]
    (command,) = unit_values(unit, "ExecStart")
    interpreter, path = shlex.split(command)
    assert interpreter == "/bin/bash"
    return node.file(path)


@pytest.mark.parametrize("os_name", ["fedora-coreos", "flatcar"])
def test_node_metadata_reads_imdsv2(
    cluster: Cluster, tmp_path: Path, imds: tuple[str, list[str]], os_name: str
) -> None:
    url, seen = imds
    script = tmp_path / "node-metadata"
    script.write_bytes(metadata_script(cluster, os_name))
    out = tmp_path / "run" / "metadata" / "squall"
    env = {**os.environ, "IMDS_ENDPOINT": url, "METADATA_FILE": str(out)}
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines() == [
        "AWS_AVAILABILITY_ZONE=us-east-1b",
        "AWS_INSTANCE_ID=i-0123456789abcdef0",
        "AWS_HOSTNAME=i-0123456789abcdef0.ec2.internal",
    ]
    # The session token comes first; every read carries it (the fake refuses any other).
    assert seen[0] == "PUT /latest/api/token"
    assert all(r.startswith("GET /latest/meta-data/") for r in seen[1:])


def test_node_metadata_fails_without_a_token_service(
    cluster: Cluster, tmp_path: Path, imds: tuple[str, list[str]]
) -> None:
    url, _ = imds
    script = tmp_path / "node-metadata"
    # A wrong token path stands in for an IMDSv1-only service: the script must give up.
    text = metadata_script(cluster, "flatcar").replace(b"/latest/api/token", b"/latest/nope")
    script.write_bytes(text.replace(b"--retry 60", b"--retry 0"))
    out = tmp_path / "metadata"
    env = {**os.environ, "IMDS_ENDPOINT": url, "METADATA_FILE": str(out)}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert not out.exists()


def test_kubelet_extracts_the_ca_from_the_bootstrap_kubeconfig(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec, bundle = cluster()
    node = NodeDoc.of(ignition.worker(spec, None, bundle).to_json())
    unit = node.unit("kubelet.service")["contents"]
    (command,) = [c for c in unit_values(unit, "ExecStartPre") if "ca.crt" in c]
    # Run the unit's exact command in a private mount namespace whose /etc is a scratch copy,
    # so the host's /etc is never touched.
    etc = tmp_path / "etc"
    (etc / "kubernetes").mkdir(parents=True)
    (etc / "kubernetes" / "kubeconfig").write_bytes(node.file("/etc/kubernetes/kubeconfig"))
    argv = shlex.join(shlex.split(command))
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount --bind "$0" /etc && exec {argv}', str(etc)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    ca = etc / "kubernetes" / "ca.crt"
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(ca)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert subject.returncode == 0, subject.stderr
    assert "kubernetes-ca" in subject.stdout
    assert ca.read_text().strip() == bundle.ca_cert.strip()


def write_bundle(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o644)


def run_layout(
    script: bytes, root: Path, *, stubs: Path | None = None
) -> subprocess.CompletedProcess[str]:
    path = root.parent / "layout"
    path.write_bytes(script)
    env = {**os.environ, "LAYOUT_ROOT": str(root)}
    if stubs is not None:
        env["PATH"] = f"{stubs}:{env['PATH']}"
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_places_the_bundle_per_the_contract(cluster: Cluster, tmp_path: Path) -> None:
    spec, bundle = cluster(controller_count=3)
    node = NodeDoc.of(ignition.controller(spec, 1, bundle).to_json())
    root = tmp_path / "root"
    files = {f.path: f.content for f in bundle.files}
    write_bundle(root / "home/core/assets", files)
    (root / "var/lib/etcd").mkdir(parents=True)

    result = run_layout(node.file("/opt/bootstrap/layout"), root)
    assert result.returncode == 0, result.stderr

    expected: dict[str, Path] = {}
    for rel in files:
        top, _, rest = rel.partition("/")
        name = rel.rsplit("/", 1)[-1]
        if rel.startswith(("tls/etcd/server", "tls/etcd/peer")):
            expected[rel] = root / "etc/ssl/etcd/etcd" / name
        elif top in ("tls", "auth"):
            expected[rel] = root / "etc/kubernetes/pki" / name
        elif top == "static-manifests":
            expected[rel] = root / "etc/kubernetes/manifests" / name
        else:
            assert top == "manifests", rel
            expected[rel] = root / "opt/bootstrap/assets/manifests" / rest
    for rel, target in expected.items():
        assert target.read_bytes() == files[rel], rel
        if rel.endswith(".key") or rel.endswith(".conf"):
            assert mode(target) == 0o600, rel
        if rel.startswith("manifests/"):
            # The cluster manifests hold the bootstrap token.
            assert mode(target) & 0o077 == 0, rel
    assert not (root / "home/core/assets").exists()

    # etcd's own TLS files belong to the etcd user where one exists (as on this host).
    etcd_uid = int(subprocess.check_output(["id", "-u", "etcd"]).decode())
    for path in (root / "etc/ssl/etcd/etcd").iterdir():
        assert path.stat().st_uid == etcd_uid
    assert (root / "var/lib/etcd").stat().st_uid == etcd_uid
    # The env file squall writes points at files the layout put in place.
    tls_paths = [v for k, v in etcd_env(spec, 1).items() if k.endswith("_FILE")]
    assert tls_paths
    for path in tls_paths:
        assert (root / path.lstrip("/")).is_file(), path


def selinux_stubs(d: Path, *, enabled: bool) -> Path:
    """``selinuxenabled`` answering as told; ``restorecon`` and ``chcon`` only record calls."""
    d.mkdir()
    scripts = {
        "selinuxenabled": f"#!/bin/sh\nexit {0 if enabled else 1}\n",
        "restorecon": '#!/bin/sh\necho "$*" >>"$(dirname "$0")/relabel.log"\n',
        "chcon": '#!/bin/sh\necho "chcon $*" >>"$(dirname "$0")/relabel.log"\n',
    }
    for name, text in scripts.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return d


def test_layout_relabels_only_where_selinux_is_enabled(cluster: Cluster, tmp_path: Path) -> None:
    # One script for both OSes: whether it relabels depends on the node, decided when it runs.
    layouts = set()
    for os_name in ("fedora-coreos", "flatcar"):
        spec, bundle = cluster(os=os_name)
        node = NodeDoc.of(ignition.controller(spec, 0, bundle).to_json())
        layouts.add(node.file("/opt/bootstrap/layout"))
    (script,) = layouts
    files = {f.path: f.content for f in bundle.files}
    for enabled in (True, False):
        root = tmp_path / f"selinux-{enabled}" / "root"
        write_bundle(root / "home/core/assets", files)
        stubs = selinux_stubs(root.parent / "stubs", enabled=enabled)
        result = run_layout(script, root, stubs=stubs)
        assert result.returncode == 0, result.stderr
        log = stubs / "relabel.log"
        if not enabled:
            assert not log.exists()
            continue
        assert log.read_text().splitlines() == [
            f"-R {root}/etc/ssl/etcd {root}/etc/kubernetes {root}/opt/bootstrap",
            f"chcon -R -u system_u -t container_file_t {root}/etc/kubernetes/pki",
        ]


def test_layout_runs_again_with_a_new_bundle(cluster: Cluster, tmp_path: Path) -> None:
    spec, bundle = cluster()
    script = NodeDoc.of(ignition.controller(spec, 0, bundle).to_json()).file(
        "/opt/bootstrap/layout"
    )
    root = tmp_path / "root"
    files = {f.path: f.content for f in bundle.files}
    write_bundle(root / "home/core/assets", files)
    assert run_layout(script, root).returncode == 0
    files["static-manifests/kube-apiserver.yaml"] = b"# replaced\n"
    write_bundle(root / "home/core/assets", files)
    again = run_layout(script, root)
    assert again.returncode == 0, again.stderr
    assert (root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_bytes() == b"# replaced\n"


def test_layout_refuses_an_incomplete_bundle(cluster: Cluster, tmp_path: Path) -> None:
    spec, bundle = cluster()
    script = NodeDoc.of(ignition.controller(spec, 0, bundle).to_json()).file(
        "/opt/bootstrap/layout"
    )
    root = tmp_path / "root"
    write_bundle(
        root / "home/core/assets",
        {f.path: f.content for f in bundle.files if not f.path.startswith("tls/etcd/")},
    )
    result = run_layout(script, root)
    assert result.returncode != 0
    assert "nothing for" in result.stderr
    assert not (root / "etc/kubernetes/manifests").exists() or not any(
        (root / "etc/kubernetes/manifests").iterdir()
    )
    missing = run_layout(script, tmp_path / "empty-root")
    assert missing.returncode != 0 and "no asset bundle" in missing.stderr


# The bootstrap unit's script, run with stand-ins for the two programs it calls: kubectl (in
# the kubelet image on a node) and sleep, so the production limits run without waiting.
KUBECTL_STUB = r"""#!/bin/bash
printf '%s\n' "$*" >>"$STUBS/kubectl.log"
case " $* " in
  *" get --raw=/readyz "*) step=ready ;;
  *" apply "*) step=apply ;;
  *) echo "stub kubectl: unexpected call: $*" >&2; exit 3 ;;
esac
n=$(($(cat "$STUBS/$step.calls" 2>/dev/null || echo 0) + 1))
echo "$n" >"$STUBS/$step.calls"
fails=$(cat "$STUBS/$step.fails")
if ((fails < 0 || n <= fails)); then
  echo "error: $step refused ($n)" >&2
  exit 1
fi
"""
SLEEP_STUB = r"""#!/bin/bash
printf '%s\n' "$*" >>"$STUBS/sleep.log"
"""


def bootstrap_script(cluster: Cluster) -> tuple[str, bytes]:
    """The API name and the script the bootstrap unit runs, both read from the user data."""
    spec, bundle = cluster()
    node = NodeDoc(ignition.unpack(ignition.controller(spec, 0, bundle).to_json()))
    args = exec_args(node.unit("bootstrap.service")["contents"])
    (entrypoint,) = flag(args, "entrypoint")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in flag(args, "volume")}
    (env,) = flag(args, "env")
    assert env == f"API_SERVER_NAME={spec.api_fqdn}"
    return spec.api_fqdn, node.file(mounts[entrypoint])


@dataclass
class ApplyRun:
    result: subprocess.CompletedProcess[str]
    kubectl: list[str]
    sleeps: list[str]


def run_apply(cluster: Cluster, tmp_path: Path, *, ready_fails: int, apply_fails: int) -> ApplyRun:
    """Run the script; a step fails its first N tries (-1: every try), then succeeds."""
    api_name, script = bootstrap_script(cluster)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in (("kubectl", KUBECTL_STUB), ("sleep", SLEEP_STUB)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    (stubs / "ready.fails").write_text(f"{ready_fails}\n")
    (stubs / "apply.fails").write_text(f"{apply_fails}\n")
    (tmp_path / "apply").write_bytes(script)
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "STUBS": str(stubs),
        "API_SERVER_NAME": api_name,
    }
    result = subprocess.run(
        ["bash", str(tmp_path / "apply")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    def lines(name: str) -> list[str]:
        path = stubs / name
        return path.read_text().splitlines() if path.exists() else []

    calls = lines("kubectl.log")
    # Every call goes to the local kube-apiserver as admin and checks the cluster's API name.
    for call in calls:
        assert call.startswith(
            "--kubeconfig=/etc/kubernetes/pki/admin.conf --server=https://127.0.0.1:6443 "
            f"--tls-server-name={api_name} "
        ), call
    return ApplyRun(result, calls, lines("sleep.log"))


def steps(calls: list[str]) -> list[str]:
    return ["apply" if " apply " in c else "ready" for c in calls]


def test_bootstrap_script_retries_until_the_manifests_apply(
    cluster: Cluster, tmp_path: Path
) -> None:
    run = run_apply(cluster, tmp_path, ready_fails=2, apply_fails=3)
    assert run.result.returncode == 0, run.result.stderr
    assert steps(run.kubectl) == ["ready"] * 3 + ["apply"] * 4
    (applied,) = {c for c in run.kubectl if " apply " in c}
    assert "--server-side" in applied.split()
    assert "--filename=/assets/manifests" in applied.split()
    assert run.sleeps == ["5"] * 5
    assert "error: apply refused (3)" in run.result.stderr


def test_bootstrap_script_gives_up_before_squall_does(cluster: Cluster, tmp_path: Path) -> None:
    run = run_apply(cluster, tmp_path, ready_fails=1, apply_fails=-1)
    assert run.result.returncode != 0
    # One budget for both steps: the failed readiness check counts too.
    assert steps(run.kubectl) == ["ready"] * 2 + ["apply"] * 119
    assert run.result.stderr.splitlines()[-1] == (
        "bootstrap: gave up applying the cluster manifests after 120 failed tries"
    )
    # The retries fit in the unit's limit with a minute to spare for pulling the image, and
    # the unit's limit ends before squall stops waiting: squall sees the unit fail, and why.
    waited = sum(float(s) for s in run.sleeps)
    assert waited + 60 <= BOOTSTRAP_UNIT_TIMEOUT < BOOTSTRAP_TIMEOUT


def test_bootstrap_script_gives_up_on_an_apiserver_that_never_answers(
    cluster: Cluster, tmp_path: Path
) -> None:
    run = run_apply(cluster, tmp_path, ready_fails=-1, apply_fails=0)
    assert run.result.returncode != 0
    assert steps(run.kubectl) == ["ready"] * 120
    assert "gave up waiting for kube-apiserver" in run.result.stderr
