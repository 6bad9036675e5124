"""The plan, apply, outputs and destroy commands: what they print and when they ask.

The CLI hands over the loaded spec and state and two consoles; everything a user sees from
these commands is decided here.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from squall.aws.cluster import Cluster
from squall.aws.outputs import SENSITIVE, redact
from squall.engine import run
from squall.engine.core import digest
from squall.engine.plan import Plan
from squall.engine.progress import RichReporter
from squall.errors import SquallError
from squall.spec import Spec
from squall.state import State

P = ParamSpec("P")
R = TypeVar("R")

INTERRUPTED = (
    "interrupted; re-run the same command to continue: what was made carries the cluster's tag "
    "and is picked up again"
)


def interruptible(fn: Callable[P, R]) -> Callable[P, R]:
    """Ctrl-C ends the command at once with a line saying it is safe to re-run.

    Typer turns KeyboardInterrupt into a silent exit 130, so the line is printed here.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            Console(stderr=True, highlight=False, soft_wrap=True).print(INTERRUPTED)
            raise typer.Exit(130) from None

    return wrapper


@interruptible
def plan(spec: Spec, state: State, out: Console, err: Console, *, as_json: bool) -> None:
    cluster = Cluster(spec, state)
    with err.status("reading AWS…"):
        p = cluster.plan()
    _warn(cluster, err)
    if as_json:
        _print_json(p.to_json())
        return
    out.print(p.render())


def _confirm(what: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise SquallError(
            f"{what} needs confirmation and there is no terminal to ask on; pass --yes"
        )
    if not typer.confirm(f"Do you want to {what}?", default=False):
        raise SquallError(f"{what} cancelled; nothing was changed")


def _warn(cluster: Cluster, console: Console) -> None:
    """Show the warnings gathered so far, each once."""
    for warning in cluster.ctx.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    cluster.ctx.warnings.clear()


def _run(cluster: Cluster, p: Plan, out: Console, title: str) -> None:
    # Steps another deletion takes along (a group's own rules) make no call of their own.
    total = sum(1 for s in run.steps_for(p) if not s.implied)
    with RichReporter(out, total, title) as reporter:
        outcome = cluster.apply(p, reporter)
    _warn(cluster, out)
    run.check(outcome)


@interruptible
def apply(spec: Spec, state: State, out: Console, err: Console, *, yes: bool) -> Cluster:
    """Bring AWS in line with the spec; returns the cluster for the steps that follow."""
    cluster = Cluster(spec, state)
    with err.status("reading AWS…"):
        p = cluster.plan(pin=True)
    out.print(p.render())
    _warn(cluster, err)
    if not p.empty:
        _confirm(f"apply these changes to cluster {spec.cluster_name}", yes)
        _run(cluster, p, out, "applying")
        out.print(f"[green]AWS is up to date for cluster {spec.cluster_name}.[/]")
    return cluster


@interruptible
def destroy(spec: Spec, state: State, out: Console, err: Console, *, yes: bool) -> None:
    cluster = Cluster(spec, state)
    with err.status("reading AWS…"):
        p = cluster.destroy_plan()
    if p.empty:
        out.print(f"Nothing to destroy: AWS holds nothing of cluster {spec.cluster_name}.")
        return
    out.print(p.render())
    for thing in cluster.foreign:
        out.print(
            f"[yellow]warning:[/] {escape(thing)} is not the cluster's, but AWS removes it "
            "together with the cluster's load balancer, security group or route table"
        )
    _confirm(f"destroy cluster {spec.cluster_name} and everything above", yes)
    _run(cluster, p, out, "destroying")
    out.print(f"[green]Destroyed cluster {spec.cluster_name}.[/]")


@interruptible
def outputs(
    spec: Spec, state: State, out: Console, err: Console, *, as_json: bool, sensitive: bool
) -> None:
    cluster = Cluster(spec, state)
    with err.status("reading AWS…"):
        values = cluster.outputs()
    shown = values if sensitive else redact(values)
    if as_json:
        _print_json(shown)
        return
    for key, value in values.items():
        out.print(f"[bold]{key}[/] = {escape(_text(key, value, sensitive))}")


def _text(key: str, value: Any, sensitive: bool) -> str:
    if key in SENSITIVE and not sensitive:
        return f"(sensitive, {digest(value)}; --show-sensitive prints it)"
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, str) and "\n" in value:
        return "\n" + value.rstrip("\n")
    return str(value)


def _print_json(value: Any) -> None:
    # Plain text on stdout: no colour codes or wrapping, whatever the terminal.
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()
