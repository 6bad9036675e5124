"""Fixtures for the bootstrap tests: a cluster, its state and assets, client keys, stand-in hosts."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from squall import assets as assets_mod
from squall import ignition
from squall.assets import Assets
from squall.assets.hostkeys import controller_host_key
from squall.spec import Spec, parse
from squall.state import State
from tests.bootstrap.hosts import Host, start_host


@dataclass(frozen=True)
class ClientKey:
    path: Path  # private key file, 0600
    public: str  # "ssh-ed25519 AAAA… comment"
    fingerprint: str


def make_client_key(d: Path, name: str) -> ClientKey:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@test")
    path = d / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    public = key.export_public_key().decode().strip()
    return ClientKey(path, public, key.get_fingerprint())


@pytest.fixture
def client_key(tmp_path: Path) -> ClientKey:
    return make_client_key(tmp_path, "id_user")


@pytest.fixture
def make_spec(cluster_data: Callable[..., dict[str, Any]]) -> Callable[..., Spec]:
    return lambda **kw: parse(cluster_data(**kw))


@pytest.fixture
def spec(make_spec: Callable[..., Spec], client_key: ClientKey) -> Spec:
    return make_spec(
        ssh_authorized_key=client_key.public, ssh_private_key_file=str(client_key.path)
    )


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state")


@pytest.fixture
def assets(spec: Spec, state: State) -> Assets:
    return assets_mod.build(spec, state)


def ignition_file(user_data: str, path: str) -> bytes:
    """One file's contents out of Ignition user data, following squall's merge reference."""
    config = json.loads(user_data)
    for ref in config.get("ignition", {}).get("config", {}).get("merge", []):
        found = _find(json.loads(_data_url(ref["source"], ref.get("compression"))), path)
        if found is not None:
            return found
    found = _find(config, path)
    if found is None:
        raise KeyError(path)
    return found


def _find(config: dict[str, Any], path: str) -> bytes | None:
    for f in config.get("storage", {}).get("files", []):
        if f["path"] == path:
            contents = f["contents"]
            return _data_url(contents["source"], contents.get("compression"))
    return None


def _data_url(url: str, compression: str | None) -> bytes:
    header, _, payload = url.partition(",")
    assert header.startswith("data:"), url[:40]
    data = (
        base64.b64decode(payload)
        if header.endswith(";base64")
        else urllib.parse.unquote_to_bytes(payload)
    )
    return gzip.decompress(data) if compression == "gzip" else data


@pytest.fixture
def layout_script(spec: Spec, assets: Assets) -> str:
    """The layout script exactly as controller 0's node config installs it."""
    return ignition_file(
        ignition.controller(spec, 0, assets).to_json(), "/opt/bootstrap/layout"
    ).decode()


HostFactory = Callable[..., Host]


@pytest.fixture
def make_host(tmp_path: Path, state: State) -> Iterator[HostFactory]:
    """Start stand-in controllers; each presents the host key squall pinned for its index."""
    started: list[Host] = []

    def make(index: int = 0, *, host_key_index: int | None = None, **kw: Any) -> Host:
        key = controller_host_key(state, index if host_key_index is None else host_key_index)
        host = start_host(tmp_path / f"host{len(started)}", host_key_pem=key.private_pem, **kw)
        started.append(host)
        return host

    yield make
    for host in started:
        host.stop()


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real ssh-agent; yields the environment that points at it."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.01)
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        proc.terminate()
        proc.wait(5)
