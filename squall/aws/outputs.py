"""Outputs (facts §5), read from AWS: what other tooling needs to extend the cluster."""

from __future__ import annotations

from typing import Any

from squall.assets import Assets
from squall.engine.core import Actual, Context
from squall.errors import SquallError
from squall.spec import Spec

# Credentials: shown only when asked for explicitly.
SENSITIVE = ("kubeconfig-admin", "kubeconfig")


class NotApplied(SquallError):
    pass


def _one(ctx: Context, kind: str, name: str) -> Actual:
    found = [a for a in ctx.actuals(kind) if a.name == name]
    if not found:
        raise NotApplied(
            f"{kind.replace('_', ' ')} {name} does not exist in AWS; run 'squall apply' first"
        )
    return found[0]


def outputs(ctx: Context, spec: Spec, assets: Assets) -> dict[str, Any]:
    name = spec.cluster_name
    vpc = _one(ctx, "vpc", name)
    subnets = sorted(
        (a for a in ctx.actuals("subnet") if a.name.startswith(f"{name}-public-")),
        key=lambda a: int(a.name.rsplit("-", 1)[1]),
    )
    nlb = _one(ctx, "load_balancer", f"{name}-nlb")
    return {
        "kubeconfig-admin": assets.admin_kubeconfig,
        "ingress_dns_name": nlb.attrs["dns_name"],
        "ingress_zone_id": nlb.attrs["zone_id"],
        "vpc_id": vpc.id,
        "subnet_ids": [s.id for s in subnets],
        "worker_security_groups": [_one(ctx, "security_group", f"{name}-worker").id],
        "kubeconfig": assets.bootstrap_kubeconfig,
        "nlb_id": nlb.id,
        "worker_target_group_http": _one(ctx, "target_group", f"{name}-workers-http").id,
        "worker_target_group_https": _one(ctx, "target_group", f"{name}-workers-https").id,
        "service_account_public_key": assets.service_account_public_key,
        "route_table_id": _one(ctx, "route_table", name).id,
        # A listener added by hand needs an inbound rule here too: the NLB filters clients.
        "nlb_security_group": _one(ctx, "security_group", f"{name}-nlb").id,
    }


def redact(values: dict[str, Any]) -> dict[str, Any]:
    """Outputs with credentials left out (null), for printing."""
    return {k: (None if k in SENSITIVE else v) for k, v in values.items()}
