"""Waiting for the cluster: a stand-in kube-apiserver on loopback with the cluster's own TLS."""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from squall import ignition
from squall.assets import Assets
from squall.bootstrap.progress import Update
from squall.bootstrap.wait import (
    Endpoint,
    ExpectedNodes,
    NodeReport,
    WaitError,
    admin_tls,
    classify_nodes,
    wait_ready,
)
from squall.spec import Spec
from squall.state import State
from tests.bootstrap.fakeapi import Scenario, node, serve


@dataclass
class FakeTime:
    """A clock that moves only when the code under test sleeps; each sleep runs a step."""

    now: float = 0.0
    steps: list[Callable[[], None]] | None = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.steps:
            self.steps.pop(0)()


def loopback(host: str) -> list[str]:
    return ["127.0.0.1"]


def unresolvable(host: str) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def api(state: State, assets: Assets) -> Iterator[tuple[int, Scenario]]:
    with serve(
        state.path("tls/k8s/apiserver.crt"), state.path("tls/k8s/apiserver.key"), assets.ca_cert
    ) as served:
        yield served


ONE_EACH = ExpectedNodes(controllers=1, workers=1)


def test_waits_through_each_stage_until_ready(
    spec: Spec, assets: Assets, api: tuple[int, Scenario]
) -> None:
    port, scenario = api
    scenario.readyz = (500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed")

    def apiserver_up() -> None:
        scenario.readyz = (200, "ok")

    def nodes_join() -> None:
        scenario.nodes = [
            node("ip-10-0-1-5", controller=True, ready=True),
            node("ip-10-0-9-7", controller=False, ready=False, reason="KubeletNotReady"),
        ]

    def worker_ready() -> None:
        scenario.nodes[1] = node("ip-10-0-9-7", controller=False, ready=True)

    fake = FakeTime(steps=[apiserver_up, nodes_join, worker_ready])
    updates: list[Update] = []
    wait_ready(
        Endpoint(spec.api_fqdn, port),
        admin_tls(assets.admin_kubeconfig),
        ONE_EACH,
        timeout=60,
        poll_every=5,
        resolver=loopback,
        clock=fake.clock,
        sleep=fake.sleep,
        report=updates.append,
    )
    lines = [u.line() for u in updates]
    key = f"cluster {spec.api_fqdn}"
    assert lines == [
        f"{key}: waiting for kube-apiserver (kube-apiserver answers /readyz with 500: failing etcd) 1:00 left",
        f"{key}: waiting for nodes (0/1 controllers and 0/1 workers Ready; 2 not registered yet) 0:55 left",
        f"{key}: waiting for nodes (1/1 controllers and 0/1 workers Ready; ip-10-0-9-7 NotReady: KubeletNotReady) 0:50 left",
        f"{key}: ready: 1/1 controllers and 1/1 workers Ready",
    ]
    # Every request carried the admin client certificate.
    assert {cn for _, cn in scenario.seen} == {"kubernetes-admin"}


def test_dns_not_resolving_is_named(spec: Spec, assets: Assets) -> None:
    fake = FakeTime()
    with pytest.raises(WaitError) as err:
        wait_ready(
            Endpoint(spec.api_fqdn),
            admin_tls(assets.admin_kubeconfig),
            ONE_EACH,
            timeout=30,
            resolver=unresolvable,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert str(err.value).startswith(
        "tempest.aws.example.com did not resolve within 0:30; check that the dns_zone is delegated"
    )


def test_unreachable_apiserver_names_target_health(spec: Spec, assets: Assets) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = held.getsockname()[1]
        fake = FakeTime()
        with pytest.raises(WaitError) as err:
            wait_ready(
                Endpoint(spec.api_fqdn, port),
                admin_tls(assets.admin_kubeconfig),
                ONE_EACH,
                timeout=20,
                resolver=loopback,
                clock=fake.clock,
                sleep=fake.sleep,
                target_health=lambda: {"i-0abc:6443": "unhealthy", "i-0def:6443": "healthy"},
            )
    msg = str(err.value)
    assert msg.startswith(
        f"kube-apiserver at https://{spec.api_fqdn}:{port} not ready within 0:20: "
        f"connection refused at 127.0.0.1:{port}; NLB targets not healthy: i-0abc:6443 unhealthy;"
    ), msg


def test_missing_and_not_ready_nodes_are_named(
    spec: Spec, assets: Assets, api: tuple[int, Scenario]
) -> None:
    port, scenario = api
    scenario.nodes = [
        node("ip-10-0-1-5", controller=True, ready=True),
        node("ip-10-0-9-7", controller=False, ready=None),
    ]
    fake = FakeTime()
    with pytest.raises(WaitError) as err:
        wait_ready(
            Endpoint(spec.api_fqdn, port),
            admin_tls(assets.admin_kubeconfig),
            ExpectedNodes(controllers=1, workers=3),
            timeout=10,
            resolver=loopback,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert str(err.value).startswith(
        "nodes not Ready within 0:10: 1/1 controllers and 0/3 workers Ready"
        "; ip-10-0-9-7 NotReady: no Ready condition yet; 2 not registered yet;"
    )


def test_a_server_with_another_ca_is_not_trusted(
    spec: Spec, assets: Assets, tmp_path: Path
) -> None:
    from squall import assets as assets_mod

    other_state = State(tmp_path / "other")
    other = assets_mod.build(spec, other_state)
    with serve(
        other_state.path("tls/k8s/apiserver.crt"),
        other_state.path("tls/k8s/apiserver.key"),
        other.ca_cert,
    ) as (port, scenario):
        fake = FakeTime()
        with pytest.raises(WaitError) as err:
            wait_ready(
                Endpoint(spec.api_fqdn, port),
                admin_tls(assets.admin_kubeconfig),
                ONE_EACH,
                timeout=5,
                resolver=loopback,
                clock=fake.clock,
                sleep=fake.sleep,
            )
    assert f"the certificate at 127.0.0.1:{port} is not the cluster's" in str(err.value)
    assert scenario.seen == []


def registered_labels(user_data: str) -> dict[str, str]:
    """The labels a node's kubelet registers with: its unit's ``--node-labels`` flag."""
    units = ignition.unpack(user_data)["systemd"]["units"]
    (kubelet,) = [u["contents"] for u in units if u["name"] == "kubelet.service"]
    args = shlex.split(kubelet.replace("\\\n", " "))
    (value,) = [a.removeprefix("--node-labels=") for a in args if a.startswith("--node-labels=")]
    return dict(label.partition("=")[::2] for label in value.split(","))


def test_nodes_count_as_the_role_their_node_config_registers(spec: Spec, assets: Assets) -> None:
    def as_node(name: str, labels: dict[str, str]) -> dict[str, object]:
        ready = [{"type": "Ready", "status": "True"}]
        return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": ready}}

    controller = registered_labels(ignition.controller(spec, 0, assets).to_json())
    worker = registered_labels(ignition.worker(spec, None, assets).to_json())
    report = classify_nodes([as_node("c0", controller), as_node("w0", worker)])
    assert report == NodeReport(ready_controllers=1, ready_workers=1, not_ready=())
    # The label's value counts, not only its key.
    key = next(k for k in controller if k not in worker)
    assert classify_nodes([as_node("x", {key: "false"})]).ready_workers == 1
