"""Plan: the diff between desired resources and what AWS holds.

Desired resources are matched to discovered ones by identity (the Name tag for taggable kinds,
content for the rest). Each becomes a :class:`Change`: create, update, replace (delete then
create), keep, or delete for owned resources nobody desires any more. A replacement of a
create-before-destroy kind is made first, under the kind's other name (``new_name``).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.markup import escape

from squall.engine.core import (
    UNKNOWN,
    Actual,
    Context,
    EngineError,
    Kind,
    Ref,
    Resource,
    digest,
    has_unknown,
    resolve,
)
from squall.engine.pool import DaemonPool

Action = Literal["create", "update", "replace", "delete", "keep"]
SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}
STYLES = {"create": "green", "update": "yellow", "replace": "magenta", "delete": "red"}


@dataclass
class Change:
    action: Action
    kind: str
    name: str
    resource: Resource | None = None
    actual: Actual | None = None
    # prop → (as AWS has it, as wanted); "wanted" may hold UNKNOWN until refs resolve.
    diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    forces_replacement: tuple[str, ...] = ()
    # A create-before-destroy replacement: the name the new resource takes.
    new_name: str | None = None

    @property
    def key(self) -> str | None:
        return self.resource.key if self.resource else None


@dataclass
class Plan:
    cluster: str
    region: str
    changes: list[Change]
    kinds: dict[str, Kind]

    @property
    def actions(self) -> list[Change]:
        return [c for c in self.changes if c.action != "keep"]

    @property
    def empty(self) -> bool:
        return not self.actions

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> str:
        if self.empty:
            return "No changes: AWS matches the cluster file."
        return (
            f"Plan: {self.count('create')} to create, {self.count('update')} to update, "
            f"{self.count('replace')} to replace, {self.count('delete')} to delete."
        )

    def to_json(self) -> dict[str, Any]:
        """Stable, machine-readable and free of secrets (sensitive values become digests)."""
        return {
            "cluster": self.cluster,
            "region": self.region,
            "changes": [self._change_json(c) for c in self.actions],
            "summary": {a: self.count(a) for a in ("create", "update", "replace", "delete")},
        }

    def _change_json(self, c: Change) -> dict[str, Any]:
        kind = self.kinds[c.kind]
        fields = {
            p: {"before": _show(kind, p, old), "after": _show(kind, p, new)}
            for p, (old, new) in sorted(c.diff.items())
        }
        return {
            "action": c.action,
            "kind": c.kind,
            "name": c.name,
            "id": c.actual.id if c.actual else None,
            "fields": fields,
            "forces_replacement": list(c.forces_replacement),
            "new_name": c.new_name,
        }

    def render(self) -> str:
        """Terraform-like text with rich markup: one line per change, changed fields below."""
        lines = []
        for c in self.actions:
            kind = self.kinds[c.kind]
            # Terraform's mark for a replacement that creates first.
            sym = "+/-" if c.new_name else SYMBOLS[c.action]
            ident = f" ({c.actual.id})" if c.actual and c.action != "create" else ""
            line = f"[{STYLES[c.action]}]{sym:>3} {c.kind} {escape(c.name)}[/]{escape(ident)}"
            if c.forces_replacement:
                why = f"{', '.join(c.forces_replacement)} forces replacement"
                if c.new_name:
                    why += f"; {c.new_name} is made before this one goes"
                line += f"  [dim]({escape(why)})[/]"
            lines.append(line)
            if c.action == "create":
                # Creations list every prop in --json; the text stays one line per resource.
                continue
            for p, (old, new) in sorted(c.diff.items()):
                before = escape(_text(_show(kind, p, old)))
                after = escape(_text(_show(kind, p, new)))
                lines.append(f"      {p}: {before} → {after}")
        lines.append(self.summary())
        return "\n".join(lines)


def _show(kind: Kind, prop: str, value: Any) -> Any:
    if value is UNKNOWN:
        return "(known after apply)"
    if prop in kind.sensitive and value is not None:
        return digest(value)
    if isinstance(value, dict):
        return {k: _show(kind, "", v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_show(kind, "", v) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return (
            value if value == "(known after apply)" or value.startswith("sha256:") else repr(value)
        )
    if value is None:
        return "(none)"
    return repr(value)


def order(desired: Iterable[Resource]) -> list[Resource]:
    """Desired resources in dependency order (stable: ties keep their given order)."""
    items = list(desired)
    by_key: dict[str, int] = {}
    for i, r in enumerate(items):
        if r.key in by_key:
            raise EngineError(f"two desired resources share the key {r.key!r}")
        by_key[r.key] = i
    waiting: dict[int, set[int]] = {}
    users: dict[int, list[int]] = {i: [] for i in range(len(items))}
    for i, r in enumerate(items):
        deps = set()
        for k in r.deps():
            if k not in by_key:
                raise EngineError(f"{r.kind} {r.name} refers to {k!r}, which is not desired")
            deps.add(by_key[k])
        waiting[i] = deps
        for d in deps:
            users[d].append(i)
    ready = [i for i, d in waiting.items() if not d]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(items[i])
        for u in users[i]:
            waiting[u].discard(i)
            if not waiting[u]:
                heapq.heappush(ready, u)
    if len(out) != len(items):
        stuck = sorted(items[i].key for i, d in waiting.items() if d)
        raise EngineError(f"dependency cycle between {', '.join(stuck)}")
    return out


def discover_all(ctx: Context, parallelism: int = 8) -> None:
    """Run every kind's discovery, in parallel (kinds read their parents through ctx)."""
    with DaemonPool(min(parallelism, len(ctx.kinds))) as pool:
        for f in [pool.submit(functools.partial(ctx.actuals, k)) for k in ctx.kinds]:
            f.result()


