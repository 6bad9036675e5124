"""Workers (facts §4): a launch template and an auto scaling group that registers its
instances in the ingress target groups and any extra ones the user lists.

A group of workers is described by :class:`WorkerGroup`, so that worker pools can become more
groups of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from squall.aws.ami import Image
from squall.aws.controllers import check_user_data
from squall.aws.network import subnet_refs
from squall.aws.nlb import TG_WORKERS_HTTP, TG_WORKERS_HTTPS
from squall.aws.security import WORKER_SG
from squall.engine.core import Ref, Resource
from squall.spec import Spec


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
        target_groups=(
            Ref(TG_WORKERS_HTTP),
            Ref(TG_WORKERS_HTTPS),
            *spec.worker_target_groups,
        ),
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
