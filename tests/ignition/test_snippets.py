"""Butane snippets: merged as Ignition merges configs, refused with one line when malformed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from squall import ignition
from squall.errors import SquallError

from .ignition_doc import Cluster, NodeDoc, unit_values, validate

FCOS = "variant: fcos\nversion: 1.5.0\n"
FLATCAR = "variant: flatcar\nversion: 1.0.0\n"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOperatorKeyForTestsOnly other@host"


def worker_doc(cluster: Cluster, snippets: list[str], os: str = "fedora-coreos") -> NodeDoc:
    spec, bundle = cluster(os=os, worker_snippets=snippets)
    return NodeDoc.of(ignition.worker(spec, None, bundle).to_json())


def worker_error(cluster: Cluster, snippets: list[str], os: str = "fedora-coreos") -> str:
    spec, bundle = cluster(os=os, worker_snippets=snippets)
    with pytest.raises(SquallError) as caught:
        ignition.worker(spec, None, bundle)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_snippet_replaces_a_file_squall_writes(cluster: Cluster) -> None:
    snippet = (
        FCOS
        + """
storage:
  files:
    - path: /etc/sysctl.d/80-kubernetes.conf
      mode: 0600
      contents:
        inline: |
          net.ipv4.ip_forward=1
          vm.max_map_count=262144
"""
    )
    node = worker_doc(cluster, [snippet])
    assert node.text("/etc/sysctl.d/80-kubernetes.conf") == (
        "net.ipv4.ip_forward=1\nvm.max_map_count=262144\n"
    )
    assert node.mode("/etc/sysctl.d/80-kubernetes.conf") == 0o600


def test_later_snippet_wins_for_the_same_path(cluster: Cluster) -> None:
    first = FLATCAR + "storage:\n  files:\n    - path: /etc/motd\n      contents: {inline: one}\n"
    second = FLATCAR + "storage:\n  files:\n    - path: /etc/motd\n      contents: {inline: two}\n"
    node = worker_doc(cluster, [first, second], os="flatcar")
    assert node.text("/etc/motd") == "two"


def test_dropin_on_squalls_unit_keeps_its_contents(cluster: Cluster) -> None:
    snippet = (
        FCOS
        + """
systemd:
  units:
    - name: kubelet.service
      dropins:
        - name: 50-proxy.conf
          contents: |
            [Service]
            Environment=HTTPS_PROXY=http://proxy.internal:3128
"""
    )
    plain = worker_doc(cluster, [])
    node = worker_doc(cluster, [snippet])
    kubelet = node.unit("kubelet.service")
    assert kubelet["contents"] == plain.unit("kubelet.service")["contents"]
    assert kubelet["enabled"] is True
    (dropin,) = kubelet["dropins"]
    assert dropin["name"] == "50-proxy.conf"
    assert unit_values(dropin["contents"], "Environment") == [
        "HTTPS_PROXY=http://proxy.internal:3128"
    ]


def test_snippet_can_replace_or_mask_a_unit(cluster: Cluster) -> None:
    snippet = (
        FLATCAR
        + """
systemd:
  units:
    - name: locksmithd.service
      mask: false
      enabled: true
    - name: node-metadata.service
      contents: |
        [Service]
        Type=oneshot
        ExecStart=/usr/bin/true
"""
    )
    node = worker_doc(cluster, [snippet], os="flatcar")
    assert node.unit("locksmithd.service")["mask"] is False
    assert node.unit("locksmithd.service")["enabled"] is True
    assert "ExecStart=/usr/bin/true" in node.unit("node-metadata.service")["contents"]


def test_snippet_adds_ssh_keys_and_groups_to_core(cluster: Cluster) -> None:
    snippet = (
        FCOS
        + f"""
passwd:
  users:
    - name: core
      ssh_authorized_keys: ["{OTHER_KEY}"]
      groups: [wheel, sudo]
"""
    )
    spec, bundle = cluster(controller_snippets=[snippet])
    node = NodeDoc.of(ignition.controller(spec, 0, bundle).to_json())
    core = node.users()["core"]
    assert core["sshAuthorizedKeys"] == [spec.ssh_authorized_key, OTHER_KEY]
    assert core["groups"] == ["wheel", "sudo"]


def test_file_append_source_and_owners(cluster: Cluster, tmp_path: Path) -> None:
    digest = "sha512-" + "0f" * 64
    snippet = (
        FCOS
        + f"""
storage:
  files:
    - path: /etc/hosts
      append:
        - inline: "10.0.0.5 registry.internal\\n"
    - path: /opt/bin/tool
      mode: 0755
      user: {{name: core}}
      group: {{id: 1000}}
      contents:
        source: https://example.com/tool.gz
        compression: gzip
        verification: {{hash: {digest}}}
  directories:
    - path: /var/lib/tool
      mode: 0700
  links:
    - path: /usr/local/bin/tool
      target: /opt/bin/tool
