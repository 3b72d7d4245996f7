"""Mergeable latency histograms (log-spaced buckets) and percentiles; pure, no I/O."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence

LOW = 1e-4
"""Smallest bucket edge: 0.1 ms."""
RATIO = 1.1
"""Each bucket is 10 % wider than the one before: percentiles are within ~5 %."""
BUCKETS = 150
"""Up to 0.1 ms x 1.1^149 ~ 150 s."""
EDGES: tuple[float, ...] = tuple(LOW * RATIO**i for i in range(BUCKETS))
"""Upper edge of each bucket in seconds; the last bucket also holds anything larger."""


def bucket(seconds: float) -> int:
    """Index of the bucket for a latency."""
    i = bisect_left(EDGES, seconds)
    return i if i < BUCKETS else BUCKETS - 1


def empty() -> list[int]:
    """A histogram with no observations."""
    return [0] * BUCKETS


def merge(histograms: Iterable[Sequence[int]]) -> list[int]:
    """Sum of histograms."""
    total = empty()
    for h in histograms:
        for i, n in enumerate(h):
            if n:
                total[i] += n
    return total


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) in seconds: the geometric middle of its bucket;
    None when empty."""
    count = sum(histogram)
    if count == 0:
        return None
    rank = max(1, math.ceil(count * q / 100.0))
    seen = 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank:
            lower = EDGES[i - 1] if i > 0 else 0.0
            return math.sqrt(lower * EDGES[i]) if lower > 0 else EDGES[i] / 2
    return EDGES[-1]  # pragma: no cover - unreachable: seen reaches count


def summary(histogram: Sequence[int]) -> dict[str, float | int | None]:
    """Count and p50/p90/p99/max-bucket of a histogram (seconds)."""
    top = max((i for i, n in enumerate(histogram) if n), default=None)
    return {
        "count": sum(histogram),
        "p50": percentile(histogram, 50),
        "p90": percentile(histogram, 90),
        "p99": percentile(histogram, 99),
        "max": EDGES[top] if top is not None else None,
    }
