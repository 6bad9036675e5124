"""Every node config squall renders is one that Ignition accepts, small and byte-stable."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from squall import ignition
from squall.spec import Spec

from .ignition_doc import Cluster, NodeDoc, validate

VARIANT = {"fedora-coreos": ("fcos", "1.5.0"), "flatcar": ("flatcar", "1.1.0")}
SHA512 = "sha512-" + "ab" * 64


def snippet_of_every_kind(os: str, tag: str) -> str:
    """A Butane document using every field squall merges."""
    variant, version = VARIANT[os]
    return f"""
variant: {variant}
version: {version}
storage:
  directories:
    - path: /etc/{tag}
      mode: 0750
      user: {{name: core}}
      group: {{id: 1000}}
  files:
    - path: /etc/{tag}/inline.conf
      mode: 0640
      overwrite: true
      user: {{id: 0}}
      group: {{name: root}}
      contents:
        inline: |
          hello from {tag}
      append:
        - inline: "more: 100%\\n"
    - path: /opt/{tag}/remote.bin
      contents:
        source: https://example.com/{tag}.bin.gz
        compression: gzip
        verification:
          hash: {SHA512}
  links:
    - path: /etc/{tag}/link
      target: /etc/{tag}/inline.conf
    - path: /etc/{tag}/hard
      target: /etc/{tag}/inline.conf
      hard: true
systemd:
  units:
    - name: {tag}.service
      enabled: true
      contents: |
        [Unit]
        Description={tag}
        [Service]
        ExecStart=/usr/bin/true
        [Install]
        WantedBy=multi-user.target
      dropins:
        - name: 10-env.conf
          contents: |
            [Service]
            Environment=TAG={tag}
    - name: kubelet.service
      dropins:
        - name: 20-{tag}.conf
          contents: |
            [Service]
            Environment=EXTRA={tag}
    - name: {tag}-off.service
      mask: true
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFx{tag}Key operator@{tag}
      groups: [wheel]
    - name: {tag}
      groups: [docker]
"""


def render_all(spec: Spec, cluster_assets: object) -> dict[str, str]:
    configs = {
        f"controller-{i}": ignition.controller(spec, i, cluster_assets).to_json()  # type: ignore[arg-type]
        for i in range(spec.controller_count)
    }
    configs["worker"] = ignition.worker(spec, None, cluster_assets).to_json()  # type: ignore[arg-type]
    for pool in spec.worker_pools:
        configs[f"pool-{pool.name}"] = ignition.worker(spec, pool, cluster_assets).to_json()  # type: ignore[arg-type]
    return configs


def test_validator_rejects_a_broken_config(tmp_path: Path) -> None:
    # The harness must be able to fail: a mode that is not a number and a path claimed twice.
    broken = {
        "ignition": {"version": "3.3.0"},
        "storage": {
            "files": [{"path": "/etc/x", "mode": "0644"}],
            "directories": [{"path": "/etc/x"}],
        },
    }
    assert validate(json.dumps(broken), tmp_path).returncode != 0
    assert validate('{"ignition":{"version":"3.3.0"}}', tmp_path).returncode == 0


@pytest.mark.parametrize("os", ["fedora-coreos", "flatcar"])
@pytest.mark.parametrize("controllers", [1, 3])
@pytest.mark.parametrize("with_snippets", [False, True])
def test_every_config_passes_ignition_validate(
    cluster: Cluster, tmp_path: Path, os: str, controllers: int, with_snippets: bool
) -> None:
    snippets = (
        {
            "controller_snippets": [snippet_of_every_kind(os, "ctl")],
            "worker_snippets": [snippet_of_every_kind(os, "wk"), snippet_of_every_kind(os, "wk2")],
        }
        if with_snippets
        else {}
    )
    pool = {
        "name": "gpu",
        "arch": "arm64",
        "node_labels": ["pool=gpu"],
        "node_taints": ["gpu=true:NoSchedule"],
        "snippets": [snippet_of_every_kind(os, "gp")] if with_snippets else [],
    }
    spec, bundle = cluster(os=os, controller_count=controllers, worker_pools=[pool], **snippets)
    configs = render_all(spec, bundle)
    assert len(configs) == controllers + 2
    for name, user_data in configs.items():
        outer = validate(user_data, tmp_path, f"{name}.ign")
        assert outer.returncode == 0, f"{name}: {outer.stdout}{outer.stderr}"
        assert outer.stdout.strip() == "" and outer.stderr.strip() == "", f"{name} warns"
        # The merged config is what the node applies; the validator must accept it too.
        merged = json.dumps(NodeDoc.of(user_data).doc)
        check = validate(merged, tmp_path, f"{name}-merged.ign")
        assert check.returncode == 0, f"{name} (merged): {check.stdout}{check.stderr}"
        assert check.stdout.strip() == "" and check.stderr.strip() == "", f"{name} warns"
        if with_snippets:
            units = NodeDoc.of(user_data).units()
            tag = {"c": "ctl", "w": "wk", "p": "gp"}[name[0]]
            assert f"{tag}.service" in units, name


@pytest.mark.parametrize("os", ["fedora-coreos", "flatcar"])
def test_every_config_fits_in_8_kib(cluster: Cluster, os: str) -> None:
    # The longest names the spec allows and five controllers: the largest etcd environment.
    spec, bundle = cluster(
        os=os,
        cluster_name="a" * 18,
        dns_zone="k8s.some-long-subdomain.example-company.com",
        controller_count=5,
        cloud_provider="external",
        networking="flannel",
        worker_node_labels=[f"label-{i}=value-{i}" for i in range(8)],
        worker_node_taints=[f"taint-{i}=true:NoSchedule" for i in range(4)],
        worker_pools=[{"name": "big"}],
    )
    for name, user_data in render_all(spec, bundle).items():
        assert len(user_data.encode()) <= 8 * 1024, f"{name}: {len(user_data)} bytes"


@pytest.mark.parametrize("os", ["fedora-coreos", "flatcar"])
def test_configs_are_byte_identical_across_runs(cluster: Cluster, os: str) -> None:
    spec, bundle = cluster(os=os, controller_count=3, worker_pools=[{"name": "extra"}])
    first = render_all(spec, bundle)
    again = render_all(spec, bundle)
    assert first == again
    for user_data in first.values():
        source = json.loads(user_data)["ignition"]["config"]["merge"][0]["source"]
        packed = base64.b64decode(source.split(",", 1)[1])
        # A gzip header carries a timestamp at bytes 4-7; it must not vary with the clock.
        assert packed[:2] == b"\x1f\x8b" and packed[4:8] == b"\0\0\0\0"


def test_user_data_is_compact_json(cluster: Cluster) -> None:
    spec, bundle = cluster()
    user_data = ignition.worker(spec, None, bundle).to_json()
    assert "\n" not in user_data and ": " not in user_data
    assert json.loads(user_data)["ignition"]["version"] == "3.3.0"
