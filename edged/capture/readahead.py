"""Read-ahead for still images: the next files are read and decoded on their own threads
while the current one is classified.

A 12 MP JPEG takes tens of milliseconds to decode even at reduced scale, and a capture thread
that decodes one at a time sets the pace of a QC hot folder while a core idles. OpenCV's
decoder and file reads release the GIL, so `depth` decodes run in parallel with inference.
Order is kept (results come in file order), and memory is bounded by `depth` images in flight.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[tuple[K, Future[T]]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def room(self) -> int:
        return self.depth - len(self._queue)

    def submit(self, key: K) -> None:
        if self._pool is None:  # threads only once there is work, named for the camera
            self._pool = ThreadPoolExecutor(self.depth, thread_name_prefix=self._name)
        self._queue.append((key, self._pool.submit(self._load, key)))

    def take(self) -> tuple[K, Future[T]]:
        """The oldest key and its future (`.result()` gives the image or raises what
        `load` raised)."""
        return self._queue.popleft()

    def close(self) -> list[K]:
        """Drop what is queued and return its keys; the threads end after the load in hand
        (bounded by the file size limit)."""
        for _, future in self._queue:
            future.cancel()
        dropped = [key for key, _ in self._queue]
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return dropped
