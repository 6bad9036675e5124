"""Controller host keys: made once, kept private in state, and what sshd and ssh-keygen agree on."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from squall.assets.hostkeys import controller_host_key, state_name
from squall.state import State, StateError


def test_generated_once_and_kept_private(state: State) -> None:
    first = controller_host_key(state, 0)
    again = controller_host_key(state, 0)
    assert again == first
    path = state.path(state_name(0))
    assert path.read_bytes() == first.private_pem
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_each_controller_has_its_own_key(state: State) -> None:
    keys = {controller_host_key(state, i).public_key for i in range(3)}
    assert len(keys) == 3


def test_public_line_is_the_private_keys_half(state: State, tmp_path: Path) -> None:
    key = controller_host_key(state, 1)
    # ssh-keygen derives the public key from the private file on its own.
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(state.path(state_name(1)))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert derived[:2] == key.public_line.split()[:2]
    assert derived[0] == "ssh-ed25519"
    assert key.public_line.endswith(" controller-1")


def test_corrupt_key_in_state_is_a_clear_error(state: State) -> None:
    state.write(state_name(0), b"not a key")
    with pytest.raises(StateError, match=r"not an unencrypted OpenSSH private key.*backup"):
        controller_host_key(state, 0)
