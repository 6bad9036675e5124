"""The whole architecture: every concern's resources composed into one desired set, and the
plan / apply / outputs / destroy operations the CLI offers.

The extension tables of the cluster file are part of the concerns they extend: services are
listeners and target groups in :mod:`squall.aws.nlb` and node-port rules in
:mod:`squall.aws.security`, firewall rules are rows there too, routes live in
:mod:`squall.aws.network`, and worker pools are more :class:`squall.aws.workers.WorkerGroup`
values.

What the cluster does not own is left alone: listeners, rules and routes others add are not
deleted by an apply, and a destroy names those that go along with the cluster's own load
balancer, security groups and route table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from squall.aws import ami, controllers, dns, network, nlb, outputs, security, workers
from squall.aws.kinds import cluster_kinds
from squall.engine import run
from squall.engine.aws import Aws, code, explain
from squall.engine.core import Actual, Context, Resource
from squall.engine.kinds.ec2 import availability_zones
from squall.engine.plan import Plan, make_plan
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State

# Present once the cluster's keys exist; see Cluster.check_state.
CA_STATE = "tls/k8s/ca.crt"

# The rules AWS gives every new security group; squall desires them, so they are no one
# else's even though they carry no tag.
AWS_DEFAULT_EGRESS = {("-1", "0.0.0.0/0"), ("-1", "::/0")}


@dataclass(frozen=True)
class Inputs:
    """What the model needs besides the spec, looked up or rendered before planning."""

    zones: list[str]
    controller_image: ami.Image
    worker_image: ami.Image
    controller_configs: tuple[str, ...]
    worker_config: str
    # By pool name.
    pool_images: dict[str, ami.Image]
    pool_configs: dict[str, str]
    # Target groups someone else attached to a worker group, by group name: kept attached.
    others_target_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)


def desired(spec: Spec, inputs: Inputs) -> list[Resource]:
    others = inputs.others_target_groups
    pools = [
        workers.workers(
            workers.keeping(
                workers.pool_group(
                    spec, pool, inputs.pool_configs[pool.name], inputs.pool_images[pool.name]
                ),
                others,
            ),
            inputs.zones,
        )
        for pool in spec.worker_pools
    ]
    return [
        *network.network(spec, inputs.zones),
        *security.security(spec),
        *nlb.nlb(spec, inputs.zones),
        *controllers.controllers(
            spec, inputs.controller_configs, inputs.controller_image, inputs.zones
        ),
        *workers.workers(
            workers.keeping(
                workers.main_group(spec, inputs.worker_config, inputs.worker_image), others
            ),
            inputs.zones,
        ),
        *(r for pool in pools for r in pool),
        *dns.records(spec),
    ]


def check_target_groups(aws: Aws, spec: Spec, vpc_id: str | None) -> None:
    """Every ``worker_target_groups`` entry exists, in the cluster's VPC, for instances."""
    client = aws.client("elbv2")
    for arn in spec.worker_target_groups:
        try:
            tg = client.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
        except Exception as err:
            if code(err) in ("TargetGroupNotFound", "TargetGroupNotFoundException"):
                raise SquallError(
                    f"worker_target_groups: target group {arn} does not exist in {aws.region}; "
                    "create it in the cluster's VPC (output vpc_id) or remove it"
                ) from None
            raise explain(err, f"reading target group {arn}") from None
        name = tg["TargetGroupName"]
        if tg.get("VpcId") != vpc_id:
            where = f"VPC {vpc_id}" if vpc_id else "VPC (not created yet: apply without it first)"
            raise SquallError(
                f"worker_target_groups: target group {name} is in {tg.get('VpcId')}, not the "
                f"cluster's {where}; create it in the VPC of output vpc_id"
            )
        if tg.get("TargetType") != "instance":
            raise SquallError(
                f"worker_target_groups: target group {name} takes {tg.get('TargetType')} "
                "targets; workers register as instances, so make it target type instance"
            )


def foreign(ctx: Context) -> list[str]:
    """What others added to the cluster's load balancer, security groups and route table:
    AWS removes it together with them."""

    def rule_is_default(a: Actual) -> bool:
        return bool(a.props["egress"]) and (a.props["protocol"], a.props["cidr"]) in (
            AWS_DEFAULT_EGRESS
        )

    out = [f"listener {a.name} ({a.id})" for a in ctx.actuals("listener") if not a.owned]
    out += [
        f"security group rule {a.name} in {a.props['group']}"
        for a in ctx.actuals("security_group_rule")
        if not a.owned and not rule_is_default(a)
    ]
    out += [f"route {a.name}" for a in ctx.actuals("route") if not a.owned]
    return out


