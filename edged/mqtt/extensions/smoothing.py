"""Smoothing of per-frame labels into a camera's state: pure functions and a small holder.

Each frame votes for its label, or for `unknown` when its score is below `min_score`.
- none: the state is the latest vote.
- majority: the state changes to a label only once it has `min_votes` of the last `window`
  votes (so a one-frame flicker does not change it); `unknown` needs the same.
- ema: an exponential moving average of each label's score (span `window`, so
  alpha = 2 / (window + 1)); the state is the label with the highest average once that passes
  `min_score`, and `unknown` while no label's average reaches it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

UNKNOWN = "unknown"


def vote(label: str, score: float, min_score: float) -> str:
    return label if score >= min_score else UNKNOWN


def majority_state(current: str, votes: Sequence[str], min_votes: int) -> str:
    """The label with at least `min_votes` of `votes` (the most, if several), else `current`."""
    counts: dict[str, int] = {}
    for v in votes:
        counts[v] = counts.get(v, 0) + 1
    if counts.get(current, 0) >= min_votes:
        return current
    best = max(counts.items(), key=lambda kv: kv[1], default=(current, 0))
    return best[0] if best[1] >= min_votes else current


def ema_alpha(window: int) -> float:
    return 2.0 / (window + 1.0)


def ema_update(ema: Mapping[str, float], scores: Mapping[str, float], alpha: float
               ) -> dict[str, float]:
    """One step for every label seen so far or now; a label missing from `scores` scores 0."""
    labels = set(ema) | set(scores)
    return {lab: alpha * scores.get(lab, 0.0) + (1 - alpha) * ema.get(lab, 0.0)
            for lab in labels}


def ema_state(ema: Mapping[str, float], min_score: float) -> tuple[str, float]:
    """(label with the highest average, that average), or (unknown, best) below min_score."""
    if not ema:
        return UNKNOWN, 0.0
    label, value = max(ema.items(), key=lambda kv: (kv[1], kv[0]))
    return (label, value) if value >= min_score else (UNKNOWN, value)


@dataclass
class Smoother:
    """One camera's smoothing state; `update` returns the (possibly unchanged) state."""

    method: str = "majority"
    window: int = 5
    min_votes: int = 3
    min_score: float = 0.5
    state: str = UNKNOWN
    score: float | None = None
    votes: deque = field(default_factory=deque)
    ema: dict[str, float] = field(default_factory=dict)

    def update(self, label: str, score: float, scores: Mapping[str, float] | None = None
               ) -> str:
        if self.method == "ema":
            self.ema = ema_update(self.ema, scores or {label: score}, ema_alpha(self.window))
            self.state, value = ema_state(self.ema, self.min_score)
            self.score = round(value, 6)
            return self.state
        v = vote(label, score, self.min_score)
        if self.method == "none":
            self.state = v
        else:
            self.votes.append(v)
            while len(self.votes) > self.window:
                self.votes.popleft()
            self.state = majority_state(self.state, list(self.votes), self.min_votes)
        if self.state == label:
            self.score = score
        elif self.state == UNKNOWN and v == UNKNOWN:
            self.score = score
        return self.state
