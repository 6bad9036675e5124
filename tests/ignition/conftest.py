"""Fixtures for node config tests: a cluster spec and its real asset bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from squall import assets
from squall.assets import Assets
from squall.spec import Spec, parse
from squall.state import State

from .ignition_doc import Cluster


@pytest.fixture
def cluster(cluster_data: Callable[..., dict[str, Any]], tmp_path: Path) -> Cluster:
    """A factory: the spec for the given cluster-file overrides and its asset bundle."""
    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> tuple[Spec, Assets]:
        spec = parse(cluster_data(**overrides))
        state = State(tmp_path / f"state-{next(counter)}")
        return spec, assets.build(spec, state)

    return make
