"""The kubelet bootstrap token: how new nodes authenticate to request their certificates."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from squall.state import State

_ALPHABET = string.ascii_lowercase + string.digits
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


def load_or_create(state: State) -> BootstrapToken:
    """The cluster's token, generated on the first run and reused afterwards."""
    stored = state.read(STATE_NAME)
    if stored is not None:
        token_id, _, secret = stored.decode().strip().partition(".")
        if len(token_id) == 6 and len(secret) == 16:
            return BootstrapToken(token_id, secret)
    token = BootstrapToken(_random(6), _random(16))
    state.write(STATE_NAME, token.value.encode())
    return token
