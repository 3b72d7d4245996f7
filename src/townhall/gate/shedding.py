"""Adaptive load shedding: a concurrency limit that follows measured latency.

The gradient algorithm of Netflix's concurrency-limits (Gradient2), as a pure core: a
short-term latency average is compared with a slow long-term one; when requests get slower
than usual the limit shrinks, when they are as fast as usual it grows by a queue allowance
(√limit). Requests over the limit are refused at once (503 + Retry-After), so overload turns
into quick answers instead of timeouts and a process that never dies of queueing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LimitSnapshot:
    """The limiter's figures, for metrics and the watch."""

    limit: float
    inflight: int
    short_rtt: float
    long_rtt: float
    refused: int


class AdaptiveLimit:
    """Gradient concurrency limit."""

    def __init__(
        self,
        *,
        initial: int = 64,
        min_limit: int = 8,
        max_limit: int = 2048,
        smoothing: float = 0.2,
        tolerance: float = 2.0,
        short_window: int = 50,
        long_window: int = 600,
    ) -> None:
        self.limit = float(initial)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.smoothing = smoothing
        self.tolerance = tolerance
        self._short_alpha = 2 / (short_window + 1)
        self._long_alpha = 2 / (long_window + 1)
        self.short_rtt = 0.0
        self.long_rtt = 0.0
        self.inflight = 0
        self.refused = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free; count a refusal otherwise."""
        if self.inflight >= int(self.limit):
            self.refused += 1
            return False
        self.inflight += 1
        return True

    def release(self, rtt: float) -> None:
        """A request that held a slot finished after ``rtt`` seconds."""
        self.inflight = max(0, self.inflight - 1)
        if rtt <= 0:
            return
        if self.long_rtt == 0.0:
            self.short_rtt = self.long_rtt = rtt
        else:
            self.short_rtt += self._short_alpha * (rtt - self.short_rtt)
            self.long_rtt += self._long_alpha * (rtt - self.long_rtt)
        # let the long-term view recover quickly after a spell of slowness
        if self.long_rtt / self.short_rtt > 2:
            self.long_rtt *= 0.95
        gradient = max(0.5, min(1.0, self.tolerance * self.long_rtt / self.short_rtt))
        queue = math.sqrt(self.limit)
        target = self.limit * gradient + queue
        new = self.limit * (1 - self.smoothing) + target * self.smoothing
        self.limit = max(float(self.min_limit), min(float(self.max_limit), new))

    def snapshot(self) -> LimitSnapshot:
        return LimitSnapshot(self.limit, self.inflight, self.short_rtt, self.long_rtt, self.refused)

    def retry_after(self) -> int:
        """A suggestion for Retry-After, in whole seconds (1..10)."""
        return max(1, min(10, math.ceil(self.short_rtt * 4)))
