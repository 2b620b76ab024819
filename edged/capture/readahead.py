"""Read-ahead for still images: the next files are read and decoded on their own threads
while the current one is classified.

A 12 MP JPEG takes tens of milliseconds to decode even at reduced scale, and a capture thread
that decodes one at a time sets the pace of a QC hot folder while a core idles. OpenCV's
decoder and file reads release the GIL, so `depth` decodes run in parallel with inference.
Order is kept (results come in file order), and memory is bounded by `depth` images in flight.
Each load runs on its own short-lived daemon thread: a read stuck on a hung network share must
not keep the process from exiting, as it would a thread pool's (which Python joins at exit).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")

DEPTH = max(1, min(2, os.cpu_count() or 1))  # images read ahead: one per core, at most 2


class ReadAhead(Generic[K, T]):
    """Runs `load(key)` for up to `depth` keys ahead, in order; `take()` gives the oldest."""

    def __init__(self, load: Callable[[K], T], depth: int = DEPTH,
                 name: str = "read-ahead") -> None:
        self._load = load
        self.depth = depth
        self.name = name  # of the threads (the camera sets it to its own name)
        self._queue: deque[tuple[K, Future[T]]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def room(self) -> int:
        return self.depth - len(self._queue)

    def submit(self, key: K) -> None:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return  # dropped by close() before it started
            try:
                future.set_result(self._load(key))
            except BaseException as exc:  # noqa: BLE001 - handed to take()'s caller
                future.set_exception(exc)

        threading.Thread(target=run, name=self.name, daemon=True).start()
        self._queue.append((key, future))

    def take(self) -> tuple[K, Future[T]]:
        """The oldest key and its future (`.result()` gives the image or raises what
        `load` raised)."""
        return self._queue.popleft()

    def close(self) -> list[K]:
        """Drop what is queued and return its keys; a load in hand ends on its own (bounded
        by the file size limit) and its result is dropped."""
        for _, future in self._queue:
            future.cancel()
        dropped = [key for key, _ in self._queue]
        self._queue.clear()
        return dropped
