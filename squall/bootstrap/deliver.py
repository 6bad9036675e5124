"""Copy the controller asset bundle to each controller, lay it out, and start the bootstrap.

On each controller: upload the bundle to ``/home/core/assets`` over SFTP (secrets are created
0600 and never appear on a command line), run the layout script the node config installed, then
record the bundle's digest in a marker. A later run whose bundle has the same digest leaves the
controller alone, so re-running after success changes nothing; a run interrupted before the
marker was written starts that controller's delivery over from a clean upload.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Sequence

import asyncssh

from squall.assets import AssetFile
from squall.bootstrap.progress import Report, Update, silent
from squall.bootstrap.ssh import USER, Remote, SSHError
from squall.ignition.nodes import (
    ASSETS_DIR,
    BOOTSTRAP_UNIT,
    BOOTSTRAP_UNIT_TIMEOUT,
    LAYOUT_SCRIPT,
)

HOME = f"/home/{USER}"
# The node config installs the layout script and the unit; these names come from it. The unit
# goes by its short name in commands, as an operator would type it.
BOOTSTRAP = BOOTSTRAP_UNIT.removesuffix(".service")
MARKER_DIR = f"{HOME}/.squall"
MARKER = f"{MARKER_DIR}/assets.sha256"

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700

LAYOUT_TIMEOUT = 120.0
# The unit pulls the kubelet image, waits for kube-apiserver and applies every cluster manifest.
# systemd stops it first, so a failure reaches squall as the unit's own, with its journal.
BOOTSTRAP_TIMEOUT = BOOTSTRAP_UNIT_TIMEOUT + 60.0


def bundle_digest(files: Iterable[AssetFile]) -> str:
    """A digest of paths, contents and secrecy: equal digests mean nothing to deliver."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        path = f.path.encode()
        h.update(len(path).to_bytes(8, "big") + path)
        h.update(len(f.content).to_bytes(8, "big") + f.content)
        h.update(b"s" if f.secret else b"p")
    return h.hexdigest()


def check_paths(files: Iterable[AssetFile]) -> None:
    """Refuse a bundle path that would land outside the upload directory."""
    for f in files:
        norm = posixpath.normpath(f.path)
        if f.path.startswith("/") or norm.startswith("..") or norm != f.path or norm == ".":
            raise ValueError(f"asset path {f.path!r} must be relative and normalized")


def remote_dirs(files: Iterable[AssetFile]) -> list[str]:
    """Every directory the upload needs under ``ASSETS_DIR``, parents before children."""
    dirs: set[str] = set()
    for f in files:
        parent = posixpath.dirname(f.path)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(dirs, key=lambda d: (d.count("/"), d))


async def _read_marker(sftp: asyncssh.SFTPClient) -> str | None:
    try:
        async with sftp.open(MARKER, "r") as f:
            data = await f.read()
    except asyncssh.SFTPNoSuchFile:
        return None
    text = data.decode() if isinstance(data, bytes) else data
    return text.strip() or None


async def _write(
    sftp: asyncssh.SFTPClient, path: str, content: bytes, mode: int, *, atomic: bool = False
) -> None:
    # The mode is set when the file is created, so a secret is never readable by others, not
    # even for the moment between creating and chmod-ing it.
    target = f"{path}.part" if atomic else path
    attrs = asyncssh.SFTPAttrs(permissions=mode)
    async with sftp.open(target, "wb", attrs) as f:
        await f.write(content)
    await sftp.chmod(target, mode)
    if atomic:
        await sftp.posix_rename(target, path)


