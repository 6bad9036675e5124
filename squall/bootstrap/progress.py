"""Progress lines: one per thing squall waits for, each saying what it waits for and for how long."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Update:
    key: str  # what is being waited for, e.g. "controller-0 10.0.1.5" or "nodes"
    status: str  # e.g. "waiting for SSH (port closed)"
    left: float | None = None  # seconds until squall gives up, if it is waiting

    def line(self) -> str:
        text = f"{self.key}: {self.status}"
        return text if self.left is None else f"{text} {countdown(self.left)} left"


Report = Callable[[Update], None]


def countdown(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 60}:{seconds % 60:02d}"


def silent(update: Update) -> None:
    """A report that shows nothing."""


class LinePrinter:
    """Prints an update when its status changes, and otherwise at most every ``every`` seconds.

    A countdown alone changes every second; printing each would bury the line that matters.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock
        self._last: dict[str, tuple[str, float]] = {}

    def __call__(self, update: Update) -> None:
        now = self.clock()
        previous = self._last.get(update.key)
        if previous is not None and previous[0] == update.status and now - previous[1] < self.every:
            return
        self._last[update.key] = (update.status, now)
        stream = self.stream or sys.stderr
        print(update.line(), file=stream, flush=True)
