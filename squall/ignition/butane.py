"""Butane snippets: the user's own additions to node configs.

A snippet is a Butane YAML document (variant ``fcos`` on Fedora CoreOS, ``flatcar`` on Flatcar).
squall reads the parts of Butane that describe files, directories, links, systemd units and
users, and turns them into the node config model, so they merge with squall's entries the way
Ignition merges configs. Anything else is refused with one line that names the snippet, the
field and the fix, long before an instance boots with a config it cannot apply.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from squall.errors import SquallError
from squall.ignition.model import Config, Contents, Directory, Dropin, File, Link, Owner, Unit, User

OsName = Literal["fedora-coreos", "flatcar"]

# The variant each OS reads, and the Butane versions whose fields squall understands.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fedora-coreos": ("fcos", tuple(f"1.{minor}.0" for minor in range(7))),
    "flatcar": ("flatcar", ("1.0.0", "1.1.0")),
}
UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".slice",
    ".scope",
)
URL_SCHEMES = ("http", "https", "tftp", "s3", "gs", "arn", "data")
HASH = re.compile(r"^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})$")
SUPPORTED = "storage.files, storage.directories, storage.links, systemd.units and passwd.users"


class SnippetError(SquallError):
    """A Butane snippet squall cannot merge."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _absolute(path: str) -> str:
    if not path.startswith("/") or posixpath.normpath(path) != path:
        raise ValueError(f"{path!r} must be a clean absolute path like '/etc/example.conf'")
    return path


def _mode(mode: int | None) -> int | None:
    if mode is not None and not 0 <= mode <= 0o7777:
        raise ValueError(f"{mode} is not a file mode; write it in octal like 0644")
    return mode


class _Owner(_Model):
    id: int | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one(self) -> _Owner:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of 'id' or 'name'")
        return self

    def build(self) -> Owner:
        return Owner(id=self.id, name=self.name)


class _Verification(_Model):
    hash: str

    @field_validator("hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if not HASH.match(v):
            raise ValueError(f"{v!r} is not a hash; write sha512-<hex> or sha256-<hex>")
        return v


class _Resource(_Model):
    inline: str | None = None
    source: str | None = None
    compression: Literal["gzip"] | None = None
    verification: _Verification | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None and v.partition(":")[0] not in URL_SCHEMES:
            raise ValueError(f"{v!r} is not a URL Ignition can fetch ({', '.join(URL_SCHEMES)})")
        return v

    @model_validator(mode="after")
    def _check(self) -> _Resource:
        if self.inline is not None and self.source is not None:
            raise ValueError("give either 'inline' or 'source', not both")
        if self.inline is None and self.source is None:
            raise ValueError("give 'inline' contents or a 'source' URL")
        if self.inline is not None and (self.compression or self.verification):
            raise ValueError("'compression' and 'verification' go with 'source', not 'inline'")
        return self

    def build(self) -> Contents:
        if self.inline is not None:
            return Contents(data=self.inline.encode())
        return Contents(
            source=self.source,
            compression=self.compression,
            verification=self.verification.hash if self.verification else None,
        )


class _Node(_Model):
    path: str
    overwrite: bool | None = None
    user: _Owner | None = None
    group: _Owner | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _absolute(v)

    def owners(self) -> dict[str, Any]:
        return {
            "user": self.user.build() if self.user else None,
            "group": self.group.build() if self.group else None,
            "overwrite": self.overwrite,
        }


class _File(_Node):
    contents: _Resource | None = None
    append: list[_Resource] = []
    mode: int | None = None

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, v: int | None) -> int | None:
        return _mode(v)

    def build(self) -> File:
        return File(
            path=self.path,
            contents=self.contents.build() if self.contents else None,
            append=tuple(a.build() for a in self.append),
            mode=self.mode,
            **self.owners(),
        )


class _Directory(_Node):
    mode: int | None = None

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, v: int | None) -> int | None:
        return _mode(v)

    def build(self) -> Directory:
        return Directory(path=self.path, mode=self.mode, **self.owners())


class _Link(_Node):
    target: str
    hard: bool | None = None

    def build(self) -> Link:
        return Link(path=self.path, target=self.target, hard=self.hard, **self.owners())


class _Dropin(_Model):
    name: str
    contents: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.endswith(".conf") or "/" in v:
            raise ValueError(f"{v!r} is not a drop-in name; use a file name ending in .conf")
        return v


