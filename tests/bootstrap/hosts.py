"""Stand-in controller hosts: a real OpenSSH server in a network namespace the test creates.

Each host gets its own network namespace, joined to this one by a veth pair on a /30 taken
from 10.213.0.0/16, and its own mount namespace where /etc, /opt, /home, /var and /usr/local are
overlays whose writes land in a tmpfs: whatever the layout script writes stays inside the
namespace and vanishes with it. In there, ``core`` is an extra passwd entry with uid 0, because
this machine has no sudo and production's ``sudo -n`` prefix is replaced by none.

There is no systemd inside, so ``systemctl`` is a small script on the PATH that records its
arguments; that is the one piece of a real controller this harness cannot provide.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

POOL = ipaddress.ip_network("10.213.0.0/16")
LOCK = Path("/tmp/squall-tests-netns.lock")
OVERLAID = ("etc", "opt", "home", "var", "usr/local")

SYSTEMCTL_STUB = """#!/bin/sh
echo "$*" >> {d}/systemctl.log
if [ -e {d}/systemctl.fail ]; then echo "Job for $2.service failed." >&2; exit 1; fi
"""


def _used_subnets() -> set[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    used = set()
    for line in out.splitlines():
        addr = ipaddress.ip_interface(line.split()[3])
        if addr.ip in POOL:
            used.add(ipaddress.ip_network(f"{addr.ip}/30", strict=False))
    return used


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Link:
    """A network namespace joined to this one by a veth pair."""

    netns: str
    host_if: str
    host_ip: str
    ns_ip: str

    def delete(self) -> None:
        # Deleting the namespace destroys the peer, and with it the host end.
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


def make_link(address_ns_side: bool = True) -> Link:
    """A fresh namespace and veth; without ``address_ns_side`` nothing there answers ARP."""
    LOCK.touch(exist_ok=True)
    with LOCK.open() as lock:
        # Tests run in parallel processes; the lock makes picking a free /30 and taking it atomic.
        fcntl.flock(lock, fcntl.LOCK_EX)
        used = _used_subnets()
        subnet = next(s for s in POOL.subnets(new_prefix=30) if s not in used)
        host_ip, ns_ip = (str(h) for h in subnet.hosts())
        tag = f"{int(subnet.network_address) & 0xFFFF:04x}"
        link = Link(f"sqtest-{tag}", f"sqh{tag}", host_ip, ns_ip)
        link.delete()
        _sh("ip", "netns", "add", link.netns)
        try:
            _sh("ip", "link", "add", link.host_if, "type", "veth", "peer", "name", f"sqn{tag}")
            _sh("ip", "link", "set", f"sqn{tag}", "netns", link.netns)
            _sh("ip", "addr", "add", f"{host_ip}/30", "dev", link.host_if)
            _sh("ip", "link", "set", link.host_if, "up")
        except BaseException:
            link.delete()
            raise
    ns = ("ip", "netns", "exec", link.netns)
    _sh(*ns, "ip", "link", "set", "lo", "up")
    if address_ns_side:
        _sh(*ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", f"sqn{tag}")
    _sh(*ns, "ip", "link", "set", f"sqn{tag}", "up")
    return link


@dataclass
class Host:
    """A running sshd in its own network and mount namespaces."""

    link: Link
    dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return self.link.ns_ip

    def exec(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 30, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host's namespaces (as root), as the host itself sees things."""
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "-n", "--", *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            **kw,  # type: ignore[arg-type]
        )

    def spawn(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["nsenter", "-t", str(self.proc.pid), "-m", "-n", "--", *argv],
            **kw,  # type: ignore[call-overload]
        )

    def systemctl_calls(self) -> list[str]:
        log = self.dir / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def log(self) -> str:
        path = self.dir / "sshd.log"
        return path.read_text() if path.exists() else ""

    def sftp_log(self) -> str:
        path = self.dir / "sftp.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.link.delete()


