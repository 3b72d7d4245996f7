"""Redis keys for listener HyperLogLogs, shared by edges and origins: 10-second buckets.

Writers (edge log shippers, origin nodes) ``PFADD th:seen:{space}:{floor(t/10)} {listener}``
with ``EXPIRE`` :data:`BUCKET_TTL_SECONDS`, and ``PFADD th:seen:{space}:all {listener}``;
readers ``PFCOUNT`` the keys of :func:`bucket_keys` (one merged count) and :func:`all_key`.
"""

from __future__ import annotations

import math

BUCKET_SECONDS = 10
"""Width of one bucket."""
BUCKET_TTL_SECONDS = 120
"""Expiry set on a bucket key at every write."""


def bucket_of(t: float) -> int:
    """The bucket number of unix time ``t``."""
    return math.floor(t / BUCKET_SECONDS)


def bucket_key(space: str, t: float) -> str:
    """Key of the bucket holding unix time ``t``."""
    return f"th:seen:{space}:{bucket_of(t)}"


def bucket_keys(space: str, now: float, window: float = 30) -> list[str]:
    """Keys ``th:seen:{space}:{floor(t/10)}`` of the buckets covering ``(now-window, now]``,
    oldest first; the last one is the bucket of ``now``."""
    first = bucket_of(now - window)
    last = bucket_of(now)
    return [f"th:seen:{space}:{bucket}" for bucket in range(first, last + 1)]


def all_key(space: str) -> str:
    """Key of the HyperLogLog of every listener ever seen in ``space``."""
    return f"th:seen:{space}:all"
