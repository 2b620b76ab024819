"""Log repeated failures once per episode instead of once per frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class EpisodeLog:
    """Logs the first failure of an episode, then at most every `every_s`, and the recovery."""

    def __init__(self, log: logging.Logger, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._every, self._clock = log, every_s, clock
        self._failing = False
        self._last = 0.0
        self._suppressed = 0

    def failure(self, msg: str, *args: object) -> None:
        now = self._clock()
        if not self._failing or now - self._last >= self._every:
            more = f" ({self._suppressed} more since)" if self._suppressed else ""
            self._log.warning(msg + more, *args)
            self._failing, self._last, self._suppressed = True, now, 0
        else:
            self._suppressed += 1

    def recovered(self, msg: str, *args: object) -> None:
        if self._failing:
            self._log.info(msg, *args)
        self._failing, self._suppressed = False, 0


class RepeatFilter(logging.Filter):
    """A handler filter for what EpisodeLog does not cover: the same warning or error
    (same logger, level and text) is shown at most once per `every_s`; the next one shown
    says how many were suppressed."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1000) -> None:
        super().__init__()
        self._every, self._clock, self._max = every_s, clock, max_keys
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # -> [last shown, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self._every:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = f"{record.getMessage()} ({entry[1]} repeats suppressed)"
            record.args = None
        if len(self._seen) >= self._max:  # bounded memory: forget the oldest
            self._seen.pop(next(iter(self._seen)))
        self._seen.pop(key, None)
        self._seen[key] = [now, 0]
        return True
