"""Node configs: Ignition spec 3.3.0 for Fedora CoreOS and Flatcar, with Butane snippets merged.

``controller(spec, i, assets)`` and ``worker(spec, pool, assets)`` return a :class:`Config`;
``Config.to_json()`` is the instance's user data, and ``unpack`` reads the full config back
out of it.
"""

from __future__ import annotations

from squall.assets import Assets
from squall.ignition import butane, nodes
from squall.ignition.model import Config, unpack
from squall.spec import Spec, WorkerPool

__all__ = ["Config", "controller", "unpack", "worker"]


def controller(spec: Spec, index: int, assets: Assets) -> Config:
    """Controller ``index``'s config, with ``controller_snippets`` merged in."""
    config = nodes.controller_config(spec, index, assets)
    return butane.merge(config, spec.controller_snippets, spec.os, "controller_snippets")


def worker(spec: Spec, pool: WorkerPool | None, assets: Assets) -> Config:
    """The config of the main workers (``pool`` None) or of one worker pool."""
    if pool is None:
        config = nodes.worker_config(
            spec,
            assets,
            labels=spec.worker_node_labels,
            taints=spec.worker_node_taints,
            ingress=True,
        )
        return butane.merge(config, spec.worker_snippets, spec.os, "worker_snippets")
    index = next((i for i, p in enumerate(spec.worker_pools) if p.name == pool.name), None)
    where = f"worker_pools[{index}].snippets" if index is not None else f"{pool.name}.snippets"
    config = nodes.worker_config(
        spec, assets, labels=pool.node_labels, taints=pool.node_taints, ingress=pool.ingress
    )
    return butane.merge(config, pool.snippets, spec.os, where)
