"""spec → assets → node configs, and writing them out for ``squall render``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from squall import assets, ignition
from squall.assets import Assets
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State


@dataclass(frozen=True)
class Rendered:
    assets: Assets
    controllers: tuple[str, ...]  # Ignition JSON, one per controller, by index
    workers: dict[
        str, str
    ]  # Ignition JSON by worker group: "" for the main workers, else a pool name


def render(spec: Spec, state: State) -> Rendered:
    bundle = assets.build(spec, state)
    return Rendered(
        assets=bundle,
        controllers=tuple(
            ignition.controller(spec, i, bundle).to_json() for i in range(spec.controller_count)
        ),
        workers={
            "": ignition.worker(spec, None, bundle).to_json(),
            **{p.name: ignition.worker(spec, p, bundle).to_json() for p in spec.worker_pools},
        },
    )


def worker_config_name(group: str) -> str:
    return "worker.ign" if not group else f"worker-{group}.ign"


def write(rendered: Rendered, out: Path) -> list[Path]:
    """Write the render layout under ``out``; returns the files written, in order."""
    files: list[tuple[str, bytes, bool]] = [
        (f.path, f.content, f.secret) for f in rendered.assets.files
    ]
    files += [
        (f"ignition/controller-{i}.ign", c.encode(), True)
        for i, c in enumerate(rendered.controllers)
    ]
    files += [
        (f"ignition/{worker_config_name(g)}", c.encode(), True)
        for g, c in sorted(rendered.workers.items())
    ]
    written = []
    try:
        for rel, content, secret in files:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Node configs embed the bootstrap token, so they are as private as keys.
            mode = 0o600 if secret else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(target, mode)
            written.append(target)
    except OSError as err:
        raise SquallError(f"{out}: cannot write rendered files ({err.strerror})") from None
    return written
