"""The last step of ``squall apply``: bootstrap the controllers the AWS step made, then hand
over the admin kubeconfig."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from squall import assets
from squall.aws.cluster import Cluster
from squall.aws.handover import controller_addresses, controller_target_health
from squall.bootstrap.kubeconfig import default_path
from squall.bootstrap.runner import Options, run
from squall.bootstrap.ssh import Controller
from squall.spec import Spec
from squall.state import State


def key_file_beside(spec: Spec, config_path: Path) -> Spec:
    """A relative ``ssh_private_key_file`` means beside the cluster file, not the shell's cwd."""
    if spec.ssh_private_key_file is None:
        return spec
    path = Path(spec.ssh_private_key_file).expanduser()
    if not path.is_absolute():
        path = config_path.resolve().parent / path
    return spec.model_copy(update={"ssh_private_key_file": str(path)})


def finish(spec: Spec, state: State, config_path: Path, cluster: Cluster, out: Console) -> Path:
    """Deliver, bootstrap, wait until ready; returns where the admin kubeconfig was written."""
    bundle = assets.build(spec, state)
    controllers = [
        Controller(f"controller-{i}", i, address) for i, address in controller_addresses(cluster)
    ]
    kubeconfig = default_path(config_path, spec.cluster_name)
    out.print(f"Bootstrapping {len(controllers)} controller(s) over SSH…")
    run(
        key_file_beside(spec, config_path),
        state,
        bundle,
        controllers,
        options=Options(target_health=controller_target_health(cluster), kubeconfig=kubeconfig),
    )
    return kubeconfig
