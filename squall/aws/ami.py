"""Machine images (facts §4): the newest Fedora CoreOS or Flatcar AMI for a stream and
architecture, chosen once and pinned in the state directory.

Nodes update their OS themselves, so a newer AMI must not churn the cluster: the pin keeps
plans stable until the user changes the OS, stream or architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from squall.engine.aws import Aws, explain
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State

FEDORA_COREOS_OWNER = "125523088429"
FLATCAR_OWNER = "075585003325"
EC2_ARCH = {"amd64": "x86_64", "arm64": "arm64"}
PINS = "aws/amis.json"


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    root_device: str
    created: str


@dataclass(frozen=True)
class Selection:
    os: str  # fedora-coreos | flatcar
    stream: str  # Fedora CoreOS stream, or Flatcar channel
    arch: str  # amd64 | arm64

    def describe(self) -> str:
        label = "Fedora CoreOS" if self.os == "fedora-coreos" else "Flatcar"
        return f"{label} {self.stream} {EC2_ARCH[self.arch]}"


POOL_ROLE = "pool:"


def pool_role(name: str) -> str:
    return f"{POOL_ROLE}{name}"


def selection(spec: Spec, role: str) -> Selection:
    """What ``role`` runs: "controller", "worker", or a worker pool's ``pool_role``."""
    if role.startswith(POOL_ROLE):
        pool = next(p for p in spec.worker_pools if p.name == role.removeprefix(POOL_ROLE))
        arch, stream, image = pool.arch, pool.os_stream, pool.os_image
    else:
        arch = spec.controller_arch if role == "controller" else spec.worker_arch
        stream, image = spec.os_stream, spec.os_image
    if spec.os == "fedora-coreos":
        return Selection(spec.os, stream, arch)
    return Selection(spec.os, image.removeprefix("flatcar-"), arch)


def filters(sel: Selection) -> dict[str, Any]:
    """describe_images arguments for a selection."""
    common = [
        {"Name": "architecture", "Values": [EC2_ARCH[sel.arch]]},
        {"Name": "virtualization-type", "Values": ["hvm"]},
        {"Name": "state", "Values": ["available"]},
    ]
    if sel.os == "fedora-coreos":
        return {
            "Owners": [FEDORA_COREOS_OWNER],
            "Filters": [
                {"Name": "description", "Values": [f"Fedora CoreOS {sel.stream} *"]},
                *common,
            ],
        }
    return {
        "Owners": [FLATCAR_OWNER],
        "Filters": [{"Name": "name", "Values": [f"Flatcar-{sel.stream}-*"]}, *common],
    }


def newest(images: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]), default=None)


def lookup(aws: Aws, sel: Selection) -> Image:
    try:
        images = aws.client("ec2").describe_images(**filters(sel))["Images"]
    except Exception as err:
        raise explain(err, f"looking up the {sel.describe()} AMI") from None
    best = newest(images)
    if best is None:
        raise SquallError(
            f"no {sel.describe()} AMI in {aws.region}; choose another os, stream or region"
        )
    return Image(
        best["ImageId"],
        best.get("Name", ""),
        best.get("RootDeviceName", "/dev/xvda"),
        best.get("CreationDate", ""),
    )


def pinned(aws: Aws, spec: Spec, state: State, role: str, *, pin: bool) -> Image:
    """The AMI for ``role`` (see :func:`selection`): the pinned one while the selection
    stays the same, else the newest, pinned when ``pin`` (apply) is set."""
    sel = selection(spec, role)
    pins = state.read_json(PINS) or {}
    entry = pins.get(role)
    if entry and entry.get("selection") == asdict(sel):
        return Image(**entry["image"])
    image = lookup(aws, sel)
    if pin:
        pins[role] = {"selection": asdict(sel), "image": asdict(image)}
        state.write_json(PINS, pins)
    return image
