"""A running cluster keeps its keys: without its state folder squall refuses rather than mint
new ones that would lock every new node out."""

from __future__ import annotations

import shutil
from pathlib import Path

from .helpers import Squall, cluster_file


def test_missing_state_for_a_running_cluster_is_refused(squall: Squall, tmp_path: Path) -> None:
    config = cluster_file(tmp_path, "keepkeys")
    squall("apply", str(config), "--yes", "--no-bootstrap")
    state = tmp_path / ".squall" / "keepkeys"
    shutil.move(state, tmp_path / "backup")

    for args in (["plan"], ["outputs", "--json"], ["apply", "--yes", "--no-bootstrap"]):
        result = squall(args[0], str(config), *args[1:], check=False)
        assert result.returncode == 1, result
        (line,) = result.stderr.strip().splitlines()
        assert "no cluster keys here, yet AWS already holds cluster keepkeys" in line
        assert not (state / "tls").exists(), "no new keys may be made"

    shutil.rmtree(state, ignore_errors=True)
    shutil.move(tmp_path / "backup", state)
    assert squall.plan_json(config)["changes"] == []
    squall("destroy", str(config), "--yes")
