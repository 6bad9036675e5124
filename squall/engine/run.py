"""Apply a plan: deletes in reverse dependency order, then creates and updates in dependency
order, independent changes in parallel on a thread pool. Deletes of create-before-destroy
kinds come last instead: after the creates and updates that move their users elsewhere.

Every step is safe to interrupt: resources carry their tags from the moment they exist, so the
next plan finds them and carries on.
"""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from squall.engine import aws as aws_mod
from squall.engine.core import Actual, Context, EngineError, Kind, Ref, resolve
from squall.engine.plan import Change, Plan, diff_props
from squall.engine.pool import DaemonPool
from squall.errors import SquallError


class Reporter(Protocol):
    def start(self, step: Step) -> None: ...
    def done(self, step: Step, seconds: float) -> None: ...
    def failed(self, step: Step, error: str) -> None: ...
    def skipped(self, step: Step, reason: str) -> None: ...
    def note(self, step: Step, text: str) -> None: ...


@dataclass
class Step:
    """One unit of work: a delete (``verb='delete'``) or a create/update of a desired key."""

    verb: str  # create | update | delete
    change: Change
    actual: Actual | None = None
    after: set[int] = field(default_factory=set)
    implied: bool = False

    @property
    def label(self) -> str:
        name = self.change.new_name if self.verb == "create" else None
        return f"{self.change.kind} {name or self.change.name}"


GERUND = {"create": "creating", "update": "updating", "delete": "deleting"}


class ApplyError(SquallError):
    pass


@dataclass
class Outcome:
    results: dict[str, Actual]
    failures: list[tuple[Step, str]]
    done: int


def steps_for(plan: Plan) -> list[Step]:
    """The plan's work as steps with their ordering constraints."""
    kinds = plan.kinds
    deletes = [
        Step("delete", c, c.actual) for c in plan.changes if c.action in ("delete", "replace")
    ]
    puts = [
        Step("update" if c.action == "update" else "create", c)
        for c in plan.changes
        if c.action in ("create", "update", "replace")
    ]
    steps = deletes + puts
    closure = _kind_closure(kinds)
    deleting = {s.actual.id for s in deletes if s.actual}
    for i, s in enumerate(deletes):
        assert s.actual is not None
        s.implied = any(p in deleting for p in kinds[s.change.kind].deleted_with(s.actual))
        if s.implied:
            continue
        for j, other in enumerate(deletes):
            # Whatever may need this resource goes first.
            if i != j and s.change.kind in closure[other.change.kind] and not other.implied:
                s.after.add(j)
    late = _late_deletes(deletes, kinds)
    put_index = {s.change.key: len(deletes) + n for n, s in enumerate(puts)}
    early = set(range(len(deletes))) - late
    for s in puts:
        assert s.change.resource is not None
        # Names, ports and quotas are free again once the old resources went.
        s.after |= early
        for k in s.change.resource.deps():
            if k in put_index:
                s.after.add(put_index[k])
    for i in late:
        s = deletes[i]
        for n, p in enumerate(puts):
            # Its replacement, and whatever may point at it: a listener forwarding to a target
            # group, a group of instances attached to it; they move before it goes.
            if p.change is s.change or s.change.kind in closure[p.change.kind]:
                s.after.add(len(deletes) + n)
    _check_acyclic(steps)
    return steps


def _late_deletes(deletes: list[Step], kinds: dict[str, Kind]) -> set[int]:
    """Deletes (by index) that run after the creates and updates: those of create-before-
    destroy kinds, unless another delete waits for them (e.g. the VPC a target group is in),
    since creates and updates wait for that one in turn."""
    awaited = {d for s in deletes for d in s.after}
    return {
        i
        for i, s in enumerate(deletes)
        if kinds[s.change.kind].create_before_destroy and not s.implied and i not in awaited
    }


def _check_acyclic(steps: list[Step]) -> None:
    """Steps caught in a cycle would never start; say so rather than finish without them."""
    waiting = {i: set(s.after) for i, s in enumerate(steps)}
    ready = [i for i, w in waiting.items() if not w]
    users: dict[int, list[int]] = {i: [] for i in waiting}
    for i, w in waiting.items():
        for d in w:
            users[d].append(i)
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for u in users[i]:
            waiting[u].discard(i)
            if not waiting[u]:
                ready.append(u)
    if seen != len(steps):
        stuck = sorted({steps[i].label for i, w in waiting.items() if w})
        raise EngineError(f"the changes to {', '.join(stuck)} wait for each other in a cycle")


def _kind_closure(kinds: dict[str, Kind]) -> dict[str, set[str]]:
    """Every kind a kind depends on, directly or not."""
    out: dict[str, set[str]] = {}

    def visit(name: str, trail: tuple[str, ...]) -> set[str]:
        if name in out:
            return out[name]
        if name in trail:
            raise EngineError(f"resource kinds depend on each other in a cycle: {trail}")
        deps: set[str] = set()
        for d in kinds[name].depends_on if name in kinds else ():
            deps.add(d)
            deps |= visit(d, (*trail, name))
        out[name] = deps
        return deps

    for k in kinds:
        visit(k, ())
    return out


