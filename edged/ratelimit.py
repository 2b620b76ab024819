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
