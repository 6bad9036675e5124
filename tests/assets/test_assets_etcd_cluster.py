"""A real three-member etcd cluster formed from the generated certificates and environments.

Every member runs the Debian etcd binary in its own mount namespace, where its certificates
sit at the very paths ``etcd_env`` names and ``/etc/hosts`` maps each ``NAME-etcdI.ZONE`` to
``127.0.0.(I+1)``. All members share one network namespace that the test creates, so the
fixed ports 2379/2380 never collide with other tests. Only the listen addresses are changed:
``0.0.0.0`` would make the three members fight over one socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from squall.assets import tls
from squall.assets.etcd import etcd_env
from squall.spec import Spec, parse
from squall.state import State

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
MEMBERS = 3


# Runs inside a fresh mount namespace: put the member's files where etcd_env says they are.
# /etc/ssl/etcd does not exist on a test machine and the host's /etc stays untouched, so the
# tmpfs covers /etc/ssl and the directory is made inside it.
MEMBER_SETUP = """
set -e
mount -t tmpfs -o mode=0755 tmpfs /etc/ssl
mkdir -p /etc/ssl/etcd/etcd
cp "$1"/* /etc/ssl/etcd/etcd/
chmod 0600 /etc/ssl/etcd/etcd/*.key
mount -t tmpfs -o mode=0700 tmpfs /var/lib/etcd
mount --bind "$2" /etc/hosts
shift 2
exec "$@"
"""

HOSTS_ONLY = """
set -e
mount --bind "$1" /etc/hosts
shift
exec "$@"
"""


@dataclass
class Cluster:
    spec: Spec
    netns: str  # /proc/PID/ns/net of the namespace holder
    hosts: Path
    client_dir: Path
    members: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def etcdctl(
        self,
        *args: str,
        endpoint: int = 0,
        tls_dir: Path | None = None,
        cert: bool = True,
        timeout: int = 4,
    ) -> subprocess.CompletedProcess[str]:
        d = tls_dir or self.client_dir
        flags = [
            f"--endpoints=https://{self.spec.etcd_fqdn(endpoint)}:2379",
            f"--cacert={self.client_dir / 'etcd-client-ca.crt'}",
            f"--dial-timeout={min(timeout, 3)}s",
            f"--command-timeout={timeout}s",
        ]
        if cert:
            flags += [f"--cert={d / 'etcd-client.crt'}", f"--key={d / 'etcd-client.key'}"]
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
                HOSTS_ONLY,
                "sh",
                str(self.hosts),
                ETCDCTL,
                *flags,
                *args,
            ],
            env={"ETCDCTL_API": "3", "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def member_log(self, index: int) -> str:
        return self.logs[index].read_text()

    def log(self) -> str:
        return "\n".join(
            f"--- member {i}\n{p.read_text()[-3000:]}" for i, p in enumerate(self.logs)
        )


def _ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def _write(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
        (directory / name).chmod(0o600)
    return directory


def _member_files(bundle: dict[str, tuple[bytes, bool]]) -> dict[str, bytes]:
    # The controller layout: tls/etcd/server* and tls/etcd/peer* go to /etc/ssl/etcd/etcd/.
    return {
        path.removeprefix("tls/etcd/"): content
        for path, (content, _) in bundle.items()
        if path.startswith(("tls/etcd/server", "tls/etcd/peer"))
    }


def _client_files(bundle: dict[str, tuple[bytes, bool]]) -> dict[str, bytes]:
    return {
        path.removeprefix("tls/etcd/"): content
        for path, (content, _) in bundle.items()
        if path.startswith("tls/etcd/etcd-client")
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("etcd")
    spec = parse(
        {
            "cluster_name": "tempest",
            "dns_zone": "aws.example.com",
            "dns_zone_id": "Z3PAABBCFAKEC0",
            "ssh_authorized_key": _ssh_public_key(),
            "controller_count": MEMBERS,
        }
    )
    bundle = tls.bundle(tls.ensure(spec, State(root / "state")))
    hosts = root / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n"
        + "".join(f"127.0.0.{i + 1} tempest-etcd{i}.aws.example.com\n" for i in range(MEMBERS))
    )
    member_dir = _write(root / "member", _member_files(bundle))
    client_dir = _write(root / "client", _client_files(bundle))

    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "300"])
    members: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        _wait_for_netns(holder.pid)
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            # Without a preferred source, a connection to 127.0.0.X comes from 127.0.0.X, so
            # etcd's check that a peer's address matches its certificate names has a real
            # member address to look up, as on the controllers' private network.
            [
                "ip",
                "route",
                "replace",
                "local",
                "127.0.0.0/8",
                "dev",
                "lo",
                "table",
                "local",
                "scope",
                "host",
            ],
        ):
            subprocess.run(["nsenter", f"--net={netns}", "--", *cmd], check=True)

        for i in range(MEMBERS):
            env = etcd_env(spec, i)
            address = f"127.0.0.{i + 1}"
            env["ETCD_LISTEN_CLIENT_URLS"] = f"https://{address}:2379"
            env["ETCD_LISTEN_PEER_URLS"] = f"https://{address}:2380"
            env["ETCD_LISTEN_METRICS_URLS"] = f"http://{address}:2381"
            log = root / f"etcd{i}.log"
            logs.append(log)
            members.append(
                subprocess.Popen(
                    [
                        "nsenter",
                        f"--net={netns}",
                        "--",
                        "unshare",
                        "--mount",
                        "--propagation",
                        "private",
                        "--",
                        "sh",
                        "-c",
                        MEMBER_SETUP,
                        "sh",
                        str(member_dir),
                        str(hosts),
                        ETCD,
                    ],
                    env={"PATH": os.environ["PATH"], **env},
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        c = Cluster(spec, netns, hosts, client_dir, members, logs)
        _wait_healthy(c)
        yield c
    finally:
        for p in members:
            p.terminate()
        for p in members:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        holder.terminate()
        holder.wait()


def _wait_for_netns(pid: int) -> None:
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise AssertionError("the network namespace holder did not start")


def _wait_healthy(c: Cluster) -> None:
    deadline = time.monotonic() + 20
    last = None
    while time.monotonic() < deadline:
        for p in c.members:
            if p.poll() is not None:
                raise AssertionError(f"an etcd member exited early:\n{c.log()}")
        last = c.etcdctl("endpoint", "health", "--cluster")
        if last.returncode == 0 and (last.stdout + last.stderr).count("is healthy") == MEMBERS:
            return
        time.sleep(0.3)
    raise AssertionError(f"etcd did not become healthy: {last}\n{c.log()}")


def test_three_members_form_one_cluster_under_their_fqdns(cluster: Cluster) -> None:
    out = cluster.etcdctl("member", "list", "--write-out=simple")
    assert out.returncode == 0, out.stderr
    rows = sorted(
        (line.split(", ") for line in out.stdout.strip().splitlines()), key=lambda r: r[2]
    )
    assert [(r[2], r[3], r[4]) for r in rows] == [
        (
            f"etcd{i}",
            f"https://tempest-etcd{i}.aws.example.com:2380",
            f"https://tempest-etcd{i}.aws.example.com:2379",
        )
        for i in range(MEMBERS)
    ]
    assert all(r[1] == "started" for r in rows)


def test_write_through_one_member_read_through_another(cluster: Cluster) -> None:
    put = cluster.etcdctl("put", "/squall/probe", "written-via-etcd0", endpoint=0)
    assert put.returncode == 0, put.stderr
    for endpoint in (1, 2):
        got = cluster.etcdctl("get", "/squall/probe", "--print-value-only", endpoint=endpoint)
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == "written-via-etcd0"


def test_client_without_certificate_is_refused(cluster: Cluster) -> None:
    out = cluster.etcdctl("put", "/squall/anonymous", "x", endpoint=1, cert=False, timeout=1)
    assert out.returncode != 0
    assert "tls: client didn't provide a certificate" in cluster.member_log(1)
    check = cluster.etcdctl("get", "/squall/anonymous", "--print-value-only")
    assert check.returncode == 0 and check.stdout == "", check


def test_client_certificate_from_another_ca_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    stranger = tls.bundle(tls.ensure(cluster.spec, State(tmp_path / "other-state")))
    other_dir = _write(tmp_path / "other-client", _client_files(stranger))
    out = cluster.etcdctl("put", "/squall/stranger", "x", endpoint=2, tls_dir=other_dir, timeout=1)
    assert out.returncode != 0
    assert "certificate signed by unknown authority" in cluster.member_log(2)
    check = cluster.etcdctl("get", "/squall/stranger", "--print-value-only")
    assert check.returncode == 0 and check.stdout == "", check