class _Unit(_Model):
    name: str
    enabled: bool | None = None
    mask: bool | None = None
    contents: str | None = None
    dropins: list[_Dropin] = []

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if "/" in v or not v.endswith(UNIT_SUFFIXES):
            raise ValueError(f"{v!r} is not a systemd unit name like 'example.service'")
        return v

    def build(self) -> Unit:
        return Unit(
            name=self.name,
            contents=self.contents,
            enabled=self.enabled,
            mask=self.mask,
            dropins=tuple(Dropin(d.name, d.contents) for d in self.dropins),
        )


class _User(_Model):
    name: str
    ssh_authorized_keys: list[str] = []
    groups: list[str] = []

    def build(self) -> User:
        return User(self.name, tuple(self.ssh_authorized_keys), tuple(self.groups))


class _Storage(_Model):
    files: list[_File] = []
    directories: list[_Directory] = []
    links: list[_Link] = []


class _Systemd(_Model):
    units: list[_Unit] = []


class _Passwd(_Model):
    users: list[_User] = []


class _Butane(_Model):
    variant: str
    version: str
    storage: _Storage = _Storage()
    systemd: _Systemd = _Systemd()
    passwd: _Passwd = _Passwd()

    def build(self) -> Config:
        return Config(
            files=tuple(f.build() for f in self.storage.files),
            directories=tuple(d.build() for d in self.storage.directories),
            links=tuple(link.build() for link in self.storage.links),
            units=tuple(u.build() for u in self.systemd.units),
            users=tuple(u.build() for u in self.passwd.users),
        )


def parse(text: str, os: OsName, where: str) -> Config:
    """One snippet as a node config; ``where`` names it in errors, e.g. ``worker_snippets[1]``."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SnippetError(
            f"{where}: not valid YAML ({_yaml_problem(err)}); fix the syntax"
        ) from None
    if not isinstance(doc, dict):
        raise SnippetError(
            f"{where}: is not a Butane document; start it with 'variant:' and 'version:'"
        )
    variant, versions = VARIANTS[os]
    if doc.get("variant") != variant:
        raise SnippetError(
            f"{where}: variant: {doc.get('variant')!r} does not match os {os!r}; "
            f"write 'variant: {variant}'"
        )
    if doc.get("version") is None:
        raise SnippetError(f"{where}: version: is required; write 'version: {versions[-1]}'")
    if doc.get("version") not in versions:
        raise SnippetError(
            f"{where}: version: {doc.get('version')!r} is not a {variant} Butane version squall "
            f"reads; use one of {', '.join(versions)}"
        )
    try:
        return _Butane.model_validate(doc).build()
    except ValidationError as err:
        raise SnippetError(f"{where}: {_one_line(err)}") from None


def merge(base: Config, snippets: list[str], os: OsName, key: str) -> Config:
    """``base`` with every snippet of the cluster-file list ``key`` merged over it, in order."""
    config = base
    for i, text in enumerate(snippets):
        where = f"{key}[{i}]"
        config = config.merge(parse(text, os, where))
        conflicts = config.path_conflicts()
        if conflicts:
            raise SnippetError(
                f"{where}: {conflicts[0]} is declared as more than one of file, directory and "
                "link; keep one"
            )
    return config


def _yaml_problem(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)


_TYPE_HINTS = {
    "int_type": "a whole number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "model_type": "a mapping",
    "dict_type": "a mapping",
}
_MODELS: dict[str, type[BaseModel]] = {
    "storage": _Storage,
    "systemd": _Systemd,
    "passwd": _Passwd,
    "files": _File,
    "directories": _Directory,
    "links": _Link,
    "units": _Unit,
    "dropins": _Dropin,
    "users": _User,
    "contents": _Resource,
    "append": _Resource,
    "user": _Owner,
    "group": _Owner,
    "verification": _Verification,
}


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _one_line(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = tuple(e["loc"])
    key = _loc(loc)
    kind = e["type"]
    if kind == "extra_forbidden":
        parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), None)
        model = _MODELS.get(parent, _Butane) if parent else _Butane
        near = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.75)
        fix = f"did you mean {near[0]!r}?" if near else f"squall merges only {SUPPORTED}"
        return f"{key}: is not a field squall reads here; {fix}"
    if kind == "missing":
        return f"{key}: is required; add it"
    if kind == "int_type" and loc[-1] == "mode":
        return f"{key}: {e['input']!r} is not a file mode; write it in octal like 0644"
    if kind in _TYPE_HINTS:
        return f"{key}: {e['input']!r} is not {_TYPE_HINTS[kind]}; write {_TYPE_HINTS[kind]}"
    if kind == "literal_error":
        return f"{key}: {e['input']!r} is not allowed; use {e.get('ctx', {}).get('expected')}"
    msg = str(e["msg"]).removeprefix("Value error, ")
    return f"{key}: {msg}" if key else msg
