"""Connecting to controllers: a real sshd in a namespace, a real ssh-agent, real failures."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncssh
import pytest

from squall.assets.hostkeys import controller_host_key
from squall.bootstrap.progress import Update
from squall.bootstrap.ssh import (
    ConnectOptions,
    Controller,
    SSHError,
    connect_all,
    load_credentials,
)
from squall.state import State
from tests.bootstrap.conftest import ClientKey, HostFactory, make_client_key
from tests.bootstrap.hosts import make_link

# Tests run as root without sudo; production keeps sudo -n.
AS_ROOT = ConnectOptions(privilege=(), timeout=20, retry_every=0.3)


def connect_and_run(
    state: State,
    controller: Controller,
    key_file: str | None,
    env: Mapping[str, str],
    *,
    options: ConnectOptions = AS_ROOT,
    updates: list[Update] | None = None,
    authorized_key: str | None = None,
) -> str:
    """Connect like the bootstrap does and return what ``echo $USER`` prints on the host."""

    async def go() -> str:
        creds = await load_credentials(key_file, env)
        try:
            async with connect_all(
                [controller],
                {controller.index: controller_host_key(state, controller.index)},
                creds,
                options=options,
                report=(updates.append if updates is not None else lambda u: None),
                authorized_key=authorized_key,
            ) as (remote,):
                result = await remote.run(["sh", "-c", "echo $USER"])
                return result.stdout.strip()
        finally:
            creds.close()

    return asyncio.run(go())


def accepted(log: str, fingerprint: str) -> bool:
    return (
        re.search(rf"Accepted publickey for core from .* ED25519 {re.escape(fingerprint)}", log)
        is not None
    )


def test_key_file_logs_in_as_core(
    state: State, client_key: ClientKey, make_host: HostFactory
) -> None:
    host = make_host(authorized_keys=[client_key.public])
    c = Controller("controller-0", 0, host.address)
    assert connect_and_run(state, c, str(client_key.path), {}) == "core"
    assert accepted(host.log(), client_key.fingerprint), host.log()


def test_agent_keys_log_in(
    state: State, tmp_path: Path, make_host: HostFactory, ssh_agent: dict[str, str]
) -> None:
    other = make_client_key(tmp_path, "id_other")
    mine = make_client_key(tmp_path, "id_mine")
    for key in (other, mine):
        subprocess.run(
            ["ssh-add", "-q", str(key.path)], env={**os.environ, **ssh_agent}, check=True
        )
    host = make_host(authorized_keys=[mine.public])
    c = Controller("controller-0", 0, host.address)
    assert connect_and_run(state, c, None, ssh_agent) == "core"
    assert accepted(host.log(), mine.fingerprint), host.log()


def test_no_agent_and_no_key_file() -> None:
    with pytest.raises(SSHError) as err:
        asyncio.run(load_credentials(None, {}))
    msg = str(err.value)
    assert "SSH_AUTH_SOCK is not set and ssh_private_key_file is unset" in msg
    assert "ssh-add" in msg and "\n" not in msg


def test_agent_without_keys(ssh_agent: dict[str, str]) -> None:
    with pytest.raises(SSHError, match="ssh-agent holds no keys; ssh-add"):
        asyncio.run(load_credentials(None, ssh_agent))


def test_agent_socket_gone(tmp_path: Path) -> None:
    env = {"SSH_AUTH_SOCK": str(tmp_path / "gone.sock")}
    with pytest.raises(SSHError, match=r"ssh-agent at SSH_AUTH_SOCK=.*gone.sock does not answer"):
        asyncio.run(load_credentials(None, env))


def test_key_file_problems(tmp_path: Path, client_key: ClientKey) -> None:
    with pytest.raises(SSHError, match="no such file"):
        asyncio.run(load_credentials(str(tmp_path / "missing"), {}))
    client_key.path.chmod(0o644)
    with pytest.raises(SSHError, match=r"readable by other users \(mode 0644\); run chmod 600"):
        asyncio.run(load_credentials(str(client_key.path), {}))
    # As users make them: OpenSSH's own format, and PKCS#8 as other tools write it.
    locked = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "test-only", "-f", str(locked)], check=True
    )
    locked_pem = tmp_path / "locked.pem"
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(locked_pem, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("pkcs8-pem", passphrase="test-only"))
    for path in (locked, locked_pem):
        with pytest.raises(SSHError, match="the key is encrypted; load it with 'ssh-add"):
            asyncio.run(load_credentials(str(path), {}))


def test_refused_key_is_named(
    state: State, tmp_path: Path, client_key: ClientKey, make_host: HostFactory
) -> None:
    authorized = make_client_key(tmp_path, "id_authorized")
    host = make_host(authorized_keys=[authorized.public])
    c = Controller("controller-0", 0, host.address)
    with pytest.raises(SSHError) as err:
        connect_and_run(state, c, str(client_key.path), {}, authorized_key=authorized.public)
    msg = str(err.value)
    assert f"controller-0 ({host.address}): authentication refused for user core" in msg
    assert f"offered key file {client_key.path} key(s) {client_key.fingerprint}" in msg
    assert f"only authorizes ssh_authorized_key {authorized.fingerprint}" in msg
    assert "Accepted publickey" not in host.log()


def test_changed_host_key_is_refused(
    state: State, client_key: ClientKey, make_host: HostFactory
) -> None:
    # The host presents controller-1's key where controller-0's is pinned.
    host = make_host(0, host_key_index=1, authorized_keys=[client_key.public])
    c = Controller("controller-0", 0, host.address)
    with pytest.raises(SSHError) as err:
        connect_and_run(state, c, str(client_key.path), {})
    assert str(err.value).startswith(
        f"host key of controller-0 ({host.address}) does not match the key squall pinned; "
        "refusing to connect — "
    )
    # Refused before authenticating: the impostor never saw a signature from the user's key.
    assert "publickey" not in host.log(), host.log()


def test_waits_for_a_booting_host(
    state: State, client_key: ClientKey, make_host: HostFactory
) -> None:
    host = make_host(authorized_keys=[client_key.public], delay=1.5, wait=False)
    c = Controller("controller-0", 0, host.address)
    updates: list[Update] = []
    assert connect_and_run(state, c, str(client_key.path), {}, updates=updates) == "core"
    lines = [u.line() for u in updates]
    waiting = [line for line in lines if "waiting for SSH (port closed)" in line]
    assert waiting, lines
    assert re.fullmatch(
        rf"controller-0 {re.escape(host.address)}: waiting for SSH \(port closed\) 0:\d\d left",
        waiting[0],
    )
    assert lines[-1] == f"controller-0 {host.address}: connected"


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held bound but not listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_timeout_names_the_silent_host(
    state: State, client_key: ClientKey, silent_listener: int
) -> None:
    c = Controller("controller-0", 0, "127.0.0.1", port=silent_listener)
    options = ConnectOptions(privilege=(), timeout=2.5, attempt_timeout=1, retry_every=0.2)
    with pytest.raises(SSHError) as err:
        connect_and_run(state, c, str(client_key.path), {}, options=options)
    msg = str(err.value)
    assert msg.startswith("controller-0 (127.0.0.1): no SSH login after 0:0")
    assert "(last: no answer)" in msg and "get-console-output" in msg


def test_timeout_on_a_closed_port(state: State, client_key: ClientKey, closed_port: int) -> None:
    c = Controller("controller-0", 0, "127.0.0.1", port=closed_port)
    options = ConnectOptions(privilege=(), timeout=1.0, retry_every=0.2)
    updates: list[Update] = []
    with pytest.raises(SSHError, match=r"no SSH login after 0:01 \(last: port closed\)"):
        connect_and_run(state, c, str(client_key.path), {}, options=options, updates=updates)
    # Retried, not given up after the first refusal.
    assert sum("port closed" in u.status for u in updates) >= 2


def test_unreachable_host(state: State, client_key: ClientKey) -> None:
    # A namespace whose side of the link has no address: nothing answers ARP for it.
    link = make_link(address_ns_side=False)
    try:
        c = Controller("controller-0", 0, link.ns_ip)
        options = ConnectOptions(privilege=(), timeout=4.5, attempt_timeout=4, retry_every=0.2)
        with pytest.raises(SSHError) as err:
            connect_and_run(state, c, str(client_key.path), {}, options=options)
    finally:
        link.delete()
    msg = str(err.value)
    assert msg.startswith(f"controller-0 ({link.ns_ip}): host unreachable for 0:0"), msg
    assert "public address" in msg


def test_every_controller_at_once(
    state: State, client_key: ClientKey, make_host: HostFactory
) -> None:
    hosts = [make_host(i, authorized_keys=[client_key.public]) for i in range(3)]
    controllers = [Controller(f"controller-{i}", i, h.address) for i, h in enumerate(hosts)]

    async def go() -> list[str]:
        creds = await load_credentials(str(client_key.path), {})
        keys = {c.index: controller_host_key(state, c.index) for c in controllers}
        try:
            async with connect_all(controllers, keys, creds, options=AS_ROOT) as remotes:
                results = await asyncio.gather(
                    *(r.run(["cat", "/etc/ssh_host_marker"]) for r in remotes)
                )
                return [r.stdout for r in results]
        finally:
            creds.close()

    for i, h in enumerate(hosts):
        h.exec(["sh", "-c", f"echo host{i} > /etc/ssh_host_marker"])
    assert asyncio.run(go()) == ["host0\n", "host1\n", "host2\n"]