"""
    )
    node = worker_doc(cluster, [snippet])
    hosts = node.files()["/etc/hosts"]
    assert [json.loads(json.dumps(a)) for a in hosts["append"]] == [
        {"source": "data:,10.0.0.5%20registry.internal%0A"}
    ]
    tool = node.files()["/opt/bin/tool"]
    assert tool["contents"] == {
        "source": "https://example.com/tool.gz",
        "compression": "gzip",
        "verification": {"hash": digest},
    }
    assert tool["user"] == {"name": "core"} and tool["group"] == {"id": 1000}
    assert tool["mode"] == 0o755
    assert node.directories()["/var/lib/tool"]["mode"] == 0o700
    assert node.links()["/usr/local/bin/tool"]["target"] == "/opt/bin/tool"
    check = validate(json.dumps(node.doc), tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("os", "snippet", "expected"),
    [
        ("fedora-coreos", "variant: fcos\nversion: 1.5.0\nstorage: [", "not valid YAML"),
        ("fedora-coreos", "just text", "is not a Butane document"),
        ("fedora-coreos", FLATCAR, "variant: 'flatcar' does not match os 'fedora-coreos'"),
        ("flatcar", FCOS, "variant: 'fcos' does not match os 'flatcar'; write 'variant: flatcar'"),
        ("fedora-coreos", "variant: fcos\nversion: 9.9.9\n", "version: '9.9.9' is not a fcos"),
        ("fedora-coreos", FCOS + "kernel_arguments: {}\n", "kernel_arguments: is not a field"),
        ("fedora-coreos", FCOS + "storage:\n  disks: []\n", "storage.disks: is not a field"),
        (
            "fedora-coreos",
            FCOS + "systemd:\n  units:\n    - name: a.service\n      enable: true\n",
            "systemd.units[0].enable: is not a field squall reads here; did you mean 'enabled'?",
        ),
        (
            "flatcar",
            FLATCAR + "storage:\n  files:\n    - path: /etc/a\n      mode: rw\n",
            "storage.files[0].mode: 'rw' is not a file mode; write it in octal like 0644",
        ),
        (
            "fedora-coreos",
            FCOS + "systemd:\n  units:\n    - name: a.service\n      enabled: maybe\n",
            "systemd.units[0].enabled: 'maybe' is not true or false",
        ),
        (
            "fedora-coreos",
            FCOS + "storage:\n  files:\n    - path: etc/a\n",
            "storage.files[0].path: 'etc/a' must be a clean absolute path",
        ),
        (
            "fedora-coreos",
            FCOS
            + "storage:\n  files:\n    - path: /a\n      contents: {inline: x, source: 'https://e/x'}\n",
            "storage.files[0].contents: give either 'inline' or 'source', not both",
        ),
        (
            "fedora-coreos",
            FCOS + "systemd:\n  units:\n    - name: kubelet\n",
            "systemd.units[0].name: 'kubelet' is not a systemd unit name",
        ),
        (
            "fedora-coreos",
            FCOS + "passwd:\n  users:\n    - ssh_authorized_keys: []\n",
            "passwd.users[0].name: is required",
        ),
        (
            "fedora-coreos",
            FCOS + "storage:\n  directories:\n    - path: /etc/kubernetes/kubelet.yaml\n",
            "/etc/kubernetes/kubelet.yaml is declared as more than one of file, directory and link",
        ),
    ],
)
def test_malformed_snippet_is_one_line_naming_it(
    cluster: Cluster, os: str, snippet: str, expected: str
) -> None:
    good = (FCOS if os == "fedora-coreos" else FLATCAR) + "systemd:\n  units: []\n"
    message = worker_error(cluster, [good, snippet], os=os)
    assert message.startswith("worker_snippets[1]: "), message
    assert expected in message, message


def test_errors_name_controller_and_pool_snippets(cluster: Cluster) -> None:
    bad = FCOS + "storage:\n  trees: []\n"
    spec, bundle = cluster(controller_snippets=[bad])
    with pytest.raises(SquallError, match=r"^controller_snippets\[0\]: storage\.trees: "):
        ignition.controller(spec, 0, bundle)
    pools = [{"name": "a"}, {"name": "b", "snippets": [FCOS, bad]}]
    spec, bundle = cluster(worker_pools=pools)
    with pytest.raises(SquallError, match=r"^worker_pools\[1\]\.snippets\[1\]: storage\.trees: "):
        ignition.worker(spec, spec.worker_pools[1], bundle)


def test_render_reports_a_bad_snippet_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(
        'cluster_name = "tempest"\n'
        'dns_zone = "aws.example.com"\n'
        'dns_zone_id = "Z3PAABBCFAKEC0"\n'
        'ssh_authorized_key = "ssh-ed25519 '
        'AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY demo@squall"\n'
        'os = "flatcar"\n'
        "worker_snippets = [\n"
        "'''\nvariant: flatcar\nversion: 1.0.0\n''',\n"
        "'''\nvariant: fcos\nversion: 1.5.0\n''',\n"
        "]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "squall", "render", str(config), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "worker_snippets[1]: variant: 'fcos' does not match os 'flatcar'" in lines[0]
    assert "Traceback" not in result.stderr
