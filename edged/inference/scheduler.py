"""Frames waiting for a model's workers: per camera, by policy, served round-robin.

`every` (files): a bounded queue; the capture thread waits for room (back-pressure, no drop).
`latest` (live): one slot; a new frame replaces the unprocessed one, so nothing grows stale.
Workers take from the cameras in turn, so a fast camera cannot starve a slow one.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edged.frame import Frame


@dataclass
class Job:
    camera: str
    frame: Frame
    ticket: int  # per camera, in the order workers took the frames: the publish order
    max_age_s: float = 0.0  # the camera's max_age_ms; 0 = frames never go stale


class _Lane:
    def __init__(self, policy: str, capacity: int, tickets: Iterator[int] | None = None) -> None:
        self.policy = policy
        self.capacity = 1 if policy == "latest" else capacity
        self.frames: deque[Frame] = deque()
        # Shared with the camera's later lanes (after a reload), so publish order continues.
        self.tickets = tickets if tickets is not None else itertools.count()
        self.max_age_s = 0.0


class Scheduler:
    def __init__(self, capacity: int = 4) -> None:
        self._capacity = capacity
        self._lanes: dict[str, _Lane] = {}
        self._order: list[str] = []
        self._cursor = 0
        self._closed = False
        self._cond = threading.Condition()

    def add_camera(self, camera: str, policy: str, tickets: Iterator[int] | None = None,
                   max_age_s: float = 0.0) -> None:
        with self._cond:
            self._lanes[camera] = _Lane(policy, self._capacity, tickets)
            self._lanes[camera].max_age_s = max_age_s
            if camera not in self._order:
                self._order.append(camera)

    def lane(self, camera: str) -> tuple[str, float] | None:
        """(policy, max_age_s) of a camera's lane, or None: what health and tests read."""
        with self._cond:
            lane = self._lanes.get(camera)
            return (lane.policy, lane.max_age_s) if lane is not None else None

    def remove_camera(self, camera: str, timeout: float) -> int:
        """Wait up to `timeout` for workers to take the camera's queued frames, then drop its
        lane; returns how many frames were still queued (and are dropped)."""
        with self._cond:
            lane = self._lanes.get(camera)
            if lane is None:
                return 0
            self._cond.wait_for(lambda: not lane.frames, timeout=timeout)
            left = len(lane.frames)
            del self._lanes[camera]
            index = self._order.index(camera)
            self._order.pop(index)
            if index < self._cursor:
                self._cursor -= 1
            if self._order:
                self._cursor %= len(self._order)
            else:
                self._cursor = 0
            self._cond.notify_all()
            return left

    def put(self, camera: str, frame: Frame, should_stop: Callable[[], bool]) -> Frame | None:
        """Queue a frame; return the frame it replaced (latest policy), else None.

        Under `every`, waits for room while `should_stop()` is false; a frame refused because
        of a stop is returned as if replaced, so the caller can count it.
        """
        with self._cond:
            lane = self._lanes.get(camera)
            if lane is None:  # moved to another scheduler by a reload meanwhile
                return frame
            if lane.policy == "latest":
                old = lane.frames.popleft() if lane.frames else None
                lane.frames.append(frame)
                self._cond.notify()
                return old
            while len(lane.frames) >= lane.capacity:
                if should_stop() or self._closed:
                    return frame
                self._cond.wait(timeout=0.2)
            lane.frames.append(frame)
            self._cond.notify_all()
            return None

    def drop(self, camera: str) -> int:
        """Drop the camera's queued frames (it jumped back to live); how many there were."""
        with self._cond:
            lane = self._lanes.get(camera)
            if lane is None:
                return 0
            left = len(lane.frames)
            lane.frames.clear()
            self._cond.notify_all()  # room for the camera's own put()
            return left

    def get(self, timeout: float) -> Job | None:
        """The next frame in camera round-robin order; None on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._pending(), timeout=timeout):
                return None
            n = len(self._order)
            for step in range(n):
                name = self._order[(self._cursor + step) % n]
                lane = self._lanes[name]
                if lane.frames:
                    self._cursor = (self._cursor + step + 1) % n
                    frame = lane.frames.popleft()
                    ticket = next(lane.tickets)
                    self._cond.notify_all()  # room for a waiting `every` producer
                    return Job(name, frame, ticket, lane.max_age_s)
            return None

    def _pending(self) -> bool:
        return any(lane.frames for lane in self._lanes.values())

    @property
    def drained(self) -> bool:
        with self._cond:
            return self._closed and not self._pending()

    def close(self) -> None:
        """No more frames will come; workers finish what is queued, then get() returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
