"""Controllers (facts §4): one instance per controller, spread over the zones, registered in
the apiserver target group on 6443."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from squall.aws.ami import Image
from squall.aws.network import VPC, subnet_key
from squall.aws.nlb import TG_CONTROLLERS
from squall.aws.security import CONTROLLER_SG
from squall.engine.core import Ref, Resource, Transform
from squall.engine.kinds.ec2 import token
from squall.errors import SquallError
from squall.spec import Spec

# EC2 refuses user data above 16 KB (before base64).
MAX_USER_DATA = 16 * 1024


def check_user_data(what: str, data: str) -> None:
    size = len(data.encode())
    if size > MAX_USER_DATA:
        raise SquallError(
            f"{what}: its node config is {size} bytes, above EC2's {MAX_USER_DATA}-byte user "
            "data limit; shorten the snippets"
        )


@dataclass(frozen=True)
class ClientToken(Transform):
    """RunInstances' idempotency token from the cluster, the controller index and the VPC:
    a resent launch never doubles a controller, and a cluster re-made after a destroy (new
    VPC) is not handed the old, terminated instance."""

    cluster: str
    index: int

    def __call__(self, vpc_id: str) -> str:
        return token("controller", self.cluster, str(self.index), vpc_id)


def controller_key(i: int) -> str:
    return f"controller-{i}"


def controllers(
    spec: Spec, user_data: Sequence[str], image: Image, zones: list[str]
) -> list[Resource]:
    if len(user_data) != spec.controller_count:
        raise ValueError("one node config per controller is needed")
    name = spec.cluster_name
    out = []
    for i, config in enumerate(user_data):
        check_user_data(f"controller {i}", config)
        out.append(
            Resource(
                "instance",
                controller_key(i),
                f"{name}-controller-{i}",
                {
                    "image_id": image.id,
                    "root_device": image.root_device,
                    "instance_type": spec.controller_type,
                    "user_data": config,
                    "subnet": Ref(subnet_key(i % len(zones))),
                    "security_groups": [Ref(CONTROLLER_SG)],
                    "public_ipv4": True,
                    "disk_size": spec.controller_disk_size,
                    "disk_type": spec.controller_disk_type,
                    "disk_iops": spec.controller_disk_iops,
                    "disk_encrypted": True,
                    # User data holds the bootstrap token: only the node itself may read it.
                    "imds_tokens": "required",
                    "imds_hop_limit": 1,
                    "cpu_credits": spec.controller_cpu_credits,
                    "client_token": Ref(VPC, "id", ClientToken(name, i)),
                },
            )
        )
        out.append(
            Resource(
                "target",
                f"{controller_key(i)}-apiserver",
                f"{name}-controllers {name}-controller-{i}:6443",
                {
                    "target_group": Ref(TG_CONTROLLERS),
                    "instance": Ref(controller_key(i)),
                    "port": 6443,
                },
            )
        )
    return out
