"""A closed world for one test: a fresh network namespace and a private mount namespace.

The network namespace has nothing but its loopback interface, so no packet sent inside it can
leave this machine, whatever the address: the emulated AWS hands out fictitious public IPv4
addresses, and everything that might connect to one (squall itself) runs in here. The mount
namespace differs from this machine's only in ``/etc/hosts``, a file of the test's own,
bind-mounted so that the API name of the cluster resolves to the stand-in kube-apiserver.

The namespaces live as long as a small anchor process holds them; everything else enters
them with ``nsenter``. Nothing is named or shared, so tests in parallel never collide.
"""

from __future__ import annotations

import contextlib
import select
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# The anchor reads its stdin until the test closes it (or dies), then exits, and with it the
# namespaces, once the processes started inside are gone too.
_ANCHOR = """set -e
ip link set lo up
mount --bind {hosts} /etc/hosts
echo ready
exec cat >/dev/null
"""


class Namespace:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.hosts = directory / "hosts"
        self.hosts.write_bytes(Path("/etc/hosts").read_bytes())
        self._children: list[subprocess.Popen[bytes]] = []
        self._anchor = subprocess.Popen(
            [
                *("unshare", "--net", "--mount", "--propagation", "private", "--"),
                *("/bin/sh", "-c", _ANCHOR.format(hosts=shlex.quote(str(self.hosts)))),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._anchor.stdout is not None
        ready, _, _ = select.select([self._anchor.stdout], [], [], 10)
        if not ready or self._anchor.stdout.readline() != b"ready\n":
            self._anchor.kill()
            _, err = self._anchor.communicate(timeout=5)
            raise RuntimeError(f"the test namespace did not start: {err.decode()}")

    @property
    def pid(self) -> int:
        return self._anchor.pid

    def enter(self, argv: Sequence[str], *, mount: bool = True) -> list[str]:
        """``argv`` inside the namespaces; without ``mount``, only inside the network one."""
        return ["nsenter", "-t", str(self.pid), "-n", *(["-m"] if mount else []), "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.enter(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{shlex.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def spawn(
        self, argv: Sequence[str], *, mount: bool = True, **kw: object
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside; it is stopped with the namespace if still up."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.enter(argv, mount=mount), **kw)  # type: ignore[call-overload]
        self._children.append(proc)
        return proc

    def add_address(self, address: str) -> None:
        """Make ``address`` one of the namespace's own, on its loopback interface."""
        self.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])

    def map_name(self, name: str, address: str) -> None:
        """Resolve ``name`` to ``address`` inside (the bind mount follows the file's inode)."""
        with self.hosts.open("a") as f:
            f.write(f"{address} {name}\n")

    def interfaces(self) -> list[str]:
        out = self.run(["ip", "-o", "link", "show"]).stdout
        return [line.split(":")[1].strip() for line in out.splitlines()]

    def routes(self) -> list[str]:
        """Every route in the main tables, IPv4 and IPv6: where packets could go other than lo."""
        v4 = self.run(["ip", "-4", "route", "show", "table", "main"]).stdout
        v6 = self.run(["ip", "-6", "route", "show", "table", "main"]).stdout
        return [line for line in (v4 + v6).splitlines() if line.strip()]

    @staticmethod
    def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in reversed(self._children):
            self.stop_process(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if self._anchor.stdin is not None:
            with contextlib.suppress(OSError):
                self._anchor.stdin.close()
        try:
            self._anchor.wait(5)
        except subprocess.TimeoutExpired:
            self._anchor.kill()
            self._anchor.wait()
        for stream in (self._anchor.stdout, self._anchor.stderr):
            if stream is not None:
                stream.close()
