"""Serializers for the small text formats a node config carries: systemd units, env files, TOML.

Each takes plain data and returns text, so the node config is built as data and only turned into
text here, at the edge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# A value is one line, or a command given as its arguments (written one per continued line).
UnitValue = str | Sequence[str]
Section = Sequence[tuple[str, UnitValue]]

_BARE_TOML_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def unit(sections: Mapping[str, Section]) -> str:
    """A systemd unit file; command values are written as continued lines for readability."""
    out: list[str] = []
    for name, entries in sections.items():
        out.append(f"[{name}]")
        for key, value in entries:
            out.append(f"{key}={_unit_value(value)}")
    return "\n".join(out) + "\n"


def _unit_value(value: UnitValue) -> str:
    if isinstance(value, str):
        return value
    for arg in value:
        # systemd splits on whitespace; quoting is never needed for what squall writes.
        if not arg or any(c.isspace() for c in arg):
            raise ValueError(f"command argument {arg!r} would be split by systemd")
    # The program and its subcommand share the first line; each option gets a line of its own.
    head = 1
    while head < len(value) and not value[head].startswith("-"):
        head += 1
    return " \\\n  ".join([" ".join(value[:head]), *value[head:]])


def env_file(values: Mapping[str, str]) -> str:
    """``KEY=value`` lines, as systemd's EnvironmentFile= and ``--env-file`` both read them."""
    lines = []
    for key, value in values.items():
        if not _ENV_NAME.match(key) or "\n" in value:
            raise ValueError(f"{key}={value!r} cannot be an environment file line")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def toml(table: Mapping[str, object]) -> str:
    """A TOML document from nested mappings of strings, booleans and integers."""
    out: list[str] = []
    _toml_table(table, (), out)
    return "\n".join(out).lstrip("\n") + "\n"


def _toml_table(table: Mapping[str, object], path: tuple[str, ...], out: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and scalars:
        out.append("")
        out.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    for key, value in scalars:
        out.append(f"{_toml_key(key)} = {_toml_scalar(value)}")
    for key, value in tables:
        _toml_table(value, (*path, key), out)


def _toml_key(key: str) -> str:
    return key if _BARE_TOML_KEY.match(key) else _toml_string(key)


def _toml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"cannot write {value!r} as a TOML value")


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 for c in escaped):
        raise ValueError(f"{value!r} holds control characters")
    return f'"{escaped}"'
