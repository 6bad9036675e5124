"""The engine's AWS kinds against real peers on loopback: a throttling endpoint, and an
emulated AWS in the states an interrupted run leaves behind."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from squall import emulator
from squall.engine import run
from squall.engine.aws import Aws, create_once
from squall.engine.core import OWNER_TAG, Context, Ref, Resource
from squall.engine.kinds import all_kinds
from squall.engine.plan import make_plan

EMPTY_VPCS = (
    b'<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    b"<requestId>ok</requestId><vpcSet/></DescribeVpcsResponse>"
)
THROTTLED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>RequestLimitExceeded"
    b"</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>t</RequestID>"
    b"</Response>"
)


@pytest.fixture
def throttling_endpoint() -> Iterator[tuple[str, list[int]]]:
    """An EC2 endpoint that throttles the first two requests, then answers."""
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(1)
            status, body = (503, THROTTLED) if len(seen) <= 2 else (200, EMPTY_VPCS)
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_throttling_is_retried_by_the_client(
    throttling_endpoint: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = throttling_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws = Aws("us-east-1")
    assert aws.client("ec2").describe_vpcs()["Vpcs"] == []
    assert len(seen) == 3


@pytest.fixture
def lossy_endpoint() -> Iterator[tuple[str, list[int]]]:
    """An endpoint that reads every request, then hangs up without answering: AWS may have
    acted, the caller cannot know."""
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(1)
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_create_without_token_is_never_resent_by_botocore(
    lossy_endpoint: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = lossy_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws = Aws("us-east-1")
    looks: list[int] = []

    def adopt() -> str | None:
        looks.append(len(seen))
        return "vpc-made-by-the-lost-call"

    got = create_once(
        aws,
        "ec2",
        lambda c: c.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"],
        adopt,
        timeout=30,
    )
    assert got == "vpc-made-by-the-lost-call"
    # One request reached AWS, and squall looked for its result before anything else.
    assert seen == [1] and looks == [1]


@pytest.fixture(scope="module")
def emulated() -> Iterator[emulator.EmulatedAws]:
    with emulator.start() as aws:
        yield aws


@pytest.fixture
def env(emulated: emulator.EmulatedAws, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in emulated.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return emulated.env()


def ec2(env: dict[str, str]) -> Any:
    return boto3.client("ec2", region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"])


def owned(cluster: str, name: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": name}, {"Key": OWNER_TAG, "Value": cluster}]


def context(cluster: str) -> Context:
    # Every kind but Route53 records, which need a hosted zone.
    kinds = [k for k in all_kinds("ZNONE", lambda n, t: False) if k.kind != "record"]
    return Context(Aws("us-east-1"), cluster, kinds, retry_delay=0.1)


def network(cluster: str) -> list[Resource]:
    return [
        Resource(
            "vpc",
            "vpc",
            cluster,
            {
                "cidr_block": "10.1.0.0/16",
                "amazon_ipv6": True,
                "enable_dns_support": True,
                "enable_dns_hostnames": True,
            },
        ),
        Resource("internet_gateway", "igw", cluster, {"vpc": Ref("vpc")}),
        Resource("security_group", "sg", f"{cluster}-sg", {"vpc": Ref("vpc"), "description": "d"}),
        Resource(
            "security_group_rule",
            "sg-egress",
            f"{cluster}-egress",
            {
                "group": Ref("sg"),
                "egress": True,
                "protocol": "-1",
                "from_port": -1,
                "to_port": -1,
                "cidr": "0.0.0.0/0",
            },
        ),
        Resource(
            "security_group_rule",
            "sg-ssh",
            f"{cluster}-ssh",
            {
                "group": Ref("sg"),
                "egress": False,
                "protocol": "tcp",
                "from_port": 22,
                "to_port": 22,
                "cidr": "0.0.0.0/0",
            },
        ),
    ]


def test_adopts_what_an_interrupted_run_left(env: dict[str, str]) -> None:
    client = ec2(env)
    # A run that died right after its creates: a VPC without its DNS settings, a gateway
    # never attached, a group without rules.
    vpc = client.create_vpc(
        CidrBlock="10.1.0.0/16",
        AmazonProvidedIpv6CidrBlock=True,
        TagSpecifications=[{"ResourceType": "vpc", "Tags": owned("halfway", "halfway")}],
    )["Vpc"]["VpcId"]
    gw = client.create_internet_gateway(
        TagSpecifications=[
            {"ResourceType": "internet-gateway", "Tags": owned("halfway", "halfway")}
        ]
    )["InternetGateway"]["InternetGatewayId"]
    client.create_security_group(
        GroupName="halfway-sg",
        Description="d",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": owned("halfway", "halfway-sg")}
        ],
    )

    ctx = context("halfway")
    plan = make_plan(ctx, network("halfway"), region="us-east-1")
    actions = sorted((c.action, c.kind) for c in plan.actions)
    # The default egress rule is adopted as it is; only the SSH rule is new.
    assert actions == [
        ("create", "security_group_rule"),
        ("update", "internet_gateway"),
        ("update", "vpc"),
    ]
    vpc_change = next(c for c in plan.actions if c.kind == "vpc")
    assert set(vpc_change.diff) == {"enable_dns_hostnames"}
    run.check(run.apply(ctx, plan))

    gateway = client.describe_internet_gateways(InternetGatewayIds=[gw])["InternetGateways"][0]
    assert [a["VpcId"] for a in gateway["Attachments"]] == [vpc]
    attr = client.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")
    assert attr["EnableDnsHostnames"]["Value"] is True
    assert (
        len(
            client.describe_vpcs(Filters=[{"Name": f"tag:{OWNER_TAG}", "Values": ["halfway"]}])[
                "Vpcs"
            ]
        )
        == 1
    )
    ctx.forget()
    assert make_plan(ctx, network("halfway"), region="us-east-1").empty


def test_destroy_leaves_hand_made_rules_and_adopted_defaults_alone(env: dict[str, str]) -> None:
    client = ec2(env)
    ctx = context("rules")
    run.check(run.apply(ctx, make_plan(ctx, network("rules"), region="us-east-1")))
    group = client.describe_security_groups(
        Filters=[{"Name": f"tag:{OWNER_TAG}", "Values": ["rules"]}]
    )["SecurityGroups"][0]["GroupId"]
    client.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            }
        ],
    )
    ctx.forget()
    # Nobody owns the hand-made rule, so a plan neither deletes nor adopts it.
    assert make_plan(ctx, network("rules"), region="us-east-1").empty
    ctx.forget()
    plan = make_plan(ctx, [], region="us-east-1")
    assert sorted(c.kind for c in plan.actions) == [
        "internet_gateway",
        "security_group",
        "security_group_rule",
        "vpc",
    ]
    run.check(run.apply(ctx, plan))
    assert (
        client.describe_vpcs(Filters=[{"Name": f"tag:{OWNER_TAG}", "Values": ["rules"]}])["Vpcs"]
        == []
    )
