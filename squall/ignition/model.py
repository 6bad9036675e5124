"""A small typed model of what a node config holds, serialized to Ignition spec 3.3.0.

Entries are keyed the way Ignition keys them (files, directories and links by path, units and
users by name). :meth:`Config.merge` follows Ignition's own merge rule: for the same key the
later entry's set fields win field by field, and lists of values (SSH keys, groups, appended
contents, drop-ins) accumulate. That lets a Butane snippet add a drop-in to squall's kubelet
unit without restating the unit, or replace a file squall writes.
"""

from __future__ import annotations

import base64
import gzip
import json
import urllib.parse
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

IGNITION_VERSION = "3.3.0"

# Ignition writes files 0644 unless told otherwise; scripts need the executable bits.
FILE_MODE = 0o644
SCRIPT_MODE = 0o755


@dataclass(frozen=True)
class Owner:
    """A user or group, by numeric id or by name (resolved on the node)."""

    id: int | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"id": self.id, "name": self.name})


@dataclass(frozen=True)
class Contents:
    """File contents: inline bytes (sent as a ``data:`` URL) or a URL Ignition fetches."""

    data: bytes | None = None
    source: str | None = None
    compression: str | None = None  # only for ``source``: how the remote object is compressed
    verification: str | None = None  # "sha512-<hex>" or "sha256-<hex>"

    def to_dict(self) -> dict[str, Any]:
        if self.data is not None:
            out = {"source": data_url(self.data)}
        else:
            out = _drop_none({"source": self.source, "compression": self.compression})
        if self.verification is not None:
            out["verification"] = {"hash": self.verification}
        return out


@dataclass(frozen=True)
class File:
    path: str
    contents: Contents | None = None
    append: tuple[Contents, ...] = ()
    mode: int | None = None
    user: Owner | None = None
    group: Owner | None = None
    overwrite: bool | None = None

    @classmethod
    def text(cls, path: str, text: str | bytes, mode: int = FILE_MODE, **kw: Any) -> File:
        data = text.encode() if isinstance(text, str) else text
        return cls(path=path, contents=Contents(data=data), mode=mode, **kw)

    @property
    def key(self) -> str:
        return self.path

    def to_dict(self) -> dict[str, Any]:
        out = _node(self.path, self.user, self.group, self.overwrite)
        if self.contents is not None:
            out["contents"] = self.contents.to_dict()
        if self.append:
            out["append"] = [c.to_dict() for c in self.append]
        if self.mode is not None:
            out["mode"] = self.mode
        return out


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int | None = None
    user: Owner | None = None
    group: Owner | None = None
    overwrite: bool | None = None

    @property
    def key(self) -> str:
        return self.path

    def to_dict(self) -> dict[str, Any]:
        out = _node(self.path, self.user, self.group, self.overwrite)
        if self.mode is not None:
            out["mode"] = self.mode
        return out


@dataclass(frozen=True)
class Link:
    path: str
    target: str | None = None
    hard: bool | None = None
    user: Owner | None = None
    group: Owner | None = None
    overwrite: bool | None = None

    @property
    def key(self) -> str:
        return self.path

    def to_dict(self) -> dict[str, Any]:
        out = _node(self.path, self.user, self.group, self.overwrite)
        return out | _drop_none({"target": self.target, "hard": self.hard})


@dataclass(frozen=True)
class Dropin:
    name: str
    contents: str | None = None

    @property
    def key(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"name": self.name, "contents": self.contents})


