"""An emulated AWS on loopback, for the demo and the tests.

A moto server runs in a child process (moto reads its image list from ``MOTO_AMIS_PATH`` when
it is first imported, so it gets a fresh interpreter), listening on a free port of 127.0.0.1.
It is seeded with Fedora CoreOS and Flatcar images under their real owners, names and
descriptions, and with Route53 hosted zones whose ids are chosen by the caller, so that a
cluster file can name its zone id before the zone exists.

The instances it "launches" have fictitious public addresses: nothing may ever connect to
them. Only the server's own loopback endpoint is ever contacted.

Where moto differs from AWS in ways squall meets (moto 5.2):

- filled in here (see ``_fill_moto_gaps``): subnet hostname-type and AAAA-record settings,
  RunInstances' ClientToken, gp3 Iops of instance volumes;
- left as they are: no StartInstanceRefresh (squall warns and carries on); launch template
  metadata options are not applied to the instances a group launches; new security groups get
  an IPv6 egress rule by default; instances, load balancers and DNS changes are ready at once
  and network load balancers leave no network interfaces behind, so the waits and the
  DependencyViolation retries are exercised only by real AWS (and the engine's own tests).

    with emulator.start({"aws.example.com": "Z3PAABBCFAKEC0"}) as aws:
        os.environ.update(aws.env())

or, from a shell: ``python -m squall.emulator --zone aws.example.com=Z3PAABBCFAKEC0
--env-file FILE`` (runs until SIGTERM, and writes ``export`` lines to FILE once ready).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from squall.errors import SquallError

FEDORA_COREOS_OWNER = "125523088429"
FLATCAR_OWNER = "075585003325"
ACCOUNT_ID = "123456789012"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def images() -> list[dict[str, Any]]:
    """Two builds per stream and architecture, so that 'newest wins' has a loser."""
    out: list[dict[str, Any]] = []
    n = 0

    def add(name: str, description: str, owner: str, arch: str, created: str) -> None:
        nonlocal n
        n += 1
        out.append(
            {
                "ami_id": f"ami-{n:017x}",
                "name": name,
                "description": description,
                "owner_id": owner,
                "public": True,
                "virtualization_type": "hvm",
                "architecture": arch,
                "state": "available",
                "image_type": "machine",
                "hypervisor": "xen",
                "root_device_name": "/dev/xvda",
                "root_device_type": "ebs",
                "sriov": "simple",
                "creation_date": created,
            }
        )

    fcos = {"stable": "42.20250803.3.0", "testing": "42.20250811.2.0", "next": "43.20250812.1.0"}
    for stream, version in fcos.items():
        for arch in ("x86_64", "aarch64"):
            ec2_arch = "x86_64" if arch == "x86_64" else "arm64"
            for v, date in (("41.20250315.3.0", "2025-03-31"), (version, "2025-08-18")):
                add(
                    f"fedora-coreos-{v}-{arch}",
                    f"Fedora CoreOS {stream} {v}",
                    FEDORA_COREOS_OWNER,
                    ec2_arch,
                    f"{date}T12:00:00.000Z",
                )
    flatcar = {"stable": "4230.2.2", "beta": "4372.1.0", "alpha": "4385.0.0"}
    for channel, version in flatcar.items():
        for arch in ("x86_64", "arm64"):
            suffix = "-hvm" if arch == "x86_64" else "-arm64-hvm"
            for v, date in (("4152.2.3", "2025-04-02"), (version, "2025-08-20")):
                add(
                    f"Flatcar-{channel}-{v}{suffix}",
                    f"Flatcar Container Linux {channel} {v}",
                    FLATCAR_OWNER,
                    arch,
                    f"{date}T09:30:00.000Z",
                )
    return out


@dataclass
class EmulatedAws:
    endpoint: str
    region: str
    zones: dict[str, str]  # name → hosted zone id
    process: subprocess.Popen[str] = field(repr=False)

    def env(self) -> dict[str, str]:
        """Environment for boto3 (and squall) to use this emulator and nothing else."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **DUMMY_CREDENTIALS,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmulatedAws:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start(
    zones: Mapping[str, str] | None = None, *, region: str = "us-east-1", timeout: float = 60
) -> EmulatedAws:
    """Start an emulated AWS; ``zones`` maps zone names to the hosted zone ids they get."""
    args = [sys.executable, "-m", "squall.emulator", "--watch-stdin", "--region", region]
    for name, zone_id in (zones or {}).items():
        args += ["--zone", f"{name}={zone_id}"]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise SquallError(
            "the emulated AWS did not start; run 'python -m squall.emulator' to see why"
        )
    info = json.loads(line)
    return EmulatedAws(info["endpoint"], region, info["zones"], proc)


