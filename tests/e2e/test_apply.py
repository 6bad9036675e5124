"""``squall apply`` from an empty AWS account to an admin kubeconfig, bootstrap included.

Everything runs inside a network namespace this test creates, which has only a loopback
interface: the emulated AWS, squall, kubectl, and the hosts squall talks to. The controller's
public IPv4 address, which the emulated AWS made up, becomes an address of that namespace, and
a real sshd answers there as controller-0, built from the instance's own user data. The
cluster's API name resolves, through the namespace's private ``/etc/hosts``, to a stand-in
kube-apiserver that serves with the cluster's certificate. What each peer saw is then checked:
the files on the controller, the bootstrap it was asked to start, the requests the stand-in
served, and the kubeconfig squall handed over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from squall import assets as assets_mod
from squall import ignition
from squall import spec as spec_mod
from squall.state import State, default_root
from tests.bootstrap.conftest import ignition_file, make_client_key
from tests.bootstrap.hosts import Host
from tests.bootstrap.test_deliver import destination, remote_stat
from tests.e2e.controller import start_controller, sudo_calls
from tests.e2e.netns import Namespace

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="creates network and mount namespaces, which needs root"
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NAME = "gale"
ZONE = "aws.example.com"
ZONE_ID = "Z3PAABBCFAKEC0"
REGION = "us-east-1"
# Where the cluster's API name points inside the namespace; the stand-in listens there.
API_ADDRESS = "127.0.0.1"


@dataclass
class World:
    ns: Namespace
    env: dict[str, str]  # for squall, boto3 and kubectl inside: the emulated AWS and nothing else

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.ns.run(argv, env=self.env, check=check, timeout=timeout)

    def squall(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "squall", *args, check=check)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ns = Namespace(tmp_path / "ns")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for k in ("SSH_AUTH_SOCK", "KUBECONFIG"):
            env.pop(k, None)
        home = tmp_path / "home"
        home.mkdir()
        env.update(
            HOME=str(home),
            PYTHONPATH=str(REPO),
            AWS_CONFIG_FILE="/nonexistent",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
            AWS_EC2_METADATA_DISABLED="true",
            NO_COLOR="1",
            COLUMNS="200",
        )
        emulator = ns.spawn(
            [
                *(sys.executable, "-m", "squall.emulator", "--watch-stdin"),
                *("--region", REGION, "--zone", f"{ZONE}={ZONE_ID}"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert emulator.stdout is not None
        ready, _, _ = select.select([emulator.stdout], [], [], 60)
        line = emulator.stdout.readline() if ready else b""
        assert line, "the emulated AWS did not start inside the namespace"
        info = json.loads(line)
        assert info["endpoint"].startswith("http://127.0.0.1:"), info
        env.update(
            AWS_ENDPOINT_URL=info["endpoint"],
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN="testing",
        )
        yield World(ns, env)
    finally:
        ns.close()


def cluster_file(directory: Path, public_key: str, key_file: str) -> Path:
    path = directory / f"{NAME}.toml"
    path.write_text(
        "\n".join(
            [
                f"cluster_name = {json.dumps(NAME)}",
                f"region = {json.dumps(REGION)}",
                f"dns_zone = {json.dumps(ZONE)}",
                f"dns_zone_id = {json.dumps(ZONE_ID)}",
                f"ssh_authorized_key = {json.dumps(public_key)}",
                # Relative: squall reads it beside the cluster file, wherever it is run from.
                f"ssh_private_key_file = {json.dumps(key_file)}",
                "controller_count = 1",
                "worker_count = 1",
                "",
            ]
        )
    )
    return path


def start_standin(world: World, state: State, controller: Host, log: Path) -> None:
    proc = world.ns.spawn(
        [
            *(sys.executable, str(HERE / "standin.py")),
            *("--cert", str(state.path("tls/k8s/apiserver.crt"))),
            *("--key", str(state.path("tls/k8s/apiserver.key"))),
            *("--client-ca", str(state.path("tls/k8s/ca.crt"))),
            *("--address", API_ADDRESS),
            *("--systemctl-log", str(controller.dir / "systemctl.log")),
            *("--log", str(log)),
            *("--controllers", "1", "--workers", "1"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=world.env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready and proc.stdout.readline() == b"listening\n", "the stand-in did not start"


def served(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def expected_mode(path: str, secret: bool) -> int:
    """Secrets, keys, kubeconfigs and the cluster manifests (the bootstrap token is in there)
    are root's alone; certificates and the static pods are readable by all."""
    private = secret or path.endswith((".key", ".conf")) or path.startswith("/opt/bootstrap/")
    return 0o600 if private else 0o644


def laid_out_inodes(host: Host, paths: list[str]) -> list[str]:
    return host.exec(["stat", "-c", "%n %i %Y", *paths]).stdout.splitlines()