@dataclass(frozen=True)
class Unit:
    name: str
    contents: str | None = None
    enabled: bool | None = None
    mask: bool | None = None
    dropins: tuple[Dropin, ...] = ()

    @property
    def key(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        out = _drop_none(
            {
                "name": self.name,
                "contents": self.contents,
                "enabled": self.enabled,
                "mask": self.mask,
            }
        )
        if self.dropins:
            out["dropins"] = [d.to_dict() for d in sorted(self.dropins, key=lambda d: d.name)]
        return out


@dataclass(frozen=True)
class User:
    name: str
    ssh_authorized_keys: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.ssh_authorized_keys:
            out["sshAuthorizedKeys"] = list(self.ssh_authorized_keys)
        if self.groups:
            out["groups"] = list(self.groups)
        return out


Entry = TypeVar("Entry", File, Directory, Link, Unit, User, Dropin)


@dataclass(frozen=True)
class Config:
    """One node's config: everything Ignition writes on first boot."""

    files: tuple[File, ...] = ()
    directories: tuple[Directory, ...] = ()
    links: tuple[Link, ...] = ()
    units: tuple[Unit, ...] = ()
    users: tuple[User, ...] = ()

    def merge(self, other: Config) -> Config:
        """``self`` with ``other`` laid over it, as Ignition merges a child config."""
        return Config(
            files=_merge_entries(self.files, other.files),
            directories=_merge_entries(self.directories, other.directories),
            links=_merge_entries(self.links, other.links),
            units=_merge_entries(self.units, other.units),
            users=_merge_entries(self.users, other.users),
        )

    def path_conflicts(self) -> list[str]:
        """Paths claimed by more than one kind of node (Ignition rejects such a config)."""
        kinds: dict[str, int] = {}
        for group in (self.files, self.directories, self.links):
            for path in {e.path for e in group}:
                kinds[path] = kinds.get(path, 0) + 1
        return sorted(p for p, n in kinds.items() if n > 1)

    def to_dict(self) -> dict[str, Any]:
        """The whole Ignition config, readable: contents as plain ``data:`` URLs."""
        out: dict[str, Any] = {"ignition": {"version": IGNITION_VERSION}}
        storage: dict[str, Any] = {}
        for name, entries in (
            ("directories", self.directories),
            ("files", self.files),
            ("links", self.links),
        ):
            if entries:
                storage[name] = [e.to_dict() for e in sorted(entries, key=lambda e: e.key)]
        if storage:
            out["storage"] = storage
        if self.units:
            out["systemd"] = {"units": [u.to_dict() for u in sorted(self.units, key=_by_key)]}
        if self.users:
            out["passwd"] = {"users": [u.to_dict() for u in sorted(self.users, key=_by_key)]}
        return out

    def to_plain_json(self) -> str:
        return _compact(self.to_dict())

    def to_json(self) -> str:
        """User data: a small config that merges this one, gzipped, from a ``data:`` URL.

        EC2 allows 16 KB of user data. Compressing the config as a whole takes about half
        the space of compressing each file, because units, scripts and paths repeat each
        other; Ignition's config merge accepts a gzip-compressed source for exactly this.
        The output is byte-stable: sorted keys and a gzip stream with mtime 0.
        """
        packed = gzip.compress(self.to_plain_json().encode(), 9, mtime=0)
        source = "data:;base64," + base64.b64encode(packed).decode()
        return _compact(
            {
                "ignition": {
                    "version": IGNITION_VERSION,
                    "config": {"merge": [{"source": source, "compression": "gzip"}]},
                }
            }
        )


def unpack(user_data: str) -> dict[str, Any]:
    """The config that :meth:`Config.to_json` packed, for reading user data back."""
    outer = json.loads(user_data)
    (ref,) = outer["ignition"]["config"]["merge"]
    packed = base64.b64decode(ref["source"].removeprefix("data:;base64,"))
    return json.loads(gzip.decompress(packed))


def _compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def data_url(data: bytes) -> str:
    """A ``data:`` URL for ``data``: percent-encoded text, or base64 for binary data.

    Text stays readable and compresses well along with the rest of the config. Only
    unreserved characters stay bare, since data URL decoders differ on '+' and friends.
    """
    try:
        data.decode()
    except UnicodeDecodeError:
        return "data:;base64," + base64.b64encode(data).decode()
    return "data:," + urllib.parse.quote(data, safe="/")


def _by_key(entry: Unit | User) -> str:
    return entry.key


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _node(
    path: str, user: Owner | None, group: Owner | None, overwrite: bool | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"path": path}
    if user is not None:
        out["user"] = user.to_dict()
    if group is not None:
        out["group"] = group.to_dict()
    if overwrite is not None:
        out["overwrite"] = overwrite
    return out


def _merge_entries(base: tuple[Entry, ...], over: tuple[Entry, ...]) -> tuple[Entry, ...]:
    merged: dict[str, Entry] = {e.key: e for e in base}
    for entry in over:
        old = merged.get(entry.key)
        merged[entry.key] = entry if old is None else _merge_entry(old, entry)
    return tuple(merged.values())


def _merge_entry(old: Entry, new: Entry) -> Entry:
    changes: dict[str, Any] = {}
    for f in fields(new):
        value = getattr(new, f.name)
        if f.name == "dropins":
            changes[f.name] = _merge_entries(old.dropins, value)  # type: ignore[union-attr]
        elif f.name == "append":
            changes[f.name] = getattr(old, f.name) + value
        elif f.name in ("ssh_authorized_keys", "groups"):
            previous = getattr(old, f.name)
            changes[f.name] = previous + tuple(v for v in value if v not in previous)
        elif value is not None:
            changes[f.name] = value
    return replace(old, **changes)
