"""Fixtures for the AWS tests: one emulated AWS (a moto server on loopback) per test module,
the CLI against it, and plain boto3 clients to read AWS back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from squall import emulator

from .helpers import ZONE, ZONE_ID, Squall


@pytest.fixture(scope="module")
def aws() -> Iterator[emulator.EmulatedAws]:
    with emulator.start({ZONE: ZONE_ID}) as emulated:
        yield emulated


@pytest.fixture(scope="module")
def squall(aws: emulator.EmulatedAws) -> Squall:
    return Squall(aws)


@pytest.fixture(scope="module")
def client(aws: emulator.EmulatedAws) -> Callable[[str], Any]:
    """Plain boto3 clients on the emulated AWS, to check what squall did."""
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=aws.region,
    )

    def make(service: str) -> Any:
        return session.client(service, endpoint_url=aws.endpoint)

    return make
