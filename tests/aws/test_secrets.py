"""Nothing secret reaches the terminal: not in plans, not in --json, not in progress lines."""

from __future__ import annotations

import base64
from pathlib import Path

from .helpers import Squall, cluster_file


def secrets_in(state: Path) -> list[str]:
    """Every secret squall generated for the cluster, in every form it could leak in."""
    found = []
    for path in sorted(p for p in state.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.endswith(".key"):
            # The key's body, and the base64 a kubeconfig would carry it as.
            body = [line for line in data.decode().splitlines() if "-----" not in line]
            found += [line for line in body if len(line) >= 16]
            found.append(base64.b64encode(data).decode()[:40])
        elif path.name == "bootstrap-token":
            found.append(data.decode().strip().split(".")[1])
    return found


def test_no_secret_in_any_command_output(squall: Squall, tmp_path: Path) -> None:
    config = cluster_file(tmp_path, "hush", controller_count=3)
    transcript = []
    for args in (
        ["plan"],
        ["plan", "--json"],
        ["apply", "--yes", "--no-bootstrap"],
        ["plan", "--json"],
        ["outputs"],
        ["outputs", "--json"],
        ["destroy", "--yes"],
    ):
        result = squall(args[0], str(config), *args[1:])
        transcript.append(result.stdout + result.stderr)
    text = "\n".join(transcript)

    state = tmp_path / ".squall" / "hush"
    secrets = secrets_in(state)
    assert len(secrets) > 20, "expected the CA, leaf, service-account and host keys and the token"
    for secret in secrets:
        assert secret not in text
    assert "PRIVATE KEY" not in text
