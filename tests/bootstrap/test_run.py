"""The whole bootstrap as ``squall apply`` runs it: a stand-in controller and kube-apiserver."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from squall.assets import Assets
from squall.bootstrap import Controller, Options, run
from squall.bootstrap.progress import Update
from squall.bootstrap.runner import check_controllers
from squall.bootstrap.ssh import ConnectOptions
from squall.bootstrap.wait import Endpoint
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State
from tests.bootstrap.conftest import ClientKey, HostFactory
from tests.bootstrap.fakeapi import Scenario, node, serve


@pytest.fixture
def api(state: State, assets: Assets) -> Iterator[tuple[int, Scenario]]:
    with serve(
        state.path("tls/k8s/apiserver.crt"), state.path("tls/k8s/apiserver.key"), assets.ca_cert
    ) as (port, scenario):
        scenario.nodes = [
            node("ip-10-0-1-5", controller=True, ready=True),
            node("ip-10-0-9-7", controller=False, ready=True),
        ]
        yield port, scenario


def test_run_delivers_waits_and_hands_over_a_kubeconfig(
    spec: Spec,
    state: State,
    assets: Assets,
    make_host: HostFactory,
    client_key: ClientKey,
    layout_script: str,
    api: tuple[int, Scenario],
    tmp_path: Path,
) -> None:
    port, scenario = api
    host = make_host(authorized_keys=[client_key.public], layout_script=layout_script)
    kubeconfig = tmp_path / "admin.kubeconfig"
    options = Options(
        ssh=ConnectOptions(privilege=(), timeout=20, retry_every=0.3),
        endpoint=Endpoint(spec.api_fqdn, port),
        resolver=lambda name: ["127.0.0.1"] if name == spec.api_fqdn else [],
        kubeconfig=kubeconfig,
        env={},
        ready_timeout=10,
    )
    updates: list[Update] = []
    controllers = [Controller("controller-0", 0, host.address)]
    run(spec, state, assets, controllers, options=options, report=updates.append)

    statuses = [u.status for u in updates]
    assert statuses[-1] == "ready: 1/1 controllers and 1/1 workers Ready"
    assert host.systemctl_calls() == ["start bootstrap"]
    # The kubeconfig handed over is one kubectl can use against the cluster's API.
    nodes = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            f"--server=https://127.0.0.1:{port}",
            f"--tls-server-name={spec.api_fqdn}",
            "get",
            "--raw=/api/v1/nodes",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [n["metadata"]["name"] for n in json.loads(nodes)["items"]] == [
        "ip-10-0-1-5",
        "ip-10-0-9-7",
    ]
    assert scenario.seen[-1] == ("/api/v1/nodes", "kubernetes-admin")

    # Running apply again finds everything in place.
    again: list[Update] = []
    run(spec, state, assets, controllers, options=options, report=again.append)
    assert "assets already in place" in [u.status for u in again]


def test_every_controller_index_is_required(
    make_spec: Callable[..., Spec], client_key: ClientKey
) -> None:
    spec = make_spec(controller_count=3, ssh_authorized_key=client_key.public)
    cs = [
        Controller("controller-0", 0, "198.51.100.10"),
        Controller("controller-2", 2, "198.51.100.12"),
    ]
    with pytest.raises(SquallError, match=r"needs controllers 0..2, got indexes \[0, 2\]"):
        check_controllers(spec, cs)
    full = [*cs, Controller("controller-1", 1, "198.51.100.11")]
    assert [c.index for c in check_controllers(spec, full)] == [0, 1, 2]
