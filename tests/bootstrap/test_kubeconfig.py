"""The admin kubeconfig, written alone or merged, as kubectl reads it back."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from squall.assets import Assets
from squall.bootstrap.kubeconfig import (
    KubeconfigError,
    default_merge_path,
    kubeconfig_command,
    write_kubeconfig,
)
from squall.spec import Spec
from squall.state import State


def kubectl(path: Path, *args: str) -> str:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={path}", "config", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def view(path: Path) -> dict[str, Any]:
    return json.loads(kubectl(path, "view", "--raw", "-o", "json"))


def test_written_alone(spec: Spec, assets: Assets, tmp_path: Path) -> None:
    path = write_kubeconfig(assets.admin_kubeconfig, spec.cluster_name, tmp_path / "k" / "config")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert kubectl(path, "get-contexts", "-o", "name").split() == ["tempest"]
    assert kubectl(path, "current-context").strip() == "tempest"
    config = view(path)
    assert config["clusters"][0]["cluster"]["server"] == spec.api_url
    assert config["contexts"][0]["context"] == {"cluster": "tempest", "user": "tempest-admin"}


def seed_other_cluster(path: Path) -> None:
    kubectl(path, "set-cluster", "other", "--server=https://other.example:6443")
    kubectl(path, "set-credentials", "other-user", "--token=abc")
    kubectl(path, "set-context", "other", "--cluster=other", "--user=other-user")
    kubectl(path, "use-context", "other")


def test_merge_keeps_other_contexts(spec: Spec, assets: Assets, tmp_path: Path) -> None:
    path = tmp_path / "config"
    seed_other_cluster(path)
    write_kubeconfig(assets.admin_kubeconfig, spec.cluster_name, path, merge=True)
    # Merging twice replaces this cluster's entries instead of adding them again.
    write_kubeconfig(assets.admin_kubeconfig, spec.cluster_name, path, merge=True)
    assert sorted(kubectl(path, "get-contexts", "-o", "name").split()) == ["other", "tempest"]
    assert kubectl(path, "current-context").strip() == "tempest"
    config = view(path)
    servers = {c["name"]: c["cluster"]["server"] for c in config["clusters"]}
    assert servers == {"other": "https://other.example:6443", "tempest": spec.api_url}
    users = {u["name"]: u["user"] for u in config["users"]}
    assert users["other-user"] == {"token": "abc"}
    assert "client-key-data" in users["tempest-admin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_merge_refuses_a_broken_file(spec: Spec, assets: Assets, tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [\n")
    with pytest.raises(
        KubeconfigError, match=r"config: not valid YAML at line \d+; fix or move it"
    ):
        write_kubeconfig(assets.admin_kubeconfig, spec.cluster_name, path, merge=True)
    assert path.read_text() == "clusters: [\n"
    path.write_text("clusters: 3\n")
    with pytest.raises(KubeconfigError, match="not a kubeconfig"):
        write_kubeconfig(assets.admin_kubeconfig, spec.cluster_name, path, merge=True)


def test_merge_path_follows_kubeconfig_env(tmp_path: Path) -> None:
    env = {"KUBECONFIG": f"{tmp_path}/a:{tmp_path}/b"}
    assert default_merge_path(env) == tmp_path / "a"
    assert default_merge_path({}) == Path.home() / ".kube" / "config"


def test_command_needs_an_applied_cluster(spec: Spec, state: State, tmp_path: Path) -> None:
    with pytest.raises(
        KubeconfigError, match="no cluster CA in the state directory; run 'squall apply'"
    ):
        kubeconfig_command(spec, state, tmp_path / "tempest.toml")
    assert not state.path("tls").exists()


def test_command_writes_beside_the_cluster_file(
    spec: Spec, state: State, assets: Assets, tmp_path: Path
) -> None:
    written = kubeconfig_command(spec, state, tmp_path / "tempest.toml")
    assert written == tmp_path / "tempest.kubeconfig"
    users = view(written)["users"]
    assert users[0]["user"]["client-certificate-data"]
    merged = kubeconfig_command(
        spec, state, tmp_path / "tempest.toml", out=tmp_path / "kc", merge=True
    )
    assert kubectl(merged, "get-contexts", "-o", "name").split() == ["tempest"]
