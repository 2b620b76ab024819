"""Sampling a stream at a camera's `fps`, and the lag episodes of a timed stream."""

from __future__ import annotations


class FpsGate:
    """Takes at most `fps` frames per second of (stream or wall) time, on average exactly.

    Frames are due every 1/fps; `spacing` is how far apart the offered frames are expected
    to be, and a frame within half of that before its due time is taken. So keyframes every
    1.00 s at fps 1 are all taken even when their times wobble (a strict `>= 1/fps` since the
    last would take only every other one: 0.5 fps), and 25 fps sampled to 2 gives 2, not 2.08.
    """

    def __init__(self, fps: float) -> None:
        self._gap = 1.0 / fps if fps > 0 else 0.0
        self._due: float | None = None
        self._last = 0.0

    def accept(self, t: float, spacing: float = 0.0) -> bool:
        if not self._gap:
            return True
        due = self._due
        if due is not None and t >= self._last and t < due - spacing / 2:
            return False
        if due is None or t < self._last or t > due + self._gap:
            due = t  # the first frame, time went back (a reopen), or a gap in the stream
        self._due = due + self._gap
        self._last = t
        return True

    def reset(self) -> None:
        self._due = None


class LagEpisodes:
    """Whether a camera counts as lagging: from a jump back to live until `quiet_s` pass
    without another one (then it has kept up for a while)."""

    def __init__(self, quiet_s: float = 10.0) -> None:
        self._quiet = quiet_s
        self.last_jump: float | None = None
        self.worst = 0.0  # the largest lag that made it jump, this episode

    def jumped(self, now: float, lag: float) -> bool:
        """Record a jump; True if it starts a new episode."""
        new = not self.active(now)
        self.worst = lag if new else max(self.worst, lag)
        self.last_jump = now
        return new

    def active(self, now: float) -> bool:
        return self.last_jump is not None and now - self.last_jump < self._quiet

    def ended(self, now: float) -> bool:
        """True once, when an episode has been quiet for `quiet_s`."""
        if self.last_jump is not None and not self.active(now):
            self.last_jump = None
            return True
        return False
