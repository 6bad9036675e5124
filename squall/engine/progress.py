"""Live progress of an apply on the terminal: a bar of the steps done, and one line per
finished, failed or skipped step."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from squall.engine.run import Step

DONE = {"create": ("+", "green", "created"), "update": ("~", "yellow", "updated")}
DELETED = ("-", "red", "deleted")


class RichReporter:
    def __init__(self, console: Console, total: int, title: str) -> None:
        self.console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task(title, total=total)
        self._running: set[str] = set()
        self._notes: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._title = title

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def _describe(self) -> None:
        running = sorted(self._running)
        now = ""
        if running:
            now = f": {running[0]}" + (f" +{len(running) - 1}" if len(running) > 1 else "")
        self._progress.update(self._task, description=self._title + escape(now))

    def start(self, step: Step) -> None:
        with self._lock:
            self._running.add(step.label)
            self._describe()

    def _finish(self, step: Step) -> None:
        self._running.discard(step.label)
        self._progress.advance(self._task)
        self._describe()

    def done(self, step: Step, seconds: float) -> None:
        sym, style, verb = DELETED if step.verb == "delete" else DONE[step.verb]
        ident = step.actual.id if step.actual else ""
        with self._lock:
            self._finish(step)
            self.console.print(
                f"[{style}]{sym:>3}[/] {verb} {escape(step.label)}"
                + (f" [dim]({escape(ident)})[/]" if ident else "")
                + f" [dim]{seconds:.1f}s[/]"
            )

    def failed(self, step: Step, error: str) -> None:
        with self._lock:
            self._finish(step)
            self.console.print(f"[red]  ✗ {escape(error)}[/]")

    def skipped(self, step: Step, reason: str) -> None:
        with self._lock:
            self._progress.advance(self._task)
            self.console.print(f"[dim]  · skipped {escape(step.label)}: {escape(reason)}[/]")

    def note(self, step: Step, text: str) -> None:
        with self._lock:
            if (step.label, text) in self._notes:
                return
            self._notes.add((step.label, text))
            self.console.print(f"[dim]    {escape(step.label)}: {escape(text)}[/]")
