"""The whole architecture: every concern's resources composed into one desired set, and the
plan / apply / outputs / destroy operations the CLI offers.

Only the resources of this module's concerns exist today. The extension tables of the cluster
file (``services``, ``firewall_rules``, ``routes``, ``worker_pools``) plug in here as more
resources: extra listeners and target groups beside :mod:`squall.aws.nlb`, extra rules beside
:mod:`squall.aws.security`, extra routes on the route table, and more
:class:`squall.aws.workers.WorkerGroup` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squall.aws import ami, controllers, dns, network, nlb, outputs, security, workers
from squall.engine import run
from squall.engine.aws import Aws, explain
from squall.engine.core import Context, Resource
from squall.engine.kinds import all_kinds
from squall.engine.kinds.ec2 import availability_zones
from squall.engine.plan import Plan, make_plan
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State

EXTENSIONS = {
    "services": "[[services]]",
    "firewall_rules": "[[firewall_rules]]",
    "routes": "[[routes]]",
    "worker_pools": "[[worker_pools]]",
}


@dataclass(frozen=True)
class Inputs:
    """What the model needs besides the spec, looked up or rendered before planning."""

    zones: list[str]
    controller_image: ami.Image
    worker_image: ami.Image
    controller_configs: tuple[str, ...]
    worker_config: str


def desired(spec: Spec, inputs: Inputs) -> list[Resource]:
    return [
        *network.network(spec, inputs.zones),
        *security.security(spec),
        *nlb.nlb(spec, inputs.zones),
        *controllers.controllers(
            spec, inputs.controller_configs, inputs.controller_image, inputs.zones
        ),
        *workers.workers(
            workers.main_group(spec, inputs.worker_config, inputs.worker_image), inputs.zones
        ),
        *dns.records(spec),
    ]


def check_supported(spec: Spec) -> None:
    for key, table in EXTENSIONS.items():
        if getattr(spec, key):
            raise SquallError(
                f"{key}: this version of squall cannot provision {table} yet; remove those "
                "tables from the cluster file"
            )


class Cluster:
    """One cluster's AWS session and discovery context."""

    def __init__(
        self,
        spec: Spec,
        state: State,
        *,
        aws: Aws | None = None,
        parallelism: int = 8,
        wait_timeout: float = 900.0,
    ) -> None:
        self.spec = spec
        self.state = state
        # The cluster file's region wins over the environment's.
        self.aws = aws or Aws(spec.region)
        self.parallelism = parallelism
        self.ctx = Context(
            self.aws,
            spec.cluster_name,
            all_kinds(spec.dns_zone_id, dns.owns(spec)),
            wait_timeout=wait_timeout,
        )

    def check(self) -> None:
        """Credentials work and the hosted zone is the cluster's."""
        self.aws.check_credentials()
        dns.check_zone(self.aws, self.spec)

    def inputs(self, *, pin: bool) -> Inputs:
        from squall import render

        try:
            zones = availability_zones(self.aws.client("ec2"))
        except Exception as err:
            raise explain(err, f"listing the availability zones of {self.aws.region}") from None
        if not zones:
            raise SquallError(f"region {self.aws.region} has no available zones; choose another")
        rendered = render.render(self.spec, self.state)
        return Inputs(
            zones=zones,
            controller_image=ami.pinned(self.aws, self.spec, self.state, "controller", pin=pin),
            worker_image=ami.pinned(self.aws, self.spec, self.state, "worker", pin=pin),
            controller_configs=rendered.controllers,
            worker_config=rendered.workers[""],
        )

    def plan(self, *, pin: bool = False) -> Plan:
        check_supported(self.spec)
        self.check()
        wanted = desired(self.spec, self.inputs(pin=pin))
        self.ctx.forget()
        return self._plan(wanted)

    def destroy_plan(self) -> Plan:
        """Every resource the cluster owns, to be deleted."""
        self.aws.check_credentials()
        self.ctx.forget()
        return self._plan([])

    def _plan(self, wanted: list[Resource]) -> Plan:
        try:
            return make_plan(self.ctx, wanted, region=self.aws.region, parallelism=self.parallelism)
        except SquallError:
            raise
        except Exception as err:
            raise explain(err, "reading the cluster's resources from AWS") from None

    def apply(self, plan: Plan, reporter: run.Reporter | None = None) -> run.Outcome:
        outcome = run.apply(self.ctx, plan, reporter, parallelism=self.parallelism)
        self.ctx.forget()
        return outcome

    def outputs(self) -> dict[str, Any]:
        from squall import assets

        self.aws.check_credentials()
        self.ctx.forget()
        bundle = assets.build(self.spec, self.state)
        try:
            return outputs.outputs(self.ctx, self.spec, bundle)
        except SquallError:
            raise
        except Exception as err:
            raise explain(err, "reading the cluster's outputs from AWS") from None
