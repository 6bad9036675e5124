"""Fixtures for the asset tests: a cluster file, a state directory, the TLS material."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from squall.spec import Spec, parse
from squall.state import State

MakeSpec = Callable[..., Spec]


@pytest.fixture
def make_spec(cluster_data: Callable[..., dict[str, Any]]) -> MakeSpec:
    def make(**overrides: Any) -> Spec:
        return parse(cluster_data(**overrides))

    return make


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state")


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