def _sshd_config(d: Path, listen: str) -> str:
    return "\n".join(
        [
            "Port 22",
            f"ListenAddress {listen}",
            f"HostKey {d}/ssh_host_ed25519_key",
            f"AuthorizedKeysFile {d}/authorized_keys",
            "PidFile none",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            # pytest's temporary directories sit under the world-writable /tmp.
            "StrictModes no",
            # At INFO the SFTP server logs each file it opens with the mode it was created with;
            # the user's shell runs the subsystem, so stderr can go to a file.
            f"Subsystem sftp /usr/lib/openssh/sftp-server -e -l INFO 2>>{d}/sftp.log",
            "LogLevel VERBOSE",
            "",
        ]
    )


def _boot_script(d: Path, link: Link, hosts_lines: Sequence[str], delay: float) -> str:
    lines = ["set -e", f"mount -t tmpfs -o mode=0755 scratch {d}/scratch"]
    for sub in OVERLAID:
        flat = sub.replace("/", "-")
        up, work = f"{d}/scratch/{flat}.up", f"{d}/scratch/{flat}.work"
        lines += [
            f"mkdir -p {up} {work}",
            f"mount -t overlay overlay -o lowerdir=/{sub},upperdir={up},workdir={work} /{sub}",
        ]
    lines += [
        "mount -t tmpfs -o mode=0755 run /run",
        "mkdir -p /run/sshd /home/core /opt/bootstrap",
        "echo 'core:x:0:0:core:/home/core:/bin/bash' >> /etc/passwd",
        f"install -m 0755 {d}/systemctl /usr/local/bin/systemctl",
        f"if [ -f {d}/layout ]; then install -m 0700 {d}/layout /opt/bootstrap/layout; fi",
        *(f"echo {shlex.quote(h)} >> /etc/hosts" for h in hosts_lines),
    ]
    if delay:
        lines.append(f"sleep {delay}")
    lines.append(f"exec /usr/sbin/sshd -D -E {d}/sshd.log -f {d}/sshd_config")
    return "\n".join(lines)


def start_host(
    d: Path,
    *,
    host_key_pem: bytes,
    authorized_keys: Sequence[str],
    layout_script: str | None = None,
    hosts_lines: Sequence[str] = (),
    delay: float = 0,
    wait: bool = True,
) -> Host:
    """Boot a stand-in controller; ``delay`` holds sshd back, like an instance still booting."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "scratch").mkdir(exist_ok=True)
    key = d / "ssh_host_ed25519_key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(host_key_pem)
    (d / "authorized_keys").write_text("".join(k.strip() + "\n" for k in authorized_keys))
    (d / "systemctl").write_text(SYSTEMCTL_STUB.format(d=d))
    if layout_script is not None:
        (d / "layout").write_text(layout_script)
    link = make_link()
    (d / "sshd_config").write_text(_sshd_config(d, link.ns_ip))
    hosts = [line.replace("@ADDRESS@", link.ns_ip) for line in hosts_lines]
    proc = subprocess.Popen(
        [
            *("ip", "netns", "exec", link.netns),
            *("unshare", "--mount", "--propagation", "private", "--"),
            *("/bin/sh", "-c", _boot_script(d, link, hosts, delay)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(d / "boot.log").open("wb"),
    )
    host = Host(link, d, proc)
    if wait:
        try:
            wait_listening(host)
        except BaseException:
            host.stop()
            raise
    return host


def wait_listening(host: Host, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.proc.poll() is not None:
            boot = (host.dir / "boot.log").read_text()
            raise RuntimeError(f"sshd exited: {boot}\n{host.log()}")
        probe = subprocess.run(
            ["ip", "netns", "exec", host.link.netns, "ss", "-Htln", "sport", "= :22"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen in {timeout}s: {host.log()}")


@contextlib.contextmanager
def running_host(d: Path, **kw: object) -> Iterator[Host]:
    host = start_host(d, **kw)  # type: ignore[arg-type]
    try:
        yield host
    finally:
        host.stop()
