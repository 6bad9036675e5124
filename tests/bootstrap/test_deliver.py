"""Delivering the asset bundle to a stand-in controller and laying it out with the real script.

The host runs the layout script taken from controller 0's real node config; what it left where
is read back inside the host's namespaces with stat, and a real etcd then starts from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from squall import ignition
from squall.assets import AssetFile, Assets
from squall.bootstrap.progress import Update
from squall.bootstrap.runner import Options, deliver_all
from squall.bootstrap.ssh import ConnectOptions, Controller, SSHError
from squall.spec import Spec
from squall.state import State
from tests.bootstrap.conftest import ClientKey, HostFactory, ignition_file
from tests.bootstrap.hosts import Host

AS_ROOT = Options(ssh=ConnectOptions(privilege=(), timeout=20, retry_every=0.3), env={})


def destination(path: str) -> str:
    """Where the layout contract puts a bundle file on the controller."""
    name = path.rsplit("/", 1)[-1]
    if re.match(r"tls/etcd/(server|peer)", path):
        return f"/etc/ssl/etcd/etcd/{name}"
    if path.startswith(("tls/etcd/etcd-client", "tls/k8s/", "auth/")):
        return f"/etc/kubernetes/pki/{name}"
    if path.startswith("static-manifests/"):
        return f"/etc/kubernetes/manifests/{name}"
    if path.startswith("manifests/"):
        return f"/opt/bootstrap/assets/{path}"
    raise AssertionError(f"the layout contract has no place for {path}")


def remote_stat(host: Host, paths: list[str]) -> dict[str, tuple[str, str, int, str]]:
    """owner, group, mode and sha256 of each path, as the host reports them."""
    out = host.exec(["stat", "-c", "%U %G %a %i %n", *paths]).stdout.splitlines()
    sums = host.exec(["sha256sum", *paths]).stdout.splitlines()
    digest = {line.split()[1]: line.split()[0] for line in sums}
    result = {}
    for line in out:
        user, group, mode, _inode, name = line.split(" ", 4)
        result[name] = (user, group, int(mode, 8), digest[name])
    return result


def inodes(host: Host, paths: list[str]) -> list[str]:
    return host.exec(["stat", "-c", "%i %Y", *paths]).stdout.splitlines()


def deliver(
    spec: Spec, state: State, assets: Assets, hosts: list[Host], updates: list[Update] | None = None
) -> None:
    controllers = [Controller(f"controller-{i}", i, h.address) for i, h in enumerate(hosts)]
    report = updates.append if updates is not None else (lambda u: None)
    asyncio.run(deliver_all(spec, state, assets, controllers, AS_ROOT, report))


@pytest.fixture
def controller(
    make_host: HostFactory, client_key: ClientKey, layout_script: str, spec: Spec
) -> Host:
    return make_host(
        authorized_keys=[client_key.public],
        layout_script=layout_script,
        # Stands in for the Route53 record of etcd's name.
        hosts_lines=[f"@ADDRESS@ {spec.etcd_fqdn(0)}"],
    )


def test_layout_puts_every_file_in_its_place(
    spec: Spec, state: State, assets: Assets, controller: Host
) -> None:
    updates: list[Update] = []
    deliver(spec, state, assets, [controller], updates)

    want = {destination(f.path): f for f in assets.files}
    got = remote_stat(controller, sorted(want))
    for path, f in want.items():
        user, group, mode, digest = got[path]
        assert digest == hashlib.sha256(f.content).hexdigest(), path
        etcd_own = path.startswith("/etc/ssl/etcd/")
        assert (user, group) == (("etcd", "etcd") if etcd_own else ("root", "root")), path
        if f.secret:
            assert mode & 0o077 == 0, f"{path} is {mode:o}"
    assert got["/etc/ssl/etcd/etcd/server.key"][:3] == ("etcd", "etcd", 0o600)
    assert got["/etc/ssl/etcd/etcd/peer.key"][:3] == ("etcd", "etcd", 0o600)
    assert got["/etc/kubernetes/pki/etcd-client.key"][2] == 0o600
    assert got["/etc/kubernetes/pki/ca.crt"][2] == 0o644

    # Secrets were created 0600 on upload, as the SFTP server itself logged.
    log = controller.sftp_log()
    for f in assets.files:
        opened = re.search(rf'open "/home/core/assets/{re.escape(f.path)}" .* mode (0\d+)', log)
        assert opened, f.path
        assert opened[1] == ("0600" if f.secret else "0644"), f.path
    # The upload directory is gone once laid out, and only controller 0 runs the bootstrap.
    assert controller.exec(["test", "-e", "/home/core/assets"], check=False).returncode == 1
    assert controller.systemctl_calls() == ["start bootstrap"]
    assert [u.status for u in updates][-1] == "bootstrap done"


def test_etcd_starts_from_the_laid_out_files(
    spec: Spec, state: State, assets: Assets, controller: Host
) -> None:
    deliver(spec, state, assets, [controller])
    env_text = ignition_file(
        ignition.controller(spec, 0, assets).to_json(), "/etc/etcd/etcd.env"
    ).decode()
    env = [line for line in env_text.splitlines() if line and not line.startswith("#")]
    # As the etcd user, so its certificates' owner and modes are what lets it read them.
    etcd = controller.spawn(
        ["setpriv", "--reuid=etcd", "--regid=etcd", "--clear-groups", "env", "-i", *env, "etcd"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ctl = [
            "etcdctl",
            f"--endpoints=https://{spec.etcd_fqdn(0)}:2379",
            "--cacert=/etc/kubernetes/pki/etcd-client-ca.crt",
            "--cert=/etc/kubernetes/pki/etcd-client.crt",
            "--key=/etc/kubernetes/pki/etcd-client.key",
            "--dial-timeout=2s",
        ]
        deadline = time.monotonic() + 20
        while True:
            put = controller.exec([*ctl, "put", "squall", "laid-out"], check=False)
            if put.returncode == 0 or time.monotonic() > deadline or etcd.poll() is not None:
                break
            time.sleep(0.3)
        assert put.returncode == 0, (put.stderr, etcd.poll())
        got = controller.exec([*ctl, "get", "squall", "--print-value-only"]).stdout
        assert got.strip() == "laid-out"
        # Without the client certificate etcd refuses the request.
        anon = controller.exec([*ctl[:3], "--dial-timeout=2s", "get", "squall"], check=False)
        assert anon.returncode != 0
    finally:
        etcd.terminate()
        _, err = etcd.communicate(timeout=10)
    assert b"etcd0" in err


def test_second_run_changes_nothing(
    spec: Spec, state: State, assets: Assets, controller: Host
) -> None:
    deliver(spec, state, assets, [controller])
    paths = sorted(destination(f.path) for f in assets.files)
    before = inodes(controller, paths)
    opens = controller.sftp_log().count('open "/home/core/assets/')
    assert opens == len(assets.files)
    updates: list[Update] = []
    deliver(spec, state, assets, [controller], updates)
    assert inodes(controller, paths) == before
    assert controller.sftp_log().count('open "/home/core/assets/') == opens
    assert "assets already in place" in [u.status for u in updates]


def test_a_changed_bundle_is_laid_out_again(
    spec: Spec, state: State, assets: Assets, controller: Host
) -> None:
    deliver(spec, state, assets, [controller])
    path = "static-manifests/kube-scheduler.yaml"
    changed_file = dataclasses.replace(assets.file(path), content=b"# changed\n")
    changed = dataclasses.replace(
        assets, files=tuple(changed_file if f.path == path else f for f in assets.files)
    )
    deliver(spec, state, changed, [controller])
    on_host = controller.exec(["cat", destination(path)]).stdout
    assert on_host == "# changed\n"


def test_resumes_after_an_interrupted_layout(
    spec: Spec, state: State, assets: Assets, controller: Host
) -> None:
    # An earlier run got as far as part of an upload, then stopped: root-owned leftovers remain.
    controller.exec(
        ["sh", "-c", "mkdir -p /home/core/assets/tls && echo stale > /home/core/assets/tls/junk"]
    )
    controller.exec(["mv", "/opt/bootstrap/layout", "/opt/bootstrap/layout.held"])
    with pytest.raises(SSHError) as err:
        deliver(spec, state, assets, [controller])
    assert re.match(
        rf"controller-0 \({controller.address}\): '/opt/bootstrap/layout' failed with status 127",
        str(err.value),
    ), err.value
    assert controller.systemctl_calls() == []

    controller.exec(["mv", "/opt/bootstrap/layout.held", "/opt/bootstrap/layout"])
    deliver(spec, state, assets, [controller])
    ca = controller.exec(["cat", "/etc/kubernetes/pki/ca.crt"]).stdout
    assert ca == assets.ca_cert
    assert controller.exec(["test", "-e", "/etc/kubernetes/pki/junk"], check=False).returncode == 1
    assert controller.systemctl_calls() == ["start bootstrap"]


def test_failed_bootstrap_unit_is_reported(
    spec: Spec, state: State, assets: Assets, controller: Host
) -> None:
    (controller.dir / "systemctl.fail").touch()
    with pytest.raises(SSHError) as err:
        deliver(spec, state, assets, [controller])
    msg = str(err.value)
    assert msg.startswith(f"controller-0 ({controller.address}): the bootstrap unit failed")
    assert "journalctl -u bootstrap" in msg


@pytest.fixture
def three_controllers(
    make_host: HostFactory, client_key: ClientKey, layout_script: str
) -> Iterator[list[Host]]:
    yield [
        make_host(i, authorized_keys=[client_key.public], layout_script=layout_script)
        for i in range(3)
    ]


def test_bootstrap_runs_on_controller_0_only(
    make_spec: Callable[..., Spec],
    client_key: ClientKey,
    state: State,
    three_controllers: list[Host],
) -> None:
    from squall import assets as assets_mod

    spec = make_spec(
        controller_count=3,
        ssh_authorized_key=client_key.public,
        ssh_private_key_file=str(client_key.path),
    )
    bundle = assets_mod.build(spec, state)
    deliver(spec, state, bundle, three_controllers)
    assert [h.systemctl_calls() for h in three_controllers] == [["start bootstrap"], [], []]
    for h in three_controllers:
        got = h.exec(["cat", "/etc/ssl/etcd/etcd/peer.crt"]).stdout
        assert got == bundle.file("tls/etcd/peer.crt").content.decode()


def test_bundle_paths_must_stay_inside(spec: Spec, state: State, assets: Assets) -> None:
    from squall.bootstrap.deliver import check_paths

    for bad in ("/etc/passwd", "../x", "a/../../x", "a//b"):
        with pytest.raises(ValueError, match="must be relative and normalized"):
            check_paths([AssetFile(bad, b"", False)])
