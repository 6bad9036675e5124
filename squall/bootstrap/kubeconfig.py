"""Hand the user the admin kubeconfig: as its own file, or merged into their kubeconfig.

Either way the cluster, user and context are named after the cluster (``NAME``, ``NAME-admin``,
``NAME``), so ``kubectl --context NAME`` works and a merge replaces exactly this cluster's
entries while every other context stays as it was. Files are written 0600 through a temporary
file and a rename: the admin key is in there, and a crash never leaves half a kubeconfig.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State, write_private

SECTIONS = ("clusters", "users", "contexts")


class KubeconfigError(SquallError):
    """A kubeconfig cannot be read or written."""


def _names(name: str) -> dict[str, str]:
    return {"clusters": name, "users": f"{name}-admin", "contexts": name}


def renamed(admin_kubeconfig: str, name: str) -> dict[str, Any]:
    """The admin kubeconfig with its one cluster, user and context named after ``name``."""
    config = yaml.safe_load(admin_kubeconfig)
    try:
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("the admin kubeconfig has no cluster or user") from None
    names = _names(name)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": names["clusters"], "cluster": cluster}],
        "users": [{"name": names["users"], "user": user}],
        "contexts": [
            {
                "name": names["contexts"],
                "context": {"cluster": names["clusters"], "user": names["users"]},
            }
        ],
        "current-context": names["contexts"],
        "preferences": {},
    }


def merged(existing: Mapping[str, Any], ours: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``existing`` with this cluster's entries replaced by ``ours``; the rest untouched."""
    out = dict(existing)
    names = _names(name)
    for section in SECTIONS:
        kept = [e for e in existing.get(section) or [] if e.get("name") != names[section]]
        out[section] = [*kept, *ours[section]]
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    out["current-context"] = names["contexts"]
    return out


def _load_existing(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise KubeconfigError(f"{path}: cannot read it ({err}); fix its permissions") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise KubeconfigError(
            f"{path}: not valid YAML{where}; fix or move it, then re-run"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or any(not isinstance(data.get(s) or [], list) for s in SECTIONS):
        raise KubeconfigError(f"{path}: not a kubeconfig; fix or move it, then re-run")
    return data


def _write_private(path: Path, text: str) -> None:
    try:
        write_private(path, text.encode())
    except OSError as err:
        raise KubeconfigError(f"{path}: cannot write it ({err.strerror})") from None


def write_kubeconfig(admin_kubeconfig: str, name: str, path: Path, *, merge: bool = False) -> Path:
    """Write the admin kubeconfig to ``path``, or merge it into the kubeconfig there."""
    ours = renamed(admin_kubeconfig, name)
    config = merged(_load_existing(path), ours, name) if merge else ours
    _write_private(path, yaml.safe_dump(config, sort_keys=False, default_flow_style=False))
    return path


def default_merge_path(env: Mapping[str, str] | None = None) -> Path:
    """Where kubectl looks first: the first ``KUBECONFIG`` entry, else ``~/.kube/config``."""
    env = os.environ if env is None else env
    first = next((p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def default_path(config_path: Path, name: str) -> Path:
    """Beside the cluster file, so it sits with the cluster it belongs to."""
    return config_path.resolve().parent / f"{name}.kubeconfig"


def kubeconfig_command(
    spec: Spec, state: State, config_path: Path, *, out: Path | None = None, merge: bool = False
) -> Path:
    """``squall kubeconfig CONFIG [--merge] [--out PATH]``: returns the file written."""
    from squall import assets

    if state.read("tls/k8s/ca.crt") is None:
        raise KubeconfigError(
            f"{state.root}: no cluster CA in the state directory; run 'squall apply' first"
        )
    admin = assets.build(spec, state).admin_kubeconfig  # type: ignore[attr-defined]
    if out is None:
        out = default_merge_path() if merge else default_path(config_path, spec.cluster_name)
    return write_kubeconfig(admin, spec.cluster_name, out, merge=merge)
