"""GCRA (generic cell rate algorithm) rate limiting: a pure core, ``now`` passed in.

GCRA is the token bucket expressed as one timestamp per key (the theoretical arrival time),
as in ATM networks and redis-cell: ``rate`` requests per second sustained, ``burst`` extra
requests allowed at once. Memory is one float per active key; idle keys are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """Outcome of one rate-limit check."""

    allowed: bool
    """Whether the request conforms."""
    retry_after: float
    """Seconds until a request would conform (0 when allowed)."""
    remaining: int
    """Requests still allowed right now after this one."""


class Gcra:
    """Per-key GCRA limiter."""

    def __init__(self, rate: float, burst: int, max_keys: int = 1_000_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tolerance = self._interval * (burst - 1)
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys
        self._next_prune = 0.0

    def check(self, key: str, now: float, cost: int = 1) -> Verdict:
        """Count a request of ``cost`` for ``key`` if it conforms."""
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + self._interval * cost
        allow_at = new_tat - self._tolerance - self._interval
        if allow_at > now + 1e-9:  # float sums of the interval must not cost a request
            return Verdict(False, allow_at - now, 0)
        self._tat[key] = new_tat
        remaining = int((now - (new_tat - self._tolerance - self._interval)) / self._interval)
        if now >= self._next_prune or len(self._tat) > self._max_keys:
            self._prune(now)
        return Verdict(True, 0.0, max(0, remaining))

    def peek(self, key: str, now: float) -> float:
        """Seconds until ``key`` may send again (0 if now)."""
        tat = max(self._tat.get(key, now), now)
        return max(0.0, tat - self._tolerance - now)

    def _prune(self, now: float) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._next_prune = now + 10.0

    def __len__(self) -> int:
        return len(self._tat)
