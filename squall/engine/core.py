"""The reconciler's vocabulary: desired resources, references, discovered resources, kinds.

A desired :class:`Resource` is plain data: a kind, a unique key, the AWS-visible name and the
properties squall wants. Properties may hold :class:`Ref` values that point at another
resource's attribute (``Ref("vpc")`` is that VPC's id); refs are resolved to real values when
the referenced resource exists, and they define the dependency graph.

A :class:`Kind` knows how to discover, create, update and delete one sort of AWS resource over
boto3. It never knows about clusters beyond the ownership tag.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from squall.errors import SquallError

if TYPE_CHECKING:
    from squall.engine.aws import Aws

OWNER_TAG = "squall.dev/cluster"
T = TypeVar("T")


class EngineError(SquallError):
    """Something the reconciler cannot sort out by itself (duplicates, a cycle, a bad ref)."""


class _Unknown:
    """A value that only exists once a resource it depends on has been created."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(known after apply)"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Ref:
    """An attribute of another desired resource, optionally passed through a pure function."""

    key: str
    attr: str = "id"
    via: Transform | None = None

    def resolve(self, attrs: dict[str, Any]) -> Any:
        if self.attr not in attrs:
            raise EngineError(f"{self.key} has no attribute {self.attr!r}")
        value = attrs[self.attr]
        # None: AWS has not filled the attribute in yet (e.g. an IPv6 block still arriving).
        if value is UNKNOWN or value is None or self.via is None:
            return value
        return self.via(value)