def test_apply_bootstraps_over_ssh_and_hands_over_a_kubeconfig(
    world: World, tmp_path: Path
) -> None:
    client = make_client_key(tmp_path, f"id_{NAME}")
    config = cluster_file(tmp_path, client.public, client.path.name)

    # AWS alone first: the controller exists, with a public address and its node config.
    world.squall("apply", str(config), "--yes", "--no-bootstrap")
    found = json.loads(world.run(sys.executable, str(HERE / "readback.py"), NAME, "0").stdout)
    address, user_data = found["public_ip"], found["user_data"]
    assert address, found["instance_id"]

    # The made-up public address becomes the namespace's own; still nothing routes anywhere else.
    world.ns.add_address(address)
    assert world.ns.interfaces() == ["lo"]
    assert all(re.search(r"\bdev lo\b", r) for r in world.ns.routes()), world.ns.routes()

    # controller-0 as the instance would boot: host key, core's keys and layout from user data.
    core = next(u for u in ignition.unpack(user_data)["passwd"]["users"] if u["name"] == "core")
    assert core["sshAuthorizedKeys"] == [client.public]
    host = start_controller(
        world.ns,
        tmp_path / "controller-0",
        address=address,
        host_key_pem=ignition_file(user_data, "/etc/ssh/ssh_host_ed25519_key"),
        authorized_keys=core["sshAuthorizedKeys"],
        layout_script=ignition_file(user_data, "/opt/bootstrap/layout").decode(),
    )
    spec = spec_mod.load(config)
    state = State(default_root(config, NAME))
    api_log = tmp_path / "apiserver.log"
    start_standin(world, state, host, api_log)
    world.ns.map_name(spec.api_fqdn, API_ADDRESS)

    # The whole apply: AWS has nothing to do, then the bootstrap runs to the end.
    done = world.squall("apply", str(config), "--yes")
    assert "No changes: AWS matches the cluster file." in done.stdout, done.stdout
    assert f"Cluster {NAME} is ready." in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    # sshd let in the key squall offered from ssh_private_key_file: the cluster file's key.
    assert f"Accepted publickey for core from {address}" in host.log()
    assert client.fingerprint in host.log()

    # Every file of the bundle is where the layout contract puts it, with its owner and mode.
    bundle = assets_mod.build(spec, state)
    want = {destination(f.path): f for f in bundle.files}
    got = remote_stat(host, sorted(want))
    for path, f in want.items():
        user, group, mode, digest = got[path]
        assert digest == hashlib.sha256(f.content).hexdigest(), path
        owner = ("etcd", "etcd") if path.startswith("/etc/ssl/etcd/") else ("root", "root")
        assert (user, group) == owner, path
        assert mode == expected_mode(path, f.secret), f"{path} is {mode:o}"
    assert host.exec(["test", "-e", "/home/core/assets"], check=False).returncode == 1

    # Privileged steps went through 'sudo -n'; the bootstrap was started once, on controller-0.
    assert sudo_calls(host) == [
        "-n rm -rf /home/core/assets",
        "-n /opt/bootstrap/layout",
        "-n systemctl start bootstrap",
    ]
    assert host.systemctl_calls() == ["start bootstrap"]

    # squall asked the API, as the admin, only after the bootstrap had started, and got Ready.
    requests = served(api_log)
    assert [r["path"] for r in requests] == ["/readyz?verbose", "/api/v1/nodes"]
    assert all(r["client"] == "kubernetes-admin" and r["bootstrap_started"] for r in requests)

    # The admin kubeconfig beside the cluster file, 0600, works with kubectl.
    kubeconfig = tmp_path / f"{NAME}.kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert str(kubeconfig) in done.stdout
    readyz = world.run("kubectl", f"--kubeconfig={kubeconfig}", "get", "--raw=/readyz")
    assert readyz.stdout.strip() == "ok"
    assert served(api_log)[-1] == {
        "path": "/readyz",
        "client": "kubernetes-admin",
        "bootstrap_started": True,
    }

    # A second apply changes nothing: no AWS change, no upload, no layout, the same files.
    paths = sorted(want)
    inodes = laid_out_inodes(host, paths)
    sftp_before = host.sftp_log()
    sudo_before = sudo_calls(host)
    again = world.squall("apply", str(config), "--yes")
    assert "No changes: AWS matches the cluster file." in again.stdout, again.stdout
    assert f"Cluster {NAME} is ready." in again.stdout
    assert "AWS is up to date" not in again.stdout  # printed only after making changes
    assert laid_out_inodes(host, paths) == inodes
    assert not re.search(r"WRITE|mkdir|rename|remove", host.sftp_log()[len(sftp_before) :])
    assert sudo_calls(host)[len(sudo_before) :] == ["-n systemctl start bootstrap"]

    # Another machine at the controller's address, with another host key: squall refuses it.
    Namespace.stop_process(host.proc)
    impostor_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key()
    impostor = start_controller(
        world.ns,
        tmp_path / "impostor",
        address=address,
        host_key_pem=impostor_key,
        authorized_keys=[client.public],
        layout_script=ignition_file(user_data, "/opt/bootstrap/layout").decode(),
    )
    refused = world.squall("apply", str(config), "--yes", check=False)
    assert refused.returncode == 1, refused
    # Progress lines go to stderr as well; the failure is the one error line, and the last.
    lines = refused.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], refused.stderr
    assert errors[0].startswith(
        f"error: host key of controller-0 ({address}) does not match the key squall pinned"
    ), errors[0]
    assert all(line.startswith(f"controller-0 {address}: ") for line in lines[:-1]), lines
    assert "Traceback" not in refused.stdout + refused.stderr
    # The impostor saw squall connect, and hang up before logging in.
    assert f"Connection from {address}" in impostor.log()
    assert "Accepted publickey" not in impostor.log()
    assert sudo_calls(impostor) == [] and impostor.sftp_log() == ""
