"""The fault proxy itself: it must really fault, and lost responses must really take effect."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import boto3
import botocore.config
import pytest
from moto.server import ThreadedMotoServer

from .proxy import FaultPolicy, FaultProxy


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server._server.server_port  # type: ignore[union-attr]
    server.stop()


def ec2(url: str, attempts: int) -> object:
    config = botocore.config.Config(
        region_name="us-east-1", retries={"mode": "standard", "total_max_attempts": attempts}
    )
    return boto3.client(
        "ec2", endpoint_url=url, config=config, aws_access_key_id="k", aws_secret_access_key="s"
    )


def test_every_fault_kind_happens_at_about_the_rate(moto_port: int) -> None:
    codes: Counter[str] = Counter()
    with FaultProxy(moto_port, FaultPolicy(rate=0.3, seed=7, kinds=("throttle", "error500"))) as p:
        client = ec2(p.url, attempts=1)
        for _ in range(100):
            try:
                client.describe_availability_zones()  # type: ignore[attr-defined]
                codes["ok"] += 1
            except client.exceptions.ClientError as err:  # type: ignore[attr-defined]
                codes[err.response["Error"]["Code"]] += 1
    assert set(codes) == {"ok", "RequestLimitExceeded", "InternalError"}
    assert p.log.faulted == 100 - codes["ok"]
    assert 15 < p.log.faulted < 45


def test_a_lost_response_still_takes_effect(moto_port: int) -> None:
    with FaultProxy(moto_port, FaultPolicy(rate=1.0, kinds=("lost_response",))) as p:
        client = ec2(p.url, attempts=1)
        before = len(ec2(f"http://127.0.0.1:{moto_port}", 1).describe_vpcs()["Vpcs"])  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="closed"):
            client.create_vpc(CidrBlock="10.77.0.0/16")  # type: ignore[attr-defined]
    after = ec2(f"http://127.0.0.1:{moto_port}", 1).describe_vpcs()["Vpcs"]  # type: ignore[attr-defined]
    assert p.log.operations["CreateVpc"] == 1, p.log
    assert len(after) == before + 1


def test_a_new_id_can_be_unknown_for_a_moment(moto_port: int) -> None:
    policy = FaultPolicy(rate=0.0, seed=2, kinds=("not_found",), consistency_window_s=30)
    with FaultProxy(moto_port, policy) as p:
        client = ec2(p.url, attempts=1)
        vpc = client.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]  # type: ignore[attr-defined]
        codes = set()
        for _ in range(20):
            try:
                client.describe_vpcs(VpcIds=[vpc])  # type: ignore[attr-defined]
                codes.add("ok")
            except client.exceptions.ClientError as err:  # type: ignore[attr-defined]
                codes.add(err.response["Error"]["Code"])
    assert codes == {"ok", "InvalidVpcID.NotFound"}