class Transform:
    """A named, comparable function for :attr:`Ref.via` (plans must be able to print it)."""

    def __call__(self, value: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Resource:
    """One desired AWS resource."""

    kind: str
    key: str
    name: str
    props: dict[str, Any]
    # Keys this resource must wait for although it holds no ref to them (e.g. an
    # internet-facing NLB needs the VPC's internet gateway attached).
    after: tuple[str, ...] = ()

    def ref(self, attr: str = "id", via: Transform | None = None) -> Ref:
        return Ref(self.key, attr, via)

    def deps(self) -> set[str]:
        return {r.key for r in refs_in(self.props)} | set(self.after)


@dataclass
class Actual:
    """A resource as AWS reports it."""

    kind: str
    id: str
    name: str
    # Same shape as the desired props, refs replaced by ids; only what AWS reports.
    props: dict[str, Any]
    # Everything a Ref may point at (``id`` always included).
    attrs: dict[str, Any] = field(default_factory=dict)
    # Carries the cluster's ownership (tag, or a name the cluster alone uses): destroy and
    # orphan removal only ever touch owned resources.
    owned: bool = True
    # What a desired resource must match to adopt this one.
    ident: Hashable = None

    def __post_init__(self) -> None:
        self.attrs.setdefault("id", self.id)
        if self.ident is None:
            self.ident = self.name


def refs_in(value: Any) -> Iterator[Ref]:
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from refs_in(v)


def resolve(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """``value`` with every Ref replaced by ``lookup(ref)``."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, lookup) for v in value)
    return value


def has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_unknown(v) for v in value)
    return False


def digest(value: Any) -> str:
    """A short, stable fingerprint of a value, shown in place of secrets."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


class Context:
    """What kinds need while they work: the AWS clients, the owner and memoized discovery."""

    def __init__(
        self,
        aws: Aws,
        cluster: str,
        kinds: Iterable[Kind],
        *,
        consistency_timeout: float = 120.0,
        wait_timeout: float = 900.0,
        retry_delay: float = 2.0,
    ) -> None:
        self.aws = aws
        self.cluster = cluster
        self.consistency_timeout = consistency_timeout
        self.wait_timeout = wait_timeout
        # First pause before retrying a delete that something else still blocks.
        self.retry_delay = retry_delay
        self.kinds: dict[str, Kind] = {k.kind: k for k in kinds}
        self._found: dict[str, list[Actual]] = {}
        self._locks: dict[str, threading.Lock] = {k: threading.Lock() for k in self.kinds}
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()
        # Things the user should know that did not stop the run.
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        with self._cache_lock:
            self.warnings.append(text)

    def settle(self, fn: Callable[[], T]) -> T:
        """One call that may reach AWS before a just-created resource is visible to it.

        Only single calls are retried: a failed call with a NotFound code changed nothing,
        while retrying a whole create could make a second resource.
        """
        from squall.engine.aws import EVENTUAL_NOT_FOUND, retry

        return retry(fn, codes=EVENTUAL_NOT_FOUND, timeout=self.consistency_timeout)

    def tags(self, name: str) -> list[dict[str, str]]:
        return [{"Key": "Name", "Value": name}, {"Key": OWNER_TAG, "Value": self.cluster}]

    def tag_spec(self, resource_type: str, name: str) -> list[dict[str, Any]]:
        return [{"ResourceType": resource_type, "Tags": self.tags(name)}]

    @property
    def owner_filter(self) -> dict[str, Any]:
        return {"Name": f"tag:{OWNER_TAG}", "Values": [self.cluster]}

    def actuals(self, kind: str) -> list[Actual]:
        """Everything of ``kind`` this cluster owns or may adopt, discovered once."""
        if kind not in self.kinds:
            raise EngineError(f"unknown resource kind {kind!r}")
        with self._locks[kind]:
            if kind not in self._found:
                found = self.kinds[kind].discover(self)
                self._found[kind] = sorted(found, key=lambda a: (a.name, a.id))
            return self._found[kind]

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        """Share one expensive read (e.g. one describe call) between kinds."""
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
            lock = self._cache.setdefault(f"lock:{key}", threading.Lock())
        with lock:
            with self._cache_lock:
                if key in self._cache:
                    return self._cache[key]
            value = fn()
            with self._cache_lock:
                self._cache[key] = value
            return value

    def forget(self) -> None:
        """Drop discovery results, e.g. before re-reading AWS after an apply."""
        self._found.clear()
        with self._cache_lock:
            self._cache.clear()


class Kind:
    """How to discover, create, update and delete one sort of AWS resource."""

    kind: ClassVar[str]
    # Kinds whose resources this kind's resources may need; deletes run in reverse.
    depends_on: ClassVar[tuple[str, ...]] = ()
    # Props whose change forces delete-then-create.
    immutable: ClassVar[frozenset[str]] = frozenset()
    # Props set at creation and never compared afterwards.
    create_only: ClassVar[frozenset[str]] = frozenset()
    # Props shown only as a digest, in plans and in JSON.
    sensitive: ClassVar[frozenset[str]] = frozenset()
    # List props whose order carries no meaning.
    unordered: ClassVar[frozenset[str]] = frozenset()
    # Attributes that an update may change (refs to them are unknown until it ran).
    volatile: ClassVar[frozenset[str]] = frozenset()
    # A replacement is made before the old one goes, and deletes of this kind wait until the
    # resources that use them were created or updated: for what AWS refuses to delete while
    # something still points at it, where the pointer can only move to something that
    # exists. The new one takes :meth:`successor_name`, since names must be unique.
    create_before_destroy: ClassVar[bool] = False
    # The longest name AWS accepts for this kind.
    name_limit: ClassVar[int] = 255

    def discover(self, ctx: Context) -> list[Actual]:
        raise NotImplementedError

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        """What discovery must report for this desired resource; None when not yet knowable."""
        return name

    def successor_name(self, name: str) -> str:
        """The other name a resource called ``name`` takes when it is made before the one it
        replaces goes; replacing it again returns to ``name``. Discovery matches either."""
        tail = hashlib.sha256(name.encode()).hexdigest()[:6]
        return f"{name[: self.name_limit - len(tail) - 1].rstrip('-')}-{tail}"

    def claim(self, ctx: Context, name: str, actual: Actual) -> None:
        """A plan is about to take ``actual`` as the desired ``name``: raise
        :class:`EngineError` to refuse it (e.g. something others made that must stay theirs)."""

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        raise NotImplementedError

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        raise EngineError(f"{self.kind} {name}: cannot be updated in place")

    def delete(self, ctx: Context, actual: Actual) -> None:
        raise NotImplementedError

    def deleted_with(self, actual: Actual) -> tuple[str, ...]:
        """Ids of resources whose deletion takes this one along (its delete is then skipped)."""
        return ()

    def same(self, prop: str, desired: Any, observed: Any) -> bool:
        if prop in self.unordered and isinstance(desired, list) and isinstance(observed, list):
            return sorted(map(_sort_key, desired)) == sorted(map(_sort_key, observed))
        return bool(desired == observed)


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
