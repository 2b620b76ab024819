"""Frames waiting for a model's workers: per camera, by policy, served round-robin.

`every` (files): a bounded queue; the capture thread waits for room (back-pressure, no drop).
`latest` (live): one slot; a new frame replaces the unprocessed one, so nothing grows stale.
Workers take from the cameras in turn, so a fast camera cannot starve a slow one.

A camera with regions puts a *group*: one part per region of the same frame (one capture
time). A group waits, and is replaced under `latest`, as one frame; once a worker has taken
its first part, the rest of it is served before the camera's next frame, so every region
of a frame is classified and no frame is split. Workers take ONE part per turn of the
round-robin, so a group of N parts costs its camera N turns: fairness counts regions, and a
camera with 12 regions gets as many classifications per turn as a camera with one.
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
    ticket: int  # per subject, in the order workers took the frames: the publish order
    max_age_s: float = 0.0  # the camera's max_age_ms; 0 = frames never go stale
    subject: str = ""  # the camera, or camera/region: whose results, seq and state
    top_k: int | None = None  # a region's override of the model's top_k

    def __post_init__(self) -> None:
        if not self.subject:
            self.subject = self.camera


@dataclass
class Part:
    """One region of a frame: its Frame (the shared image, its own box), the subject's
    publish-order tickets, and its overrides."""

    frame: Frame
    subject: str
    tickets: Iterator[int]
    top_k: int | None = None


Entry = Frame | list[Part]  # what a lane holds: a plain frame, or one frame's region group


class _Lane:
    def __init__(self, policy: str, capacity: int, tickets: Iterator[int] | None = None) -> None:
        self.policy = policy
        self.capacity = 1 if policy == "latest" else capacity
        self.frames: deque[Entry] = deque()
        self.current: deque[Part] = deque()  # the rest of a group a worker has started
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
            self._cond.wait_for(lambda: not lane.frames and not lane.current, timeout=timeout)
            left = len(lane.frames) + (1 if lane.current else 0)
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

    def put(self, camera: str, frame: Entry, should_stop: Callable[[], bool]) -> Entry | None:
        """Queue a frame (or a region group); return what it replaced (latest), else None.

        Under `every`, waits for room while `should_stop()` is false; a frame refused because
        of a stop is returned as if replaced, so the caller can count it.
        """
        if isinstance(frame, list) and not frame:
            return None  # no region of this frame goes to this model
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
                if lane.current or lane.frames:
                    self._cursor = (self._cursor + step + 1) % n
                    if not lane.current:
                        entry = lane.frames.popleft()
                        self._cond.notify_all()  # room for a waiting `every` producer
                        if isinstance(entry, Frame):
                            return Job(name, entry, next(lane.tickets), lane.max_age_s)
                        lane.current.extend(entry)
                    part = lane.current.popleft()
                    if not lane.current:
                        self._cond.notify_all()  # remove_camera may wait for this
                    return Job(name, part.frame, next(part.tickets), lane.max_age_s,
                               part.subject, part.top_k)
            return None

    def _pending(self) -> bool:
        return any(lane.frames or lane.current for lane in self._lanes.values())

    @property
    def drained(self) -> bool:
        with self._cond:
            return self._closed and not self._pending()

    def close(self) -> None:
        """No more frames will come; workers finish what is queued, then get() returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
