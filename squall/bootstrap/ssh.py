"""SSH to the controllers: pinned host keys, explicit client keys, patient retries, clear failures.

Instances take a minute or two to boot, so connecting is retried until a deadline, with a progress
line per controller saying why it is still waiting. Failures that waiting cannot fix (no key to
offer, a key the node refuses, a host key other than the pinned one) stop at once with one line
naming the fix. Nothing here reads ``~/.ssh/config``, ``~/.ssh/known_hosts`` or default key
files: squall offers exactly the keys it says it offers and trusts exactly the key it pinned.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import shlex
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from squall.assets.hostkeys import HostKey
from squall.bootstrap.progress import Report, Update, countdown, silent
from squall.errors import SquallError

USER = "core"
SSH_PORT = 22
# Production runs privileged steps through sudo; -n makes a missing sudo rule fail instead of
# waiting for a password nobody will type.
SUDO: tuple[str, ...] = ("sudo", "-n")


class SSHError(SquallError):
    """SSH to a controller failed in a way the user has to fix."""


@dataclass(frozen=True)
class Controller:
    name: str  # "controller-0"
    index: int
    public_address: str
    port: int = SSH_PORT

    @property
    def label(self) -> str:
        return f"{self.name} ({self.public_address})"


@dataclass(frozen=True)
class ClientKeys:
    """The keys squall offers, and where they came from, for error messages."""

    keys: tuple[asyncssh.SSHKeyPair, ...]
    source: str  # "ssh-agent" or "key file PATH"

    def fingerprints(self) -> list[str]:
        return [fingerprint(k.key_public_data) for k in self.keys]

    def describe(self) -> str:
        return f"{self.source} key(s) {', '.join(self.fingerprints())}"


def fingerprint(wire: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key in SSH wire format."""
    digest = base64.b64encode(hashlib.sha256(wire).digest()).decode()
    return f"SHA256:{digest.rstrip('=')}"


def authorized_key_fingerprint(line: str) -> str | None:
    """The fingerprint of an authorized_keys-style line, or None if it is not one."""
    fields = line.split()
    try:
        return fingerprint(base64.b64decode(fields[1], validate=True)) if len(fields) > 1 else None
    except ValueError:
        return None


# Credentials