def apply(
    ctx: Context,
    plan: Plan,
    reporter: Reporter | None = None,
    *,
    parallelism: int = 8,
) -> Outcome:
    """Carry out ``plan``; returns the resulting resources by key and any failures."""
    report = reporter or _Silent()
    steps = steps_for(plan)
    results: dict[str, Actual] = {
        c.resource.key: c.actual
        for c in plan.changes
        if c.action == "keep" and c.resource and c.actual
    }
    lock = threading.Lock()

    def lookup(ref: Ref) -> Any:
        with lock:
            target = results.get(ref.key)
        if target is None:
            raise EngineError(f"{ref.key} was not created, so nothing can refer to it")
        return ref.resolve(target.attrs)

    def run(step: Step) -> Actual | None:
        kind = ctx.kinds[step.change.kind]
        if step.verb == "delete":
            assert step.actual is not None
            if step.implied:
                return None
            _delete(ctx, kind, step, report)
            return None
        resource = step.change.resource
        assert resource is not None
        props = resolve(resource.props, lookup)
        if step.verb == "create":
            return kind.create(ctx, step.change.new_name or resource.name, props)
        actual = step.change.actual
        assert actual is not None
        # Refs that were unknown at plan time are real now: the update may have become moot.
        changed = set(diff_props(kind, props, actual))
        if not changed:
            return actual
        return kind.update(ctx, resource.name, props, actual, changed)

    failures: list[tuple[Step, str]] = []
    state = ["pending"] * len(steps)
    users: dict[int, list[int]] = {i: [] for i in range(len(steps))}
    for i, s in enumerate(steps):
        for d in s.after:
            users[d].append(i)
    done = 0

    def skip_users(i: int, reason: str) -> None:
        for u in users[i]:
            if state[u] == "pending":
                state[u] = "skipped"
                report.skipped(steps[u], reason)
                skip_users(u, reason)

    def ready(i: int) -> bool:
        return state[i] == "pending" and all(state[d] == "done" for d in steps[i].after)

    pool = DaemonPool(parallelism)
    running: dict[Future[Actual | None], int] = {}
    started: dict[int, float] = {}
    try:
        while True:
            for i in range(len(steps)):
                if ready(i):
                    state[i] = "running"
                    if not steps[i].implied:
                        report.start(steps[i])
                    started[i] = time.monotonic()
                    running[pool.submit(functools.partial(run, steps[i]))] = i
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                i = running.pop(f)
                step = steps[i]
                try:
                    actual = f.result()
                except Exception as err:
                    what = f"{GERUND[step.verb]} {step.label}"
                    msg = str(aws_mod.explain(err, what))
                    state[i] = "failed"
                    failures.append((step, msg))
                    report.failed(step, msg)
                    skip_users(i, f"{step.label} failed")
                    continue
                state[i] = "done"
                done += 1
                if actual is not None and step.change.resource is not None:
                    with lock:
                        results[step.change.resource.key] = actual
                if not step.implied:
                    report.done(step, time.monotonic() - started[i])
    finally:
        for f in running:
            f.cancel()
        pool.close()
    return Outcome(results, failures, done)


def _delete(ctx: Context, kind: Kind, step: Step, report: Reporter) -> None:
    assert step.actual is not None
    actual = step.actual

    def attempt() -> None:
        try:
            kind.delete(ctx, actual)
        except Exception as err:
            if aws_mod.gone(err):
                return
            raise

    aws_mod.retry(
        attempt,
        codes=aws_mod.STILL_IN_USE,
        # A delete blocked by something still going away (DependencyViolation, ResourceInUse).
        timeout=ctx.wait_timeout,
        first_delay=ctx.retry_delay,
        max_delay=20.0,
        on_wait=lambda c: report.note(step, f"waiting for dependents to go ({c})"),
    )


def check(outcome: Outcome) -> None:
    """Raise one line naming the first failure (all failures were reported as they happened)."""
    if not outcome.failures:
        return
    _, msg = outcome.failures[0]
    more = len(outcome.failures) - 1
    extra = f" (and {more} more failure{'s' if more > 1 else ''} above)" if more else ""
    raise ApplyError(f"{msg}{extra}; fix the cause and re-run: finished steps are kept")


class _Silent:
    def start(self, step: Step) -> None:
        pass

    def done(self, step: Step, seconds: float) -> None:
        pass

    def failed(self, step: Step, error: str) -> None:
        pass

    def skipped(self, step: Step, reason: str) -> None:
        pass

    def note(self, step: Step, text: str) -> None:
        pass