def make_plan(
    ctx: Context, desired: Iterable[Resource], *, region: str, parallelism: int = 8
) -> Plan:
    """Compare ``desired`` with what AWS holds; ``desired=[]`` plans the cluster's destruction."""
    resources = order(desired)
    for r in resources:
        if r.kind not in ctx.kinds:
            raise EngineError(f"{r.key}: unknown resource kind {r.kind!r}")
    discover_all(ctx, parallelism)
    changes: dict[str, Change] = {}
    claimed: dict[tuple[str, str], str] = {}

    def lookup(ref: Ref) -> Any:
        target = changes[ref.key]
        if target.action in ("create", "replace"):
            return UNKNOWN
        kind = ctx.kinds[target.kind]
        if target.action == "update" and ref.attr in kind.volatile:
            return UNKNOWN
        assert target.actual is not None
        return ref.resolve(target.actual.attrs)

    for r in resources:
        kind = ctx.kinds[r.kind]
        props = resolve(r.props, lookup)
        actual = _match(ctx, kind, r, props, claimed)
        if actual is None:
            changes[r.key] = Change(
                "create", r.kind, r.name, r, None, {p: (None, v) for p, v in props.items()}
            )
            continue
        diff = diff_props(kind, props, actual)
        forced = tuple(sorted(p for p in diff if p in kind.immutable))
        action: Action = "replace" if forced else ("update" if diff else "keep")
        new_name = None
        if forced and kind.create_before_destroy:
            # The old one keeps its name until it goes, so the new one takes the other.
            mine = actual.ident == kind.identity(r.name, props)
            new_name = kind.successor_name(r.name) if mine else r.name
        changes[r.key] = Change(action, r.kind, r.name, r, actual, diff, forced, new_name)

    out = list(changes.values())
    for kind_name in ctx.kinds:
        for a in ctx.actuals(kind_name):
            if a.owned and (kind_name, a.id) not in claimed:
                out.append(Change("delete", kind_name, a.name, None, a))
    return Plan(ctx.cluster, region, out, ctx.kinds)


def _match(
    ctx: Context,
    kind: Kind,
    r: Resource,
    props: dict[str, Any],
    claimed: dict[tuple[str, str], str],
) -> Actual | None:
    ident = kind.identity(r.name, props)
    if ident is None or has_unknown(ident):
        return None
    idents = [ident]
    if kind.create_before_destroy:
        idents.append(kind.identity(kind.successor_name(r.name), props))
    found = [a for a in ctx.actuals(r.kind) if a.ident in idents]
    if len(found) > 1 and kind.create_before_destroy:
        # An apply stopped between making a replacement and deleting the old one: keep the
        # one that fits; the other is no one's and goes once its users have moved.
        fits = [a for a in found if not set(diff_props(kind, props, a)) & kind.immutable]
        if len(fits) == 1:
            found = fits
    if len(found) > 1:
        ids = ", ".join(a.id for a in found)
        raise EngineError(
            f"{r.kind} {r.name}: found {len(found)} in AWS ({ids}), expected one; "
            "delete the extra ones, then re-run"
        )
    if not found:
        return None
    a = found[0]
    if (r.kind, a.id) in claimed:
        raise EngineError(
            f"{r.kind} {r.name} and {claimed[(r.kind, a.id)]} both match {a.id}; "
            "give them distinct names"
        )
    kind.claim(ctx, r.name, a)
    claimed[(r.kind, a.id)] = r.key
    return a


def diff_props(kind: Kind, props: dict[str, Any], actual: Actual) -> dict[str, tuple[Any, Any]]:
    """Props that differ from what AWS reports; props AWS does not report are not compared."""
    out = {}
    for p, want in props.items():
        if p in kind.create_only or p not in actual.props:
            continue
        have = actual.props[p]
        if has_unknown(want) or not kind.same(p, want, have):
            out[p] = (have, want)
    return out
