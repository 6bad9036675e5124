"""`squall render` end to end: the promised layout, private modes, byte-identical re-renders."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from squall import spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.toml"

NODE_CONFIGS = [
    "ignition/controller-0.ign",
    "ignition/controller-1.ign",
    "ignition/controller-2.ign",
    "ignition/worker.ign",
    "ignition/worker-arm.ign",
]


@pytest.fixture
def cluster_file(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text().replace("controller_count = 1", "controller_count = 3")
    text += '\n[[worker_pools]]\nname = "arm"\narch = "arm64"\ncount = 2\n'
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def render(cluster_file: Path, out: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "squall", "render", str(cluster_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_render_layout_modes_and_determinism(
    cluster_file: Path, tmp_path: Path, bundle_contract: frozenset[str]
) -> None:
    render(cluster_file, tmp_path / "a")
    render(cluster_file, tmp_path / "b")
    first, second = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert first == second, "rendering twice must give byte-identical files"
    for rel in [*bundle_contract, *NODE_CONFIGS]:
        assert rel in first, f"{rel} missing from render output"
    manifests = [r for r in first if r.startswith("manifests/")]
    assert manifests and all(r.endswith(".yaml") for r in manifests)

    for rel in first:
        mode = stat.S_IMODE(os.stat(tmp_path / "a" / rel).st_mode)
        if rel.endswith((".key", ".conf", ".ign")):
            assert mode == 0o600, f"{rel} is {oct(mode)}"
        assert not mode & 0o022, f"{rel} is writable by others"

    state = cluster_file.parent / ".squall" / "tempest"
    for p in state.rglob("*"):
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, p


def test_every_rendered_node_config_passes_ignition_validate(
    cluster_file: Path, tmp_path: Path
) -> None:
    render(cluster_file, tmp_path / "out")
    configs = sorted((tmp_path / "out" / "ignition").glob("*.ign"))
    assert len(configs) == 5
    for config in configs:
        check = subprocess.run(["ignition-validate", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, f"{config.name}: {check.stdout}{check.stderr}"
        # EC2 takes at most 16 KB of user data; keep half of it free.
        assert config.stat().st_size <= 8 * 1024, f"{config.name}: {config.stat().st_size} B"


def test_kubectl_reads_the_rendered_admin_kubeconfig(cluster_file: Path, tmp_path: Path) -> None:
    render(cluster_file, tmp_path / "out")
    admin = tmp_path / "out" / "auth" / "admin.conf"
    server = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(admin),
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert server == spec.load(cluster_file).api_url
