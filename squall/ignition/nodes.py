"""What every node runs: the kubelet, containerd, etcd on controllers, and the bootstrap steps.

Controllers and workers share one base (kernel modules, sysctls, containerd, the kubelet);
controllers add etcd, the asset layout script (which squall.bootstrap runs over SSH) and the
one-shot bootstrap. The two operating systems differ in a few places, gathered in
:class:`Platform`: Fedora CoreOS runs containers with podman and enforces SELinux; Flatcar runs
them with docker, has an ``etcd`` user and keeps local programs in ``/opt/bin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from squall.assets import Assets
from squall.assets.etcd import DATA_DIR as ETCD_DATA_DIR
from squall.assets.etcd import ENV_FILE as ETCD_ENV_FILE
from squall.assets.etcd import etcd_env
from squall.assets.hostkeys import REMOTE_PRIVATE_PATH as HOST_KEY_PRIVATE
from squall.assets.hostkeys import REMOTE_PUBLIC_PATH as HOST_KEY_PUBLIC
from squall.assets.manifests._objects import INGRESS_LABEL
from squall.assets.versions import KUBERNETES_VERSION
from squall.ignition import formats, scripts
from squall.ignition.model import (
    SCRIPT_MODE,
    Config,
    Directory,
    Dropin,
    File,
    Owner,
    Unit,
    User,
)
from squall.spec import Spec

KUBELET_IMAGE = f"quay.io/poseidon/kubelet:{KUBERNETES_VERSION}"
ETCD_IMAGE = "quay.io/coreos/etcd:v3.6.5"

CLUSTER_DOMAIN = "cluster.local"
CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"
CONTROLLER_LABEL = "node.kubernetes.io/controller=true"
CONTROLLER_TAINT = "node-role.kubernetes.io/controller:NoSchedule"
WORKER_LABEL = "node.kubernetes.io/node="

# Where things live on a node; the SSH bootstrap relies on these names.
BOOTSTRAP_KUBECONFIG = "/etc/kubernetes/kubeconfig"
KUBELET_CONFIG = "/etc/kubernetes/kubelet.yaml"
CA_CERT = "/etc/kubernetes/ca.crt"
STATIC_PODS = "/etc/kubernetes/manifests"
ETCD_TLS = "/etc/ssl/etcd"
METADATA_FILE = "/run/metadata/squall"
ASSETS_DIR = "/home/core/assets"
BOOTSTRAP_DIR = "/opt/bootstrap"
LAYOUT_SCRIPT = f"{BOOTSTRAP_DIR}/layout"
APPLY_SCRIPT = f"{BOOTSTRAP_DIR}/apply"
BOOTSTRAP_UNIT = "bootstrap.service"
BOOTSTRAP_DONE = f"{BOOTSTRAP_DIR}/bootstrap.done"
# systemd stops the bootstrap unit after this many seconds. Its script gives up on its own after
# about 10 minutes of retries; this also bounds image pulls and requests that hang. squall waits
# longer than this for the unit, so the unit fails first and squall can quote its journal.
BOOTSTRAP_UNIT_TIMEOUT = 840
METADATA_UNIT = "node-metadata.service"
CA_FROM_KUBECONFIG = (
    '/bin/sh -c \'sed -n "s/^ *certificate-authority-data: *//p" '
    f"{BOOTSTRAP_KUBECONFIG} | base64 -d >{CA_CERT}'"
)

# Kubernetes nodes forward pod traffic, and the CNI's VXLAN traffic must not be dropped by
# reverse-path filtering; inotify limits are raised for pods that watch many files. IPv6
# forwarding is safe to turn on: both OSes handle router advertisements in userspace
# (NetworkManager, systemd-networkd), so the node keeps its default IPv6 route.
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.*.rp_filter": "0",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "fs.inotify.max_user_watches": "524288",
    "fs.inotify.max_user_instances": "8192",
}
KERNEL_MODULES = ("br_netfilter", "nf_conntrack")


@dataclass(frozen=True)
class Platform:
    os: str
    runtime: str  # the container CLI systemd units run
    bin_dir: str  # where squall's own programs go
    selinux: bool
    etcd_uid: int | None  # the OS's etcd user, if it has one

    @property
    def runtime_unit(self) -> str | None:
        """The daemon the container CLI needs, if it is not daemonless."""
        return "docker.service" if self.runtime.endswith("docker") else None

    def volume(self, host: str, container: str | None = None, *options: str) -> list[str]:
        """A bind mount; ``z``/``Z`` relabel options only mean something under SELinux."""
        opts = [o for o in options if self.selinux or o not in ("z", "Z")]
        spec = f"{host}:{container or host}" + (f":{','.join(opts)}" if opts else "")
        return [f"--volume={spec}"]


PLATFORMS = {
    "fedora-coreos": Platform("fedora-coreos", "/usr/bin/podman", "/usr/local/bin", True, None),
    # Flatcar's etcd user and group have the fixed id 232.
    "flatcar": Platform("flatcar", "/usr/bin/docker", "/opt/bin", False, 232),
}


def platform(spec: Spec) -> Platform:
    return PLATFORMS[spec.os]


# Building blocks.


def container_service(
    p: Platform,
    *,
    description: str,
    name: str,
    run: Sequence[str],
    unit: Sequence[tuple[str, str]] = (),
    service: Sequence[tuple[str, formats.UnitValue]] = (),
) -> str:
    """A unit that runs one container in the foreground and removes it when it stops."""
    after = [("Wants", "network-online.target"), ("After", "network-online.target")]
    if p.runtime_unit:
        after += [("Requires", p.runtime_unit), ("After", p.runtime_unit)]
    return formats.unit(
        {
            "Unit": [("Description", description), *after, *unit],
            "Service": [
                *service,
                ("ExecStartPre", f"-{p.runtime} rm --force {name}"),
                ("ExecStart", [p.runtime, "run", "--rm", f"--name={name}", *run]),
                ("ExecStop", f"-{p.runtime} stop {name}"),
                ("Restart", "always"),
                ("RestartSec", "10"),
            ],
            "Install": [("WantedBy", "multi-user.target")],
        }
    )


def parse_taint(taint: str) -> dict[str, str]:
    """``key[=value]:Effect`` as a Kubernetes Taint object."""
    rest, _, effect = taint.rpartition(":")
    key, _, value = rest.partition("=")
    return {"key": key, "effect": effect} | ({"value": value} if value else {})


def kubelet_config(spec: Spec, *, taints: Sequence[str], static_pods: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": CA_CERT},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": [spec.cluster_dns_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "containerRuntimeEndpoint": CONTAINERD_SOCKET,
        "healthzPort": 0,
        "readOnlyPort": 0,
        "resolvConf": "/run/systemd/resolve/resolv.conf",
        # The client certificate renews itself through the CSR API; the serving certificate
        # stays self-signed because nothing in the cluster approves serving CSRs.
        "rotateCertificates": True,
        "shutdownGracePeriod": "45s",
        "shutdownGracePeriodCriticalPods": "30s",
        "volumePluginDir": "/var/lib/kubelet/volumeplugins",
    }
    if taints:
        config["registerWithTaints"] = [parse_taint(t) for t in taints]
    if static_pods:
        config["staticPodPath"] = STATIC_PODS
    return config


def kubelet_unit(spec: Spec, p: Platform, labels: Sequence[str]) -> str:
    run = [
        "--privileged",
        "--pid=host",
        "--network=host",
        *p.volume("/etc/cni/net.d", None, "ro", "z"),
        *p.volume("/etc/kubernetes", None, "ro", "z"),
        *p.volume("/etc/machine-id", None, "ro"),
        *p.volume("/usr/lib/os-release", "/etc/os-release", "ro"),
        *p.volume("/lib/modules", None, "ro"),
        *p.volume("/run"),
        *p.volume("/sys/fs/cgroup"),
        *p.volume("/var/lib/containerd"),
        *p.volume("/var/lib/kubelet", None, "rshared", "z"),
        *p.volume("/var/log"),
        *p.volume("/opt/cni/bin", None, "z"),
    ]
    if p.selinux:
        run += [*p.volume("/etc/selinux"), *p.volume("/sys/fs/selinux")]
        run += p.volume("/var/run/lock", None, "z")
    flags = [
        f"--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}",
        f"--config={KUBELET_CONFIG}",
        "--kubeconfig=/var/lib/kubelet/kubeconfig",
        "--hostname-override=${AWS_HOSTNAME}",
        "--provider-id=aws:///${AWS_AVAILABILITY_ZONE}/${AWS_INSTANCE_ID}",
        f"--node-labels={','.join(labels)}",
    ]
    if spec.cloud_provider == "external":
        flags.append("--cloud-provider=external")
    return container_service(
        p,
        description="Kubelet (container)",
        name="kubelet",
        run=[*run, KUBELET_IMAGE, *flags],
        unit=[
            ("Requires", METADATA_UNIT),
            ("After", METADATA_UNIT),
            ("Wants", "containerd.service"),
            ("After", "containerd.service"),
            ("Wants", "rpc-statd.service"),
        ],
        service=[
            ("EnvironmentFile", METADATA_FILE),
            # The CA already travels inside the bootstrap kubeconfig; user data is too
            # scarce to carry it twice.
            ("ExecStartPre", CA_FROM_KUBECONFIG),
            (
                "ExecStartPre",
                [
                    "/bin/mkdir",
                    "-p",
                    "/etc/cni/net.d",
                    "/opt/cni/bin",
                    "/var/lib/kubelet/volumeplugins",
                ],
            ),
            # The kubelet container starts the pods' cgroups; systemd must let it.
            ("Delegate", "yes"),
        ],
    )


def metadata_unit(p: Platform) -> str:
    return formats.unit(
        {
            "Unit": [
                ("Description", "Instance identity for the kubelet (IMDSv2)"),
                ("Wants", "network-online.target"),
                ("After", "network-online.target"),
            ],
            "Service": [
                ("Type", "oneshot"),
                ("RemainAfterExit", "true"),
                ("ExecStart", f"/bin/bash {p.bin_dir}/node-metadata"),
            ],
        }
    )


def containerd_config(p: Platform) -> str:
    """containerd's CRI plugin with runc on the systemd cgroup driver, as the kubelet expects.

    Written in config version 2, which both containerd 1.7 and 2.x read.
    """
    cri: dict[str, Any] = {
        "containerd": {
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": True},
                }
            }
        }
    }
    if p.selinux:
        cri = {"enable_selinux": True, **cri}
    return formats.toml({"version": 2, "plugins": {"io.containerd.grpc.v1.cri": cri}})


def base(
    spec: Spec,
    assets: Assets,
    *,
    labels: Sequence[str],
    taints: Sequence[str],
    controller: bool,
) -> Config:
    """Everything a node needs to join the cluster as a kubelet."""
    p = platform(spec)
    kubelet_yaml = yaml.safe_dump(
        kubelet_config(spec, taints=taints, static_pods=controller), sort_keys=True
    )
    files = [
        File.text(BOOTSTRAP_KUBECONFIG, assets.bootstrap_kubeconfig, mode=0o600),
        File.text(KUBELET_CONFIG, kubelet_yaml),
        File.text(f"{p.bin_dir}/node-metadata", scripts.NODE_METADATA, mode=SCRIPT_MODE),
        File.text("/etc/containerd/config.toml", containerd_config(p), overwrite=True),
        File.text("/etc/modules-load.d/kubernetes.conf", "\n".join(KERNEL_MODULES) + "\n"),
        File.text(
            "/etc/sysctl.d/80-kubernetes.conf",
            "".join(f"{k}={v}\n" for k, v in SYSCTLS.items()),
        ),
        # The kubelet's graceful shutdown can only delay a shutdown as long as logind allows.
        File.text(
            "/etc/systemd/logind.conf.d/inhibitors.conf",
            formats.unit({"Login": [("InhibitDelayMaxSec", "45s")]}),
        ),
    ]
    if spec.networking == "flannel":
        # flannel sets its VXLAN device's MAC address itself; udev must not assign another.
        files.append(
            File.text(
                "/etc/systemd/network/50-flannel.link",
                formats.unit(
                    {
                        "Match": [("OriginalName", "flannel*")],
                        "Link": [("MACAddressPolicy", "none")],
                    }
                ),
            )
        )
    containerd_dropins: tuple[Dropin, ...] = ()
    if spec.os == "flatcar":
        # Flatcar's containerd reads its packaged config unless pointed at ours.
        containerd_dropins = (
            Dropin(
                "10-squall.conf",
                formats.unit(
                    {"Service": [("Environment", "CONTAINERD_CONFIG=/etc/containerd/config.toml")]}
                ),
            ),
        )
    units = [
        Unit("kubelet.service", kubelet_unit(spec, p, labels), enabled=True),
        Unit(METADATA_UNIT, metadata_unit(p)),
        Unit("containerd.service", enabled=True, dropins=containerd_dropins),
    ]
    if spec.os == "fedora-coreos":
        # containerd alone serves the kubelet; docker would only compete for it.
        units.append(Unit("docker.service", mask=True))
    else:
        units += [
            Unit("docker.service", enabled=True),
            # Reboots for OS updates are the operator's call, not an uncoordinated lock holder's.
            Unit("locksmithd.service", mask=True),
        ]
    return Config(
        files=tuple(files),
        units=tuple(units),
        users=(User("core", ssh_authorized_keys=(spec.ssh_authorized_key,)),),
    )


# Controllers.


def etcd_unit(p: Platform) -> str:
    run = [
        "--network=host",
        f"--env-file={ETCD_ENV_FILE}",
        *p.volume(ETCD_DATA_DIR, None, "rw", "Z"),
        *p.volume(ETCD_TLS, None, "ro", "z"),
    ]
    if p.etcd_uid is not None:
        run.append(f"--user={p.etcd_uid}:{p.etcd_uid}")
    return container_service(
        p,
        description="etcd member (container)",
        name="etcd",
        run=[*run, ETCD_IMAGE],
        service=[("TimeoutStartSec", "0"), ("LimitNOFILE", "40000")],
    )


def bootstrap_unit(spec: Spec, p: Platform) -> str:
    after = [("Wants", "network-online.target"), ("After", "network-online.target")]
    if p.runtime_unit:
        after += [("Requires", p.runtime_unit), ("After", p.runtime_unit)]
    run = [
        p.runtime,
        "run",
        "--rm",
        "--name=bootstrap",
        "--network=host",
        f"--env=API_SERVER_NAME={spec.api_fqdn}",
        *p.volume("/etc/kubernetes/pki", None, "ro", "z"),
        *p.volume(f"{BOOTSTRAP_DIR}/assets", "/assets", "ro", "Z"),
        *p.volume(APPLY_SCRIPT, "/apply", "ro", "Z"),
        "--entrypoint=/apply",
        KUBELET_IMAGE,
    ]
    return formats.unit(
        {
            "Unit": [
                ("Description", "Apply the cluster manifests, once"),
                ("ConditionPathExists", f"!{BOOTSTRAP_DONE}"),
                *after,
            ],
            "Service": [
                ("Type", "oneshot"),
                ("RemainAfterExit", "true"),
                ("TimeoutStartSec", str(BOOTSTRAP_UNIT_TIMEOUT)),
                ("ExecStartPre", f"-{p.runtime} rm --force bootstrap"),
                ("ExecStart", run),
                ("ExecStartPost", f"/bin/touch {BOOTSTRAP_DONE}"),
            ],
        }
    )


def controller_config(spec: Spec, index: int, assets: Assets) -> Config:
    p = platform(spec)
    etcd_owner = Owner(id=p.etcd_uid) if p.etcd_uid is not None else None
    node = base(spec, assets, labels=[CONTROLLER_LABEL], taints=[CONTROLLER_TAINT], controller=True)
    return node.merge(
        Config(
            files=(
                File.text(ETCD_ENV_FILE, formats.env_file(etcd_env(spec, index))),
                # squall pinned this key before the instance existed, so its first SSH
                # connection is verified like every later one.
                File.text(HOST_KEY_PRIVATE, assets.host_keys[index].private_pem, mode=0o600),
                File.text(HOST_KEY_PUBLIC, assets.host_keys[index].public_line + "\n"),
                File.text(LAYOUT_SCRIPT, scripts.LAYOUT, mode=0o700),
                File.text(APPLY_SCRIPT, scripts.APPLY, mode=0o700),
            ),
            directories=(
                Directory(ETCD_DATA_DIR, mode=0o700, user=etcd_owner, group=etcd_owner),
                Directory(STATIC_PODS, mode=0o755),
            ),
            units=(
                Unit("etcd-member.service", etcd_unit(p), enabled=True),
                Unit(BOOTSTRAP_UNIT, bootstrap_unit(spec, p)),
            ),
        )
    )


def worker_config(
    spec: Spec, assets: Assets, *, labels: Sequence[str], taints: Sequence[str], ingress: bool
) -> Config:
    own = [WORKER_LABEL, *([f"{INGRESS_LABEL}=true"] if ingress else [])]
    return base(spec, assets, labels=[*own, *labels], taints=taints, controller=False)
