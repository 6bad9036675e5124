"""Fixtures for the cluster manifest tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from squall.assets.manifests import cluster_manifests
from squall.assets.token import BootstrapToken
from squall.spec import parse

Manifests = dict[str, list[dict[str, Any]]]


@pytest.fixture
def token() -> BootstrapToken:
    return BootstrapToken(id="q7w2ka", secret="0pz9x8c7v6b5n4m3")


@pytest.fixture
def render(
    cluster_data: Callable[..., dict[str, Any]], token: BootstrapToken
) -> Callable[..., Manifests]:
    """Render the manifests of the smallest cluster file with ``overrides`` applied."""

    def make(**overrides: Any) -> Manifests:
        return cluster_manifests(parse(cluster_data(**overrides)), token)

    return make
