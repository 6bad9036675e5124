"""The bootstrap as ``squall apply`` runs it once the AWS resources exist."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from squall.assets import Assets
from squall.bootstrap.deliver import deliver, start_bootstrap
from squall.bootstrap.kubeconfig import write_kubeconfig
from squall.bootstrap.progress import LinePrinter, Report
from squall.bootstrap.ssh import ConnectOptions, Controller, connect_all, load_credentials
from squall.bootstrap.wait import (
    Endpoint,
    Resolver,
    TargetHealth,
    admin_tls,
    expected_nodes,
    system_resolver,
    wait_ready,
)
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State


@dataclass(frozen=True)
class Options:
    ssh: ConnectOptions = field(default_factory=ConnectOptions)
    ready_timeout: float = 900.0
    poll_every: float = 5.0
    # Where the API is reached; None means the cluster's own name on 6443, through the NLB.
    endpoint: Endpoint | None = None
    resolver: Resolver = system_resolver
    target_health: TargetHealth | None = None
    # Where to write the admin kubeconfig once the cluster is ready; None writes none.
    kubeconfig: Path | None = None
    env: Mapping[str, str] | None = None  # SSH_AUTH_SOCK comes from here; None means os.environ
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def check_controllers(spec: Spec, controllers: Sequence[Controller]) -> list[Controller]:
    """The controllers by index, exactly one for each index the spec has."""
    by_index = {c.index: c for c in controllers}
    wanted = set(range(spec.controller_count))
    if len(by_index) != len(controllers) or set(by_index) != wanted:
        got = sorted(c.index for c in controllers)
        raise SquallError(
            f"bootstrap needs controllers 0..{spec.controller_count - 1}, got indexes {got}; "
            "re-run 'squall apply' so every controller exists"
        )
    return [by_index[i] for i in sorted(by_index)]


async def deliver_all(
    spec: Spec,
    state: State,
    assets: Assets,
    controllers: Sequence[Controller],
    options: Options,
    report: Report,
) -> None:
    """Assets onto every controller at once, then the one-shot bootstrap on controller 0."""
    host_keys = {c.index: assets.host_keys[c.index] for c in controllers}
    env = os.environ if options.env is None else options.env
    creds = await load_credentials(spec.ssh_private_key_file, env)
    try:
        async with connect_all(
            controllers,
            host_keys,
            creds,
            options=options.ssh,
            report=report,
            authorized_key=spec.ssh_authorized_key,
        ) as remotes:
            # A failed controller cancels the others' deliveries instead of cutting their
            # connections mid-layout; its own error is the one the user sees.
            try:
                async with asyncio.TaskGroup() as group:
                    for remote in remotes:
                        group.create_task(deliver(remote, assets.files, report=report))
            except* SquallError as failed:
                raise failed.exceptions[0] from None
            # etcd needs every member's certificates before controller 0's apiserver can start.
            await start_bootstrap(remotes[0], report=report)
    finally:
        creds.close()


def run(
    spec: Spec,
    state: State,
    assets: Assets,
    controllers: Sequence[Controller],
    *,
    options: Options | None = None,
    report: Report | None = None,
) -> None:
    """Deliver, lay out, bootstrap and wait until the cluster is ready; safe to run again."""
    options = options or Options()
    report = report or LinePrinter()
    ordered = check_controllers(spec, controllers)
    asyncio.run(deliver_all(spec, state, assets, ordered, options, report))
    wait_ready(
        options.endpoint or Endpoint(spec.api_fqdn),
        admin_tls(assets.admin_kubeconfig),
        expected_nodes(spec),
        timeout=options.ready_timeout,
        poll_every=options.poll_every,
        resolver=options.resolver,
        clock=options.clock,
        sleep=options.sleep,
        target_health=options.target_health,
        report=report,
    )
    if options.kubeconfig is not None:
        write_kubeconfig(assets.admin_kubeconfig, spec.cluster_name, options.kubeconfig)
