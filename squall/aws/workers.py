"""Workers (facts §4): a launch template and an auto scaling group that registers its
instances in the ingress target groups and any extra ones the user lists; and one more
template and group of the same shape per ``[[worker_pools]]`` entry.

Every group registers in the services' target groups and in ``worker_target_groups``, since a
node port answers on every node; only the main workers and pools with ``ingress = true`` take
ingress traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from squall.aws.ami import Image
from squall.aws.controllers import check_user_data
from squall.aws.network import subnet_refs
from squall.aws.nlb import TG_WORKERS_HTTP, TG_WORKERS_HTTPS, service_tg
from squall.aws.security import WORKER_SG
from squall.engine.core import Ref, Resource
from squall.spec import Spec, WorkerPool
from squall.state import State

# worker_target_groups squall registered groups in: a target group attached to a worker group
# that is neither the cluster's nor in this record was attached by someone else, and stays.
TARGET_GROUPS_ATTACHED = "aws/target_groups.json"


@dataclass(frozen=True)
class WorkerGroup:
    key: str  # resource key prefix, unique per group
    name: str  # AWS name of the template and the group
    count: int
    instance_type: str
    image: Image
    user_data: str
    disk_size: int
    disk_type: str
    disk_iops: int
    spot_price: float
    cpu_credits: str | None
    public_ipv4: bool
    target_groups: tuple[Ref | str, ...]


def target_groups(spec: Spec, *, ingress: bool) -> tuple[Ref | str, ...]:
    groups: list[Ref | str] = [Ref(TG_WORKERS_HTTP), Ref(TG_WORKERS_HTTPS)] if ingress else []
    groups += [Ref(service_tg(s.name)) for s in spec.services]
    return (*groups, *spec.worker_target_groups)


def pool_group(spec: Spec, pool: WorkerPool, user_data: str, image: Image) -> WorkerGroup:
    """A worker pool: its own settings, the cluster's security group and subnets."""
    return WorkerGroup(
        key=f"pool-{pool.name}",
        name=f"{spec.cluster_name}-{pool.name}",
        count=pool.count,
        instance_type=pool.instance_type,
        image=image,
        user_data=user_data,
        disk_size=pool.disk_size,
        disk_type=pool.disk_type,
        disk_iops=pool.disk_iops,
        spot_price=pool.spot_price,
        cpu_credits=None,
        public_ipv4=spec.worker_public_ipv4,
        target_groups=target_groups(spec, ingress=pool.ingress),
    )


def main_group(spec: Spec, user_data: str, image: Image) -> WorkerGroup:
    """The cluster's own workers, configured by the top-level worker_* keys."""
    return WorkerGroup(
        key="worker",
        name=f"{spec.cluster_name}-worker",
        count=spec.worker_count,
        instance_type=spec.worker_type,
        image=image,
        user_data=user_data,
        disk_size=spec.worker_disk_size,
        disk_type=spec.worker_disk_type,
        disk_iops=spec.worker_disk_iops,
        spot_price=spec.worker_price,
        cpu_credits=spec.worker_cpu_credits,
        public_ipv4=spec.worker_public_ipv4,
        target_groups=target_groups(spec, ingress=True),
    )


def workers(group: WorkerGroup, zones: list[str]) -> list[Resource]:
    check_user_data(group.name, group.user_data)
    template = f"{group.key}-template"
    return [
        Resource(
            "launch_template",
            template,
            group.name,
            {
                "image_id": group.image.id,
                "root_device": group.image.root_device,
                "instance_type": group.instance_type,
                "user_data": group.user_data,
                "security_groups": [Ref(WORKER_SG)],
                "public_ipv4": group.public_ipv4,
                "disk_size": group.disk_size,
                "disk_type": group.disk_type,
                "disk_iops": group.disk_iops,
                "disk_encrypted": True,
                "imds_tokens": "required",
                "imds_hop_limit": 1,
                "spot_price": group.spot_price,
                "cpu_credits": group.cpu_credits,
            },
        ),
        Resource(
            "auto_scaling_group",
            f"{group.key}-group",
            group.name,
            {
                "launch_template": Ref(template),
                "launch_template_version": Ref(template, "version"),
                "min_size": group.count,
                "desired_capacity": group.count,
                "max_size": group.count + 2,
                "subnets": subnet_refs(zones),
                "target_groups": list(group.target_groups),
                "health_check_type": "EC2",
                "health_check_grace": 30,
                "cooldown": 30,
                "refresh_warmup": 120,
                "refresh_min_healthy": 90,
            },
        ),
    ]


def attached_by_squall(state: State) -> set[str]:
    return set(state.read_json(TARGET_GROUPS_ATTACHED) or [])


def record_attached(state: State, arns: set[str]) -> None:
    state.write_json(TARGET_GROUPS_ATTACHED, sorted(arns))


def keeping(group: WorkerGroup, others: dict[str, tuple[str, ...]]) -> WorkerGroup:
    """``group`` with the target groups others attached to it (by group name) kept."""
    kept = tuple(arn for arn in others.get(group.name, ()) if arn not in group.target_groups)
    return replace(group, target_groups=group.target_groups + kept) if kept else group
