"""The command line as a user runs it: a real process, its exit code and its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from squall import spec

SQUALL = [sys.executable, "-m", "squall"]


def run(*args: str, cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home or cwd), "COLUMNS": "200"}
    return subprocess.run(
        [*SQUALL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_init_writes_a_file_that_loads(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    key = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY me@laptop"
    )
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(key + "\n")
    result = run("init", "storm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = spec.load(tmp_path / "storm.toml")
    assert loaded.cluster_name == "storm"
    assert loaded.ssh_authorized_key == key


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "storm.toml").write_text("precious = true\n")
    result = run("init", "storm", cwd=tmp_path)
    assert result.returncode == 1
    assert "already exists; pass --force" in result.stderr
    assert (tmp_path / "storm.toml").read_text() == "precious = true\n"


def test_user_mistakes_are_one_line_without_traceback(tmp_path: Path) -> None:
    cases = {
        "missing.toml": None,
        "syntax.toml": 'cluster_name = "x"\nworker_count = \n',
        "typo.toml": 'cluster_nam = "x"\n',
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        result = run("render", name, "--out", "out", cwd=tmp_path)
        assert result.returncode == 1, (name, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert not (tmp_path / "out").exists()
        assert not (tmp_path / ".squall").exists()


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = run("no-such-command", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_init_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = run("init", "storm", "--file", str(tmp_path / "no" / "such" / "x.toml"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'no' / 'such' / 'x.toml'}: cannot write it (No such file or directory)"
    ]


def test_error_lines_show_values_literally(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('cluster_name = "[red]x"\n')
    result = run("render", "c.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert "'[red]x'" in result.stderr
