"""What a node finds on disk after Ignition: decoded from the user data, file by file."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from squall import ignition
from squall.assets.etcd import etcd_env
from squall.bootstrap.deliver import BOOTSTRAP_TIMEOUT

from .ignition_doc import Cluster, NodeDoc, exec_args, flag, systemd_complaints, unit_values

OSES = ["fedora-coreos", "flatcar"]


def controller(cluster: Cluster, index: int = 0, **overrides: object) -> NodeDoc:
    spec, bundle = cluster(**overrides)
    return NodeDoc.of(ignition.controller(spec, index, bundle).to_json())


def worker(cluster: Cluster, **overrides: object) -> NodeDoc:
    spec, bundle = cluster(**overrides)
    return NodeDoc.of(ignition.worker(spec, None, bundle).to_json())


def kubelet_args(node: NodeDoc) -> list[str]:
    return exec_args(node.unit("kubelet.service")["contents"])


def sourced(env_file: Path) -> dict[str, str]:
    """What bash makes of an environment file: the variables it adds to an empty environment."""

    def env_after(path: Path | str) -> dict[str, str]:
        out = subprocess.run(
            ["env", "-i", "bash", "--norc", "--noprofile", "-c", 'set -a; . "$0"; env -0', path],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        return dict(item.split("=", 1) for item in out.split("\0") if item)

    before = env_after("/dev/null")
    after = env_after(env_file)
    return {k: v for k, v in after.items() if before.get(k) != v}


@pytest.mark.parametrize("os", OSES)
def test_etcd_env_file_holds_etcd_env(cluster: Cluster, tmp_path: Path, os: str) -> None:
    spec, bundle = cluster(os=os, controller_count=3)
    for i in range(3):
        node = NodeDoc.of(ignition.controller(spec, i, bundle).to_json())
        path = tmp_path / f"etcd{i}.env"
        path.write_bytes(node.file("/etc/etcd/etcd.env"))
        # podman's and docker's --env-file take each KEY=value line literally, while bash
        # strips quotes, expands "$" and splits on blanks; reading the same values both ways
        # means the file holds nothing that readers could take differently.
        literal = dict(line.split("=", 1) for line in path.read_text().splitlines())
        assert literal == sourced(path) == etcd_env(spec, i)
        assert literal["ETCD_NAME"] == f"etcd{i}"


@pytest.mark.parametrize("os", OSES)
def test_etcd_runs_as_a_container_with_same_path_mounts(cluster: Cluster, os: str) -> None:
    node = controller(cluster, os=os)
    unit = node.unit("etcd-member.service")
    assert unit["enabled"] is True
    args = exec_args(unit["contents"])
    runtime = {"fedora-coreos": "/usr/bin/podman", "flatcar": "/usr/bin/docker"}[os]
    assert args[:2] == [runtime, "run"]
    assert any(a.startswith("quay.io/coreos/etcd:v3.") for a in args)
    mounts = {v.split(":")[0]: v.split(":")[1] for v in flag(args, "volume")}
    assert mounts == {"/var/lib/etcd": "/var/lib/etcd", "/etc/ssl/etcd": "/etc/ssl/etcd"}
    assert flag(args, "env-file") == ["/etc/etcd/etcd.env"]
    assert flag(args, "network") == ["host"]
    data_dir = node.directories()["/var/lib/etcd"]
    assert data_dir["mode"] == 0o700
    if os == "flatcar":
        # Flatcar's etcd user (232) owns the data and runs the member.
        assert flag(args, "user") == ["232:232"]
        assert data_dir["user"] == {"id": 232}
    else:
        assert flag(args, "user") == []
        assert all(v.endswith(("Z", "z")) for v in flag(args, "volume"))


@pytest.mark.parametrize("os", OSES)
def test_controller_kubelet_label_taint_and_static_pods(cluster: Cluster, os: str) -> None:
    node = controller(cluster, os=os)
    args = kubelet_args(node)
    assert flag(args, "node-labels") == ["node.kubernetes.io/controller=true"]
    config = node.yaml("/etc/kubernetes/kubelet.yaml")
    assert config["registerWithTaints"] == [
        {"key": "node-role.kubernetes.io/controller", "effect": "NoSchedule"}
    ]
    assert config["staticPodPath"] == "/etc/kubernetes/manifests"
    assert "/etc/kubernetes/manifests" in node.directories()


@pytest.mark.parametrize("os", OSES)
def test_worker_kubelet_labels_and_taints(cluster: Cluster, os: str) -> None:
    node = worker(
        cluster,
        os=os,
        worker_node_labels=["tier=web", "example.com/team=blue"],
        worker_node_taints=["dedicated=web:NoExecute", "spot:PreferNoSchedule"],
    )
    (labels,) = flag(kubelet_args(node), "node-labels")
    assert labels.split(",") == [
        "node.kubernetes.io/node=",
        "squall.dev/ingress=true",
        "tier=web",
        "example.com/team=blue",
    ]
    config = node.yaml("/etc/kubernetes/kubelet.yaml")
    assert config["registerWithTaints"] == [
        {"key": "dedicated", "value": "web", "effect": "NoExecute"},
        {"key": "spot", "effect": "PreferNoSchedule"},
    ]
    assert "staticPodPath" not in config
    units = node.units()
    assert "etcd-member.service" not in units and "bootstrap.service" not in units
    assert "/etc/etcd/etcd.env" not in node.files()


def test_worker_pool_uses_its_own_labels_taints_and_snippets(cluster: Cluster) -> None:
    pool = {
        "name": "gpu",
        "node_labels": ["pool=gpu"],
        "node_taints": ["nvidia.com/gpu=true:NoSchedule"],
        "snippets": [
            "variant: fcos\nversion: 1.4.0\nsystemd:\n  units:\n    - name: gpu.service\n"
        ],
    }
    spec, bundle = cluster(
        worker_node_labels=["main=yes"],
        worker_node_taints=["main=yes:NoSchedule"],
        worker_pools=[pool],
    )
    node = NodeDoc.of(ignition.worker(spec, spec.worker_pools[0], bundle).to_json())
    (labels,) = flag(kubelet_args(node), "node-labels")
    # Without ingress = true the pool is not behind the NLB's 80/443, so no ingress controller.
    assert labels == "node.kubernetes.io/node=,pool=gpu"
    spec, bundle = cluster(worker_pools=[{**pool, "ingress": True}])
    node = NodeDoc.of(ignition.worker(spec, spec.worker_pools[0], bundle).to_json())
    (labels,) = flag(kubelet_args(node), "node-labels")
    assert labels == "node.kubernetes.io/node=,squall.dev/ingress=true,pool=gpu"
    config = node.yaml("/etc/kubernetes/kubelet.yaml")
    assert config["registerWithTaints"] == [
        {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    ]
    assert "gpu.service" in node.units()
    main = NodeDoc.of(ignition.worker(spec, None, bundle).to_json())
    assert "gpu.service" not in main.units()


@pytest.mark.parametrize("os", OSES)
def test_kubelet_configuration(cluster: Cluster, os: str) -> None:
    node = worker(cluster, os=os, service_cidr="172.16.0.0/16")
    config = node.yaml("/etc/kubernetes/kubelet.yaml")
    assert config["kind"] == "KubeletConfiguration"
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert config["cgroupDriver"] == "systemd"
    assert config["clusterDNS"] == ["172.16.0.10"]
    assert config["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/ca.crt"
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authorization"]["mode"] == "Webhook"
    assert config["rotateCertificates"] is True
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"


@pytest.mark.parametrize("os", OSES)
def test_kubelet_container_identity_and_cloud_provider(cluster: Cluster, os: str) -> None:
    node = worker(cluster, os=os)
    unit = node.unit("kubelet.service")
    assert unit["enabled"] is True
    args = kubelet_args(node)
    runtime = {"fedora-coreos": "/usr/bin/podman", "flatcar": "/usr/bin/docker"}[os]
    assert args[:2] == [runtime, "run"]
    assert "quay.io/poseidon/kubelet:v1.36." in " ".join(args)
    assert flag(args, "provider-id") == ["aws:///${AWS_AVAILABILITY_ZONE}/${AWS_INSTANCE_ID}"]
    assert flag(args, "hostname-override") == ["${AWS_HOSTNAME}"]
    assert flag(args, "bootstrap-kubeconfig") == ["/etc/kubernetes/kubeconfig"]
    assert flag(args, "cloud-provider") == []
    assert unit_values(unit["contents"], "EnvironmentFile") == ["/run/metadata/squall"]
    assert "node-metadata.service" in unit_values(unit["contents"], "Requires")
    external = worker(cluster, os=os, cloud_provider="external")
    assert flag(kubelet_args(external), "cloud-provider") == ["external"]


@pytest.mark.parametrize("os", OSES)
def test_only_the_bootstrap_kubeconfig_and_own_host_key_are_secret(
    cluster: Cluster, os: str
) -> None:
    spec, bundle = cluster(os=os, controller_count=3)
    for index in range(3):
        node = NodeDoc.of(ignition.controller(spec, index, bundle).to_json())
        assert node.text("/etc/kubernetes/kubeconfig") == bundle.bootstrap_kubeconfig
        assert node.mode("/etc/kubernetes/kubeconfig") == 0o600
        own = bundle.host_keys[index]
        assert node.text("/etc/ssh/ssh_host_ed25519_key") == own.private_pem.decode()
        assert node.mode("/etc/ssh/ssh_host_ed25519_key") == 0o600
        assert node.text("/etc/ssh/ssh_host_ed25519_key.pub") == own.public_line + "\n"
        everything = str(node.doc) + "".join(node.text(p) for p in node.files())
        for secret in (f for f in bundle.files if f.secret):
            assert secret.content.decode() not in everything, secret.path
        others = [k for i, k in enumerate(bundle.host_keys) if i != index]
        assert all(k.private_pem.decode() not in everything for k in others)
        assert everything.count("PRIVATE KEY-----") == 2  # BEGIN and END of its own host key
    workers = NodeDoc.of(ignition.worker(spec, None, bundle).to_json())
    text = str(workers.doc) + "".join(workers.text(p) for p in workers.files())
    assert "PRIVATE KEY" not in text


@pytest.mark.parametrize("os", OSES)
def test_ssh_key_for_core(cluster: Cluster, os: str) -> None:
    spec, bundle = cluster(os=os)
    for user_data in (
        ignition.controller(spec, 0, bundle).to_json(),
        ignition.worker(spec, None, bundle).to_json(),
    ):
        users = NodeDoc.of(user_data).users()
        assert users["core"]["sshAuthorizedKeys"] == [spec.ssh_authorized_key]


@pytest.mark.parametrize("os", OSES)
def test_containerd_uses_the_systemd_cgroup_driver(cluster: Cluster, os: str) -> None:
    node = worker(cluster, os=os)
    config = tomllib.loads(node.text("/etc/containerd/config.toml"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert config["version"] == 2
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri.get("enable_selinux", False) is (os == "fedora-coreos")
    assert node.files()["/etc/containerd/config.toml"]["overwrite"] is True
    containerd = node.unit("containerd.service")
    assert containerd["enabled"] is True
    if os == "flatcar":
        (dropin,) = containerd["dropins"]
        assert unit_values(dropin["contents"], "Environment") == [
            "CONTAINERD_CONFIG=/etc/containerd/config.toml"
        ]
        assert node.unit("docker.service")["enabled"] is True
    else:
        assert node.unit("docker.service")["mask"] is True


@pytest.mark.parametrize("os", OSES)
def test_kernel_modules_and_sysctls(cluster: Cluster, os: str) -> None:
    node = worker(cluster, os=os)
    assert node.text("/etc/modules-load.d/kubernetes.conf").split() == [
        "br_netfilter",
        "nf_conntrack",
    ]
    sysctls = dict(
        line.split("=", 1) for line in node.text("/etc/sysctl.d/80-kubernetes.conf").splitlines()
    )
    assert sysctls["net.ipv4.ip_forward"] == "1"
    assert sysctls["net.ipv6.conf.all.forwarding"] == "1"
    assert int(sysctls["fs.inotify.max_user_watches"]) >= 16384


def test_flannel_link_only_with_flannel(cluster: Cluster) -> None:
    assert "/etc/systemd/network/50-flannel.link" not in worker(cluster).files()
    flannel = worker(cluster, networking="flannel")
    assert "MACAddressPolicy=none" in flannel.text("/etc/systemd/network/50-flannel.link")


@pytest.mark.parametrize("os", OSES)
def test_layout_and_one_shot_bootstrap(cluster: Cluster, os: str) -> None:
    spec, bundle = cluster(os=os, controller_count=3)
    for i in range(3):
        node = NodeDoc.of(ignition.controller(spec, i, bundle).to_json())
        bootstrap = node.unit("bootstrap.service")
        # Started over SSH on controller 0 only: never enabled to run at boot.
        assert "enabled" not in bootstrap
        text = bootstrap["contents"]
        assert unit_values(text, "ConditionPathExists") == ["!/opt/bootstrap/bootstrap.done"]
        assert unit_values(text, "Type") == ["oneshot"]
        assert unit_values(text, "ExecStartPost") == ["/bin/touch /opt/bootstrap/bootstrap.done"]
        # systemd ends the unit before squall stops waiting for it.
        (limit,) = unit_values(text, "TimeoutStartSec")
        assert 0 < int(limit) < BOOTSTRAP_TIMEOUT
        args = exec_args(text)
        assert flag(args, "env") == [f"API_SERVER_NAME={spec.api_fqdn}"]
        assert flag(args, "entrypoint") == ["/apply"]
        assert node.mode("/opt/bootstrap/layout") & 0o100
        assert node.text("/opt/bootstrap/layout").startswith("#!/bin/bash\n")
        apply = node.text("/opt/bootstrap/apply")
        assert "/etc/kubernetes/pki/admin.conf" in apply and "/assets/manifests" in apply
        # squall runs the layout script itself over SSH; no unit wraps it.
        assert not [u for u in node.units() if "layout" in u]


@pytest.mark.parametrize("os", OSES)
def test_units_parse_cleanly_with_systemd(cluster: Cluster, tmp_path: Path, os: str) -> None:
    node = controller(cluster, os=os, cloud_provider="external")
    units = {n: u["contents"] for n, u in node.units().items() if "contents" in u}
    assert set(units) == {
        "kubelet.service",
        "node-metadata.service",
        "etcd-member.service",
        "bootstrap.service",
    }
    assert systemd_complaints(units, tmp_path) == []
    # The harness must be able to fail.
    assert systemd_complaints({"bad.service": "[Service]\nExecStrat=/bin/true\n"}, tmp_path)


@pytest.mark.parametrize("os", OSES)
def test_scripts_are_valid_bash(cluster: Cluster, os: str) -> None:
    node = controller(cluster, os=os)
    scripts = [p for p, f in node.files().items() if node.file(p).startswith(b"#!/bin/bash")]
    assert len(scripts) == 3
    for path in scripts:
        check = subprocess.run(["bash", "-n"], input=node.file(path), capture_output=True)
        assert check.returncode == 0, (path, check.stderr)
