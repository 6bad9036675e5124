"""A small thread pool whose threads never hold up the exit of the process.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, so after Ctrl-C the
process would wait for every in-flight AWS call and waiter. Here the threads are daemons: an
interrupted run exits at once, and the next run adopts whatever the cut calls made.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonPool:
    def __init__(self, workers: int, name: str = "squall") -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as err:
                future.set_exception(err)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn))
        return future

    def close(self) -> None:
        """Let the threads finish what is queued, then end (without waiting for them)."""
        for _ in self._threads:
            self._queue.put(None)

    def __enter__(self) -> DaemonPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