def replacement_warnings(ctx: Context, plan: Plan) -> list[str]:
    """What replacing a load balancer made without a security group costs, in words."""
    out = []
    for c in plan.changes:
        if c.kind != "load_balancer" or c.action != "replace" or c.actual is None:
            continue
        if "created_with_security_groups" not in c.forces_replacement:
            continue
        text = (
            f"load balancer {c.name} was made without a security group, and AWS gives a "
            "network load balancer one only when it is created: apply replaces it, so the "
            "apiserver, ingress and services are unreachable through it until the new one is "
            "active, and its DNS name (output ingress_dns_name) changes; squall moves the "
            "apiserver records, CNAMEs of your own must follow"
        )
        theirs = [
            a.name
            for a in ctx.actuals("listener")
            if not a.owned and a.props["load_balancer"] == c.actual.id
        ]
        if theirs:
            text += f"; listeners you added go with it: {', '.join(theirs)}"
        out.append(text)
    return out


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
        # Routes squall was asked to make, by destination and target (routes carry no tags).
        self.routes_made = network.made_routes(state)
        self._routes_after: set[network.RouteKey] | None = None
        self.attached = workers.attached_by_squall(state)
        self._attached_after: set[str] | None = None
        self.ctx = Context(
            self.aws,
            spec.cluster_name,
            cluster_kinds(
                spec.dns_zone_id,
                dns.owns(spec),
                lambda props: network.owns_route(self.routes_made)(props),
            ),
            wait_timeout=wait_timeout,
        )
        # Others' listeners, rules and routes that a destroy takes along, by name.
        self.foreign: list[str] = []

    def check(self) -> None:
        """Credentials work and the hosted zone is the cluster's."""
        self.aws.check_credentials()
        dns.check_zone(self.aws, self.spec)

    def check_state(self) -> None:
        """A cluster AWS already holds keeps its keys: never mint new ones beside it.

        Rendering without the state directory would make a new CA and bootstrap token, and an
        apply would then roll every worker onto credentials the controllers do not know.
        """
        if self.state.read(CA_STATE) is not None:
            return
        try:
            exists = any(a.name == self.spec.cluster_name for a in self.ctx.actuals("vpc"))
        except Exception as err:
            raise explain(err, "reading the cluster's VPC from AWS") from None
        if exists:
            raise SquallError(
                f"{self.state.root}: no cluster keys here, yet AWS already holds cluster "
                f"{self.spec.cluster_name}; restore this folder from a backup (squall will not "
                "make new keys for a running cluster), or destroy the cluster first"
            )

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
            zones=network.pinned_zones(zones, self.state, pin=pin),
            controller_image=ami.pinned(self.aws, self.spec, self.state, "controller", pin=pin),
            worker_image=ami.pinned(self.aws, self.spec, self.state, "worker", pin=pin),
            controller_configs=rendered.controllers,
            worker_config=rendered.workers[""],
            pool_images={
                p.name: ami.pinned(self.aws, self.spec, self.state, ami.pool_role(p.name), pin=pin)
                for p in self.spec.worker_pools
            },
            pool_configs={p.name: rendered.workers[p.name] for p in self.spec.worker_pools},
        )

    def plan(self, *, pin: bool = False) -> Plan:
        self.check()
        self.check_state()
        inputs = self.inputs(pin=pin)
        self.ctx.forget()
        try:
            if self.spec.worker_target_groups:
                vpcs = [a for a in self.ctx.actuals("vpc") if a.name == self.spec.cluster_name]
                check_target_groups(self.aws, self.spec, vpcs[0].id if len(vpcs) == 1 else None)
            inputs = replace(inputs, others_target_groups=self._others_target_groups())
        except SquallError:
            raise
        except Exception as err:
            raise explain(err, "reading the cluster's resources from AWS") from None
        asked = network.route_keys(self.spec)
        if pin:
            # Recorded before they are made, so that an interrupted apply cannot leave a
            # route or registration behind that squall would no longer know as its own.
            self.routes_made |= asked
            network.record_routes(self.state, self.routes_made)
            self._routes_after = asked
            self.attached |= set(self.spec.worker_target_groups)
            workers.record_attached(self.state, self.attached)
            self._attached_after = set(self.spec.worker_target_groups)
        wanted = desired(self.spec, inputs)
        for warning in security.quota_warnings(self.spec, wanted):
            self.ctx.warn(warning)
        p = self._plan(wanted)
        for warning in replacement_warnings(self.ctx, p):
            self.ctx.warn(warning)
        return p

    def _others_target_groups(self) -> dict[str, tuple[str, ...]]:
        ours = {a.id for a in self.ctx.actuals("target_group")}
        ours |= self.attached | set(self.spec.worker_target_groups)
        return {
            g.name: tuple(sorted(set(g.props.get("target_groups") or []) - ours))
            for g in self.ctx.actuals("auto_scaling_group")
        }

    def destroy_plan(self) -> Plan:
        """Every resource the cluster owns, to be deleted; :attr:`foreign` names what goes
        along with them."""
        self.aws.check_credentials()
        self.ctx.forget()
        p = self._plan([])
        self.foreign = foreign(self.ctx)
        self._routes_after = set()
        self._attached_after = set()
        return p

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
        if not outcome.failures and self._routes_after is not None:
            # Every owned route no longer asked for was deleted with this plan.
            self.routes_made = set(self._routes_after)
            network.record_routes(self.state, self.routes_made)
        if not outcome.failures and self._attached_after is not None:
            self.attached = set(self._attached_after)
            workers.record_attached(self.state, self.attached)
        return outcome

    def outputs(self) -> dict[str, Any]:
        from squall import assets

        self.aws.check_credentials()
        self.ctx.forget()
        self.check_state()
        bundle = assets.build(self.spec, self.state)
        try:
            return outputs.outputs(self.ctx, self.spec, bundle)
        except SquallError:
            raise
        except Exception as err:
            raise explain(err, "reading the cluster's outputs from AWS") from None
