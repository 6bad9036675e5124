"""controller-0 inside the test's network namespace: a real sshd on the instance's public address.

The host is built from what the emulated AWS holds for the instance: its user data supplies
the SSH host key, ``core``'s authorized keys and the layout script, as Ignition would on first
boot. It has its own mount namespace with a scratch root (the overlays of
``tests.bootstrap.hosts``), so the layout script writes nothing outside it; ``systemctl`` is
that harness's recording script. There is no sudo on this machine, so a ``sudo`` script on the
PATH stands in for production's ``sudo -n``: it logs what it was asked, insists on ``-n`` and
runs the command (``core`` is uid 0 in there).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.bootstrap.hosts import SYSTEMCTL_STUB, Host, Link, _boot_script, _sshd_config
from tests.e2e.netns import Namespace

SUDO_SHIM = """#!/bin/sh
echo "$*" >> {d}/sudo.log
if [ "$1" != "-n" ]; then echo "sudo: a password is required" >&2; exit 1; fi
shift
exec "$@"
"""


def start_controller(
    ns: Namespace,
    d: Path,
    *,
    address: str,
    host_key_pem: bytes,
    authorized_keys: Sequence[str],
    layout_script: str,
) -> Host:
    """Boot the stand-in controller at ``address`` (already an address of ``ns``)."""
    d.mkdir(parents=True)
    (d / "scratch").mkdir()
    fd = os.open(d / "ssh_host_ed25519_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(host_key_pem)
    (d / "authorized_keys").write_text("".join(k.strip() + "\n" for k in authorized_keys))
    (d / "systemctl").write_text(SYSTEMCTL_STUB.format(d=d))
    (d / "sudo").write_text(SUDO_SHIM.format(d=d))
    (d / "layout").write_text(layout_script)
    (d / "sshd_config").write_text(_sshd_config(d, address))
    # Only the address is used: the host shares the test's namespace instead of a veth of its own.
    link = Link(netns="", host_if="", host_ip="", ns_ip=address)
    boot = _boot_script(d, link, (), 0).splitlines()
    boot.insert(-1, f"install -m 0755 {d}/sudo /usr/local/bin/sudo")
    with (d / "boot.log").open("wb") as boot_log:
        proc = ns.spawn(
            [
                *("unshare", "--mount", "--propagation", "private", "--"),
                *("/bin/sh", "-c", "\n".join(boot)),
            ],
            mount=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=boot_log,
        )
    host = Host(link, d, proc)
    deadline = time.monotonic() + 10
    while not ns.run(["ss", "-Htln", "sport = :22"]).stdout.strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            Namespace.stop_process(proc)
            raise RuntimeError(f"sshd did not start: {(d / 'boot.log').read_text()}\n{host.log()}")
        time.sleep(0.05)
    return host


def sudo_calls(host: Host) -> list[str]:
    log = host.dir / "sudo.log"
    return log.read_text().splitlines() if log.exists() else []
