"""The node config model: Ignition's merge rule, data URLs and the small text formats."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from squall.ignition import formats
from squall.ignition.model import (
    Config,
    Contents,
    Directory,
    Dropin,
    File,
    Link,
    Owner,
    Unit,
    User,
    unpack,
)

from .ignition_doc import NodeDoc, decode_data_url, inner, systemd_complaints, validate


def test_merge_later_fields_win_and_lists_accumulate() -> None:
    base = Config(
        files=(File.text("/etc/a", "one", mode=0o600, overwrite=True),),
        units=(Unit("x.service", "[Service]\nExecStart=/bin/true\n", enabled=True),),
        users=(User("core", ("key-1",), ("wheel",)),),
    )
    over = Config(
        files=(File("/etc/a", mode=0o640, append=(Contents(data=b"two"),)),),
        units=(Unit("x.service", dropins=(Dropin("10-a.conf", "[Service]\n"),)),),
        users=(User("core", ("key-2", "key-1"), ("docker",)),),
    )
    merged = NodeDoc(json.loads(base.merge(over).to_plain_json()))
    a = merged.files()["/etc/a"]
    assert a["mode"] == 0o640 and a["overwrite"] is True
    assert merged.text("/etc/a") == "one"
    assert [decode_data_url(x["source"]) for x in a["append"]] == [b"two"]
    unit = merged.unit("x.service")
    assert unit["enabled"] is True and "ExecStart" in unit["contents"]
    assert [d["name"] for d in unit["dropins"]] == ["10-a.conf"]
    assert merged.users()["core"] == {
        "name": "core",
        "sshAuthorizedKeys": ["key-1", "key-2"],
        "groups": ["wheel", "docker"],
    }


def test_path_conflicts_are_found() -> None:
    config = Config(files=(File.text("/etc/x", "x"),), links=(Link("/etc/x", "/y"),))
    assert config.path_conflicts() == ["/etc/x"]
    assert Config(files=(File.text("/etc/x", "x"),)).path_conflicts() == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"plain text\n",
        b"100% + spaces, commas; #hash ?query &amp =eq\n",
        "ünïcödé ✓\n".encode(),
        bytes(range(256)),
        b"\x1f\x8b\x08\x00binary\xff",
    ],
)
def test_data_urls_decode_to_the_same_bytes(data: bytes, tmp_path: Path) -> None:
    config = Config(files=(File("/etc/blob", Contents(data=data)),))
    doc = json.loads(config.to_plain_json())
    assert NodeDoc(doc).file("/etc/blob") == data
    # Ignition's own parser reads the URL too.
    check = validate(config.to_plain_json(), tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_user_data_wraps_the_config_and_unpacks(tmp_path: Path) -> None:
    config = Config(
        files=(File.text("/etc/motd", "hello\n", user=Owner(name="core")),),
        directories=(Directory("/var/lib/x", mode=0o700),),
        units=(Unit("y.service", mask=True),),
    )
    user_data = config.to_json()
    assert inner(user_data) == json.loads(config.to_plain_json()) == unpack(user_data)
    check = validate(user_data, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_toml_is_read_back_by_tomllib() -> None:
    table = {
        "version": 2,
        "root": 'quoted "path" \\ here',
        "plugins": {"io.containerd.grpc.v1.cri": {"flag": True, "deep": {"n": 3, "s": "x"}}},
    }
    assert tomllib.loads(formats.toml(table)) == table


def test_env_file_lines_and_refusals() -> None:
    assert formats.env_file({"A": "1", "B_2": "x=y"}) == "A=1\nB_2=x=y\n"
    with pytest.raises(ValueError):
        formats.env_file({"A": "two\nlines"})
    with pytest.raises(ValueError):
        formats.env_file({"1A": "x"})


def test_unit_commands_continue_lines_and_parse(tmp_path: Path) -> None:
    text = formats.unit(
        {
            "Unit": [("Description", "demo")],
            "Service": [("ExecStart", ["/usr/bin/env", "--unset=X", "/bin/true"])],
            "Install": [("WantedBy", "multi-user.target")],
        }
    )
    assert "ExecStart=/usr/bin/env \\\n  --unset=X \\\n  /bin/true\n" in text
    assert systemd_complaints({"demo.service": text}, tmp_path) == []
    with pytest.raises(ValueError):
        formats.unit({"Service": [("ExecStart", ["/bin/echo", "two words"])]})
