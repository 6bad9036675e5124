"""What the SSH bootstrap needs from AWS once apply is done: where the controllers are, and
how the NLB sees them (named in the bootstrap's timeout message)."""

from __future__ import annotations

from collections.abc import Callable

from squall.aws.cluster import Cluster
from squall.aws.outputs import _one
from squall.engine.aws import explain
from squall.errors import SquallError


def controller_addresses(cluster: Cluster) -> list[tuple[int, str]]:
    """(index, public IPv4) of every controller, read from AWS."""
    spec = cluster.spec
    cluster.ctx.forget()
    found = []
    try:
        for i in range(spec.controller_count):
            instance = _one(cluster.ctx, "instance", f"{spec.cluster_name}-controller-{i}")
            address = instance.attrs.get("public_ip")
            if not address:
                raise SquallError(
                    f"controller-{i} ({instance.id}) has no public IPv4 address, so squall cannot "
                    "reach it over SSH; check the subnet's public IP setting and re-run apply"
                )
            found.append((i, address))
    except SquallError:
        raise
    except Exception as err:
        raise explain(err, "reading the controllers' addresses from AWS") from None
    return found


def controller_target_health(cluster: Cluster) -> Callable[[], dict[str, str]]:
    """A callable reporting the apiserver target group's view of each controller."""
    name = f"{cluster.spec.cluster_name}-controllers"
    try:
        arn = _one(cluster.ctx, "target_group", name).id
    except Exception as err:
        raise explain(err, "reading the kube-apiserver target group from AWS") from None
    elbv2 = cluster.aws.client("elbv2")

    def health() -> dict[str, str]:
        reply = elbv2.describe_target_health(TargetGroupArn=arn)
        return {
            f"{d['Target']['Id']}:{d['Target']['Port']}": d["TargetHealth"]["State"]
            for d in reply["TargetHealthDescriptions"]
        }

    return health