async def upload(remote: Remote, files: Sequence[AssetFile]) -> None:
    """A clean copy of the bundle in ``ASSETS_DIR``; whatever an earlier attempt left is removed."""
    # A previous layout may have run as root and left root-owned leftovers; only root removes them.
    await remote.check(
        ["rm", "-rf", ASSETS_DIR],
        privileged=True,
        fix=f"check that {USER} may run sudo without a password",
    )
    try:
        async with remote.start_sftp() as sftp:
            await sftp.mkdir(ASSETS_DIR, asyncssh.SFTPAttrs(permissions=DIR_MODE))
            for d in remote_dirs(files):
                await sftp.mkdir(f"{ASSETS_DIR}/{d}", asyncssh.SFTPAttrs(permissions=DIR_MODE))
            for f in files:
                mode = SECRET_MODE if f.secret else PUBLIC_MODE
                await _write(sftp, f"{ASSETS_DIR}/{f.path}", f.content, mode)
    except asyncssh.SFTPError as err:
        raise SSHError(
            f"{remote.controller.label}: copying the asset bundle to {ASSETS_DIR} failed "
            f"({err.reason}); check free space in {HOME}, then re-run"
        ) from None


async def laid_out(remote: Remote, digest: str) -> bool:
    """Whether this exact bundle was already laid out on the controller."""
    try:
        async with remote.start_sftp() as sftp:
            return await _read_marker(sftp) == digest
    except asyncssh.SFTPError as err:
        raise SSHError(
            f"{remote.controller.label}: cannot read {MARKER} ({err.reason}); re-run"
        ) from None


async def mark(remote: Remote, digest: str) -> None:
    try:
        async with remote.start_sftp() as sftp:
            if not await sftp.isdir(MARKER_DIR):
                await sftp.mkdir(MARKER_DIR, asyncssh.SFTPAttrs(permissions=DIR_MODE))
            await _write(sftp, MARKER, f"{digest}\n".encode(), 0o600, atomic=True)
    except asyncssh.SFTPError as err:
        raise SSHError(
            f"{remote.controller.label}: cannot write {MARKER} ({err.reason}); re-run"
        ) from None


async def deliver(remote: Remote, files: Sequence[AssetFile], *, report: Report = silent) -> bool:
    """Upload and lay out the bundle unless this exact bundle is already in place.

    Returns True when it laid the bundle out now, False when there was nothing to do.
    """
    check_paths(files)
    key = f"{remote.controller.name} {remote.controller.public_address}"
    digest = bundle_digest(files)
    if await laid_out(remote, digest):
        report(Update(key, "assets already in place"))
        return False
    report(Update(key, f"copying {len(files)} asset files to {ASSETS_DIR}"))
    await upload(remote, files)
    report(Update(key, "laying out assets"))
    await remote.check(
        [LAYOUT_SCRIPT],
        privileged=True,
        timeout=LAYOUT_TIMEOUT,
        fix=f"read 'journalctl -t sudo' and {LAYOUT_SCRIPT} on the controller, then re-run",
    )
    await mark(remote, digest)
    report(Update(key, "assets laid out"))
    return True


async def start_bootstrap(remote: Remote, *, report: Report = silent) -> None:
    """Start the one-shot bootstrap unit and wait for it to finish.

    The unit does nothing once it has succeeded (it checks for its done file), so starting it
    again on a later run is safe.
    """
    key = f"{remote.controller.name} {remote.controller.public_address}"
    report(Update(key, "running the one-shot bootstrap (applies the cluster manifests)"))
    result = await remote.run(
        ["systemctl", "start", BOOTSTRAP], privileged=True, timeout=BOOTSTRAP_TIMEOUT
    )
    if result.exit_status != 0:
        journal = await remote.run(
            # Only what the unit's own processes wrote: systemd's lines about the unit
            # ("Failed with result …") would push the script's reason out of the last three.
            [
                "journalctl",
                "--no-pager",
                "--quiet",
                "--lines=3",
                "--output=cat",
                f"_SYSTEMD_UNIT={BOOTSTRAP_UNIT}",
            ],
            privileged=True,
        )
        detail = " / ".join(
            line.strip() for line in journal.stdout.strip().splitlines()[-3:] if line.strip()
        )
        raise SSHError(
            f"{remote.controller.label}: the bootstrap unit failed"
            f"{f' ({detail})' if detail else ''}; see 'journalctl -u {BOOTSTRAP}' on the "
            "controller, then re-run"
        )
    report(Update(key, "bootstrap done"))
