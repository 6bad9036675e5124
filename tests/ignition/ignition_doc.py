"""Reading node configs back the way a node would, independently of squall's own code."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from squall.assets import Assets
from squall.spec import Spec

# A factory fixture: cluster-file overrides in, the spec and its real asset bundle out.
Cluster = Callable[..., tuple[Spec, Assets]]


def validate(config: str, tmp: Path, name: str = "config.ign") -> subprocess.CompletedProcess[str]:
    """Run Debian's ignition-validate on a config; the caller asserts on its verdict."""
    path = tmp / name
    path.write_text(config)
    return subprocess.run(
        ["ignition-validate", str(path)], capture_output=True, text=True, timeout=30
    )


def decode_data_url(url: str) -> bytes:
    """RFC 2397: ``data:[<mediatype>][;base64],<data>``."""
    assert url.startswith("data:"), url
    header, _, payload = url[5:].partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload, validate=True)
    return bytes(_unquote(payload))


def _unquote(payload: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(payload):
        if payload[i] == "%":
            out.append(int(payload[i + 1 : i + 3], 16))
            i += 3
        else:
            out += payload[i].encode()
            i += 1
    return bytes(out)


def resource(res: dict[str, Any]) -> bytes:
    data = decode_data_url(res["source"])
    if res.get("compression") == "gzip":
        data = gzip.decompress(data)
    else:
        assert not res.get("compression"), res
    return data


def inner(user_data: str) -> dict[str, Any]:
    """The config that the user data merges (or the user data itself if it merges nothing)."""
    outer = json.loads(user_data)
    merge = outer.get("ignition", {}).get("config", {}).get("merge")
    if not merge:
        return outer
    assert len(merge) == 1
    return json.loads(resource(merge[0]))


@dataclass
class NodeDoc:
    """A decoded node config, as Ignition would lay it on disk."""

    doc: dict[str, Any]

    @classmethod
    def of(cls, user_data: str) -> NodeDoc:
        return cls(inner(user_data))

    def files(self) -> dict[str, dict[str, Any]]:
        return {f["path"]: f for f in self.doc.get("storage", {}).get("files", [])}

    def file(self, path: str) -> bytes:
        return resource(self.files()[path]["contents"])

    def text(self, path: str) -> str:
        return self.file(path).decode()

    def mode(self, path: str) -> int:
        return self.files()[path].get("mode", 0o644)

    def directories(self) -> dict[str, dict[str, Any]]:
        return {d["path"]: d for d in self.doc.get("storage", {}).get("directories", [])}

    def links(self) -> dict[str, dict[str, Any]]:
        return {link["path"]: link for link in self.doc.get("storage", {}).get("links", [])}

    def units(self) -> dict[str, dict[str, Any]]:
        return {u["name"]: u for u in self.doc.get("systemd", {}).get("units", [])}

    def unit(self, name: str) -> dict[str, Any]:
        return self.units()[name]

    def users(self) -> dict[str, dict[str, Any]]:
        return {u["name"]: u for u in self.doc.get("passwd", {}).get("users", [])}

    def yaml(self, path: str) -> Any:
        return yaml.safe_load(self.file(path))


def unit_values(contents: str, key: str) -> list[str]:
    """Every value of ``key`` in a unit file, continuation lines joined as systemd joins them."""
    joined = re.sub(r"\\\n\s*", " ", contents)
    return [line.split("=", 1)[1] for line in joined.splitlines() if line.startswith(f"{key}=")]


def exec_args(contents: str, key: str = "ExecStart") -> list[str]:
    (value,) = unit_values(contents, key)
    return shlex.split(value.lstrip("-"))


def flag(args: list[str], name: str) -> list[str]:
    """Values of ``--name=value`` arguments."""
    return [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]


def systemd_complaints(units: dict[str, str], tmp: Path) -> list[str]:
    """What systemd's own parser says about unit files, other than missing host programs."""
    paths = []
    for name, text in units.items():
        path = tmp / name
        path.write_text(text)
        paths.append(str(path))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # Parse problems are reported as "<file>:<line>: ..."; the rest is about this test host.
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if re.match(rf"^{re.escape(str(tmp))}/[^:]+:\d+:", line)
    ]