def key_file_keys(path: str) -> ClientKeys:
    """The private key named by ``ssh_private_key_file``, checked the way OpenSSH checks it."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise SSHError(
            f"ssh_private_key_file {p}: no such file; point it at the private half of "
            "ssh_authorized_key, or remove it to use ssh-agent"
        ) from None
    except OSError as err:
        raise SSHError(f"ssh_private_key_file {p}: cannot read it ({err.strerror})") from None
    if not stat.S_ISREG(mode):
        raise SSHError(f"ssh_private_key_file {p}: not a regular file; point it at a private key")
    if mode & 0o077:
        raise SSHError(
            f"ssh_private_key_file {p}: readable by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {p}"
        )
    try:
        key = asyncssh.read_private_key(p)
    except asyncssh.KeyImportError as err:
        if "assphrase" in str(err):
            raise SSHError(
                f"ssh_private_key_file {p}: the key is encrypted; load it with 'ssh-add {p}' "
                "and remove ssh_private_key_file to use ssh-agent"
            ) from None
        raise SSHError(
            f"ssh_private_key_file {p}: not a private key squall can read ({err}); "
            "use an OpenSSH or PEM private key"
        ) from None
    except OSError as err:
        raise SSHError(f"ssh_private_key_file {p}: cannot read it ({err.strerror})") from None
    return ClientKeys((asyncssh.load_keypairs([key])[0],), f"key file {p}")


class Credentials:
    """Where client keys come from; holds the agent connection open while keys are in use."""

    def __init__(self, keys: ClientKeys, agent: asyncssh.SSHAgentClient | None = None) -> None:
        self.keys = keys
        self._agent = agent

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


async def load_credentials(key_file: str | None, env: Mapping[str, str]) -> Credentials:
    """Keys from ``key_file`` if given, else every key in the ssh-agent at ``SSH_AUTH_SOCK``."""
    if key_file:
        return Credentials(key_file_keys(key_file))
    sock = env.get("SSH_AUTH_SOCK", "")
    if not sock:
        raise SSHError(
            "no SSH key to log in to the controllers: SSH_AUTH_SOCK is not set and "
            "ssh_private_key_file is unset; start ssh-agent and ssh-add the private half of "
            "ssh_authorized_key, or set ssh_private_key_file in the cluster file"
        )
    agent = asyncssh.SSHAgentClient(sock)
    try:
        keys = await agent.get_keys()
    except (OSError, ValueError, asyncssh.Error) as err:
        # asyncssh reports a missing socket as a ValueError carrying the OS error's text.
        agent.close()
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise SSHError(
            f"ssh-agent at SSH_AUTH_SOCK={sock} does not answer ({reason}); start ssh-agent "
            "again and ssh-add your key, or set ssh_private_key_file in the cluster file"
        ) from None
    if not keys:
        agent.close()
        raise SSHError(
            "ssh-agent holds no keys; ssh-add the private half of ssh_authorized_key, "
            "or set ssh_private_key_file in the cluster file"
        )
    return Credentials(ClientKeys(tuple(keys), "ssh-agent"), agent)


# Commands on a connected controller


@dataclass(frozen=True)
class Result:
    exit_status: int
    stdout: str
    stderr: str


class Remote:
    """One controller behind an open SSH connection: the only way bootstrap touches a host."""

    def __init__(
        self,
        controller: Controller,
        conn: asyncssh.SSHClientConnection,
        privilege: Sequence[str] = SUDO,
    ) -> None:
        self.controller = controller
        self.conn = conn
        self.privilege = tuple(privilege)

    def command(self, argv: Sequence[str], *, privileged: bool = False) -> str:
        prefix = self.privilege if privileged else ()
        return shlex.join([*prefix, *argv])

    async def run(
        self, argv: Sequence[str], *, privileged: bool = False, timeout: float = 120.0
    ) -> Result:
        """Run a command; returns its result whatever the exit status."""
        command = self.command(argv, privileged=privileged)
        try:
            done = await self.conn.run(command, check=False, timeout=timeout)
        except asyncssh.TimeoutError:
            raise SSHError(
                f"{self.controller.label}: '{shlex.join(argv)}' did not finish in "
                f"{countdown(timeout)}; log in with 'ssh {USER}@{self.controller.public_address}' "
                "to see why, then re-run"
            ) from None
        except (OSError, asyncssh.Error) as err:
            raise SSHError(
                f"{self.controller.label}: connection lost while running '{shlex.join(argv)}' "
                f"({err}); re-run to continue"
            ) from None
        status = done.exit_status if done.exit_status is not None else -1
        return Result(status, _text(done.stdout), _text(done.stderr))

    async def check(
        self, argv: Sequence[str], *, privileged: bool = False, timeout: float = 120.0, fix: str
    ) -> str:
        """Run a command that must succeed; ``fix`` tells the user what to do when it does not."""
        result = await self.run(argv, privileged=privileged, timeout=timeout)
        if result.exit_status != 0:
            detail = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
            raise SSHError(
                f"{self.controller.label}: '{shlex.join(argv)}' failed with status "
                f"{result.exit_status} ({detail}); {fix}"
            )
        return result.stdout

    def start_sftp(self) -> contextlib.AbstractAsyncContextManager[asyncssh.SFTPClient]:
        return self.conn.start_sftp_client()


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# Connecting


@dataclass(frozen=True)
class ConnectOptions:
    timeout: float = 600.0  # how long to wait for all controllers to answer
    attempt_timeout: float = 15.0  # one TCP connect plus SSH handshake and login
    retry_every: float = 5.0
    privilege: tuple[str, ...] = SUDO
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


def host_key_mismatch(controller: Controller) -> SSHError:
    return SSHError(
        f"host key of {controller.label} does not match the key squall pinned; refusing to "
        "connect — the address may belong to another machine, or the instance was not created "
        "from squall's node config; check the instance (or run 'squall destroy' and apply "
        "again if it was replaced outside squall)"
    )


def auth_refused(controller: Controller, keys: ClientKeys, authorized_key: str | None) -> SSHError:
    expected = ""
    wanted = authorized_key_fingerprint(authorized_key or "")
    if wanted is not None and wanted not in keys.fingerprints():
        expected = f"; the node only authorizes ssh_authorized_key {wanted}, which was not offered"
    fix = (
        "ssh-add the private half of ssh_authorized_key"
        if keys.source == "ssh-agent"
        else "point ssh_private_key_file at the private half of ssh_authorized_key"
    )
    return SSHError(
        f"{controller.label}: authentication refused for user {USER} "
        f"(offered {keys.describe()}){expected}; {fix}"
    )


_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE}


def _waiting_reason(err: BaseException) -> str | None:
    """Why a connection attempt failed, if waiting longer might help."""
    if isinstance(err, ConnectionRefusedError):
        return "port closed"
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    if isinstance(err, OSError) and err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNOS:
        return err.strerror or type(err).__name__
    if isinstance(err, asyncssh.ConnectionLost | asyncssh.DisconnectError):
        # sshd may drop connections while the host is still starting (e.g. MaxStartups).
        return f"SSH handshake failed: {err.reason}" if err.reason else "SSH handshake failed"
    return None


def _gave_up(controller: Controller, waited: float, reason: str) -> SSHError:
    if reason == "host unreachable":
        return SSHError(
            f"{controller.label}: host unreachable for {countdown(waited)} (no route to it); "
            "check that the instance is running with a public address and that your network "
            "can reach it, then re-run"
        )
    return SSHError(
        f"{controller.label}: no SSH login after {countdown(waited)} (last: {reason}); the "
        "instance may have failed to boot — read its console with 'aws ec2 "
        "get-console-output', and check that port 22 is open to you, then re-run"
    )


async def connect(
    controller: Controller,
    host_key: HostKey,
    creds: Credentials,
    *,
    deadline: float,
    options: ConnectOptions,
    report: Report = silent,
    authorized_key: str | None = None,
) -> asyncssh.SSHClientConnection:
    """Connect to one controller, retrying until ``deadline`` (on ``options.clock``)."""
    key = f"{controller.name} {controller.public_address}"
    started = options.clock()
    reason = "connecting"
    pinned = asyncssh.import_public_key(host_key.public_key)
    while True:
        left = deadline - options.clock()
        if left <= 0:
            raise _gave_up(controller, options.clock() - started, reason)
        report(Update(key, f"waiting for SSH ({reason})", left))
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    controller.public_address,
                    port=controller.port,
                    username=USER,
                    config=None,
                    known_hosts=([pinned], [], []),
                    server_host_key_algs=["ssh-ed25519"],
                    client_keys=list(creds.keys.keys),
                    agent_path=None,
                    preferred_auth=["publickey"],
                    gss_auth=False,
                    gss_kex=False,
                    connect_timeout=None,
                    keepalive_interval=30,
                ),
                timeout=min(options.attempt_timeout, left),
            )
        except asyncssh.HostKeyNotVerifiable:
            raise host_key_mismatch(controller) from None
        except asyncssh.KeyExchangeFailed:
            # The only algorithm squall allows is the pinned key's: a host without it fails here.
            raise host_key_mismatch(controller) from None
        except asyncssh.PermissionDenied:
            raise auth_refused(controller, creds.keys, authorized_key) from None
        except Exception as err:
            why = _waiting_reason(err)
            if why is None:
                raise SSHError(f"{controller.label}: SSH failed ({err}); re-run to retry") from None
            cut_short = left < options.attempt_timeout and why == "no answer"
            # An attempt the deadline cut short says nothing new about the host.
            if not (cut_short and reason != "connecting"):
                reason = why
            await options.sleep(max(0.0, min(options.retry_every, deadline - options.clock())))
            continue
        report(Update(key, "connected"))
        return conn


@contextlib.asynccontextmanager
async def connect_all(
    controllers: Sequence[Controller],
    host_keys: Mapping[int, HostKey],
    creds: Credentials,
    *,
    options: ConnectOptions | None = None,
    report: Report = silent,
    authorized_key: str | None = None,
) -> AsyncIterator[list[Remote]]:
    """Connect to every controller at once; yields one :class:`Remote` per controller, in order."""
    options = options or ConnectOptions()
    deadline = options.clock() + options.timeout
    tasks = [
        asyncio.ensure_future(
            connect(
                c,
                host_keys[c.index],
                creds,
                deadline=deadline,
                options=options,
                report=report,
                authorized_key=authorized_key,
            )
        )
        for c in controllers
    ]
    try:
        # A failure waiting cannot fix stops the others too: the user has to act anyway.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        errors = [t.exception() for t in tasks if t.done() and t.exception() is not None]
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more controller(s) failed)" if len(errors) > 1 else ""
            if isinstance(first, SquallError):
                raise SSHError(f"{first}{more}") from None
            raise first  # type: ignore[misc]
        remotes = [
            Remote(c, t.result(), options.privilege)
            for c, t in zip(controllers, tasks, strict=True)
        ]
        yield remotes
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conns = [t.result() for t in tasks if not t.cancelled() and t.exception() is None]
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.wait_closed()