# --- the child process ------------------------------------------------------------------


def _fill_moto_gaps() -> None:
    """Teach moto two things real AWS does that squall relies on.

    - ModifySubnetAttribute with PrivateDnsHostnameTypeOnLaunch and
      EnableResourceNameDnsAAAARecordOnLaunch: moto accepts and drops them.
    - RunInstances' ClientToken: moto launches again for a token it has seen, where AWS
      returns the first launch.
    - RunInstances' block device Iops: moto gives every gp3 volume the default 3000.
    """
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.subnets import Subnets

    original_modify = Subnets.modify_subnet_attribute

    def modify_subnet_attribute(self: Any) -> Any:
        result = original_modify(self)
        subnet = self.ec2_backend.get_subnet(self._get_param("SubnetId"))
        options = subnet.private_dns_name_options_on_launch
        hostname_type = self._get_param("PrivateDnsHostnameTypeOnLaunch")
        if hostname_type:
            options["HostnameType"] = hostname_type
        aaaa = self._get_param("EnableResourceNameDnsAAAARecordOnLaunch.Value")
        if aaaa is not None:
            options["EnableResourceNameDnsAAAARecord"] = str(aaaa).lower() == "true"
        return result

    Subnets.modify_subnet_attribute = modify_subnet_attribute  # type: ignore[method-assign]

    original_run = InstanceBackend.run_instances
    lock = threading.Lock()

    def run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = kwargs.get("client_token")
        with lock:
            if token and token != "ABCDE":
                for reservation in self.reservations.values():
                    if any(i.client_token == token for i in reservation.instances):
                        return reservation
            reservation = original_run(self, *args, **kwargs)
        wanted = {
            m.get("DeviceName"): m.get("Ebs", {}).get("Iops")
            for m in kwargs.get("block_device_mappings") or []
        }
        for instance in reservation.instances:
            for device, mapping in instance.get_block_device_mapping:
                if wanted.get(device):
                    self.get_volume(mapping.volume_id).iops = int(wanted[device])
        return reservation

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]


def _serve(region: str, zones: dict[str, str], env_file: Path | None, watch_stdin: bool) -> None:
    amis = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    json.dump(images(), amis)
    amis.close()
    os.environ["MOTO_AMIS_PATH"] = amis.name
    for k, v in DUMMY_CREDENTIALS.items():
        os.environ[k] = v
    os.environ.pop("AWS_ENDPOINT_URL", None)

    # The server's request log would drown the demo's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    import boto3
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.route53.models import HostedZoneIdentifier
    from moto.utilities.id_generator import moto_id_manager

    _fill_moto_gaps()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    r53 = boto3.client("route53", endpoint_url=endpoint, region_name=region)
    made = {}
    for name, zone_id in zones.items():
        # moto names zones with their trailing dot.
        moto_id_manager.set_custom_id(HostedZoneIdentifier(ACCOUNT_ID, f"{name}.", None), zone_id)
        got = r53.create_hosted_zone(Name=name, CallerReference=f"squall-emulator-{name}")
        made[name] = got["HostedZone"]["Id"].rsplit("/", 1)[-1]

    if env_file is None:
        print(json.dumps({"endpoint": endpoint, "zones": made}), flush=True)
    else:
        lines = [f"export AWS_ENDPOINT_URL={endpoint}", f"export AWS_REGION={region}"]
        lines += [f"export {k}={v}" for k, v in DUMMY_CREDENTIALS.items()]
        env_file.write_text("\n".join(lines) + "\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if watch_stdin:
        # The parent holds our stdin open; when it goes away (even killed), so do we.
        def watch() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        Path(amis.name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m squall.emulator", description=__doc__.split("\n")[0]
    )
    p.add_argument("--region", default="us-east-1")
    p.add_argument(
        "--zone", action="append", default=[], metavar="NAME=ID", help="a hosted zone to create"
    )
    p.add_argument("--env-file", type=Path, help="write shell exports here once ready")
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = p.parse_args(argv)
    zones = {}
    for z in args.zone:
        name, sep, zone_id = z.partition("=")
        if not sep or not name or not zone_id:
            p.error(f"--zone {z!r}: write NAME=ID, e.g. aws.example.com=Z3PAABBCFAKEC0")
        zones[name.rstrip(".")] = zone_id
    _serve(args.region, zones, args.env_file, args.watch_stdin)


if __name__ == "__main__":
    main()
