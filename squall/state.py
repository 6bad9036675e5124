"""The state store: what squall must remember between runs.

Generated secrets (keys, certificates, the bootstrap token), pinned AMIs and SSH host keys live
in one directory per cluster, by default ``.squall/<cluster_name>/`` beside the cluster file.
Directories are 0700 and every file 0600: the directory holds the cluster's root keys.
Writes go through a temporary file and a rename, so an interrupted run never leaves a
half-written secret behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from squall.errors import SquallError

DIR_MODE = 0o700
FILE_MODE = 0o600


class StateError(SquallError):
    """The state directory cannot be read or written."""


def default_root(config_path: Path, cluster_name: str) -> Path:
    return config_path.resolve().parent / ".squall" / cluster_name


class State:
    """Files under one cluster's state directory, addressed by relative names like ``tls/ca.key``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def read(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateError(f"{self.path(name)}: cannot read state ({err.strerror})") from None

    def write(self, name: str, data: bytes) -> None:
        target = self.path(name)
        try:
            write_private(target, data)
        except OSError as err:
            raise StateError(f"{target}: cannot write state ({err.strerror})") from None

    def read_json(self, name: str) -> Any:
        data = self.read(name)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise StateError(
                f"{self.path(name)}: state file is corrupt; restore it from a backup"
            ) from None

    def write_json(self, name: str, value: Any) -> None:
        self.write(name, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")


def write_private(target: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically: readers see the old or the new file."""
    _makedirs(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            # A CA key lost to a crash right after "writing" it would orphan the cluster.
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _makedirs(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700, whatever the umask."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)
