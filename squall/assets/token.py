"""The kubelet bootstrap token: how new nodes authenticate to request their certificates."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from squall.state import State, StateError

_ALPHABET = string.ascii_lowercase + string.digits
# The format kube-apiserver's bootstrap-token authenticator accepts.
_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
STATE_NAME = "auth/bootstrap-token"


@dataclass(frozen=True)
class BootstrapToken:
    id: str  # 6 characters of [a-z0-9], public
    secret: str  # 16 characters of [a-z0-9]

    @property
    def value(self) -> str:
        return f"{self.id}.{self.secret}"


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def parse(text: str) -> BootstrapToken | None:
    match = _TOKEN.match(text.strip())
    return BootstrapToken(match[1], match[2]) if match else None


def load_or_create(state: State) -> BootstrapToken:
    """The cluster's token, generated on the first run and reused afterwards."""
    stored = state.read(STATE_NAME)
    if stored is not None:
        # Nodes already joined with the stored token, so a silent new one would lock out
        # every node that boots from the old user data.
        try:
            token = parse(stored.decode())
        except UnicodeDecodeError:
            token = None
        if token is None:
            raise StateError(
                f"{state.path(STATE_NAME)}: not a bootstrap token (id.secret of [a-z0-9]); "
                "restore it from a backup"
            )
        return token
    token = BootstrapToken(_random(6), _random(16))
    state.write(STATE_NAME, token.value.encode())
    return token
