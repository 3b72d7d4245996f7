"""Join rate limits per source address, per source network and global, behind one interface.

:class:`MemoryLimits` runs the :class:`~townhall.gate.gcra.Gcra` core (one node).
:class:`RedisLimits` runs the same GCRA in one Lua script, so every node of a cluster counts
against the same theoretical arrival times: all the keys of a request are checked, and only
if every one conforms is each charged (a refused request costs nothing), exactly as the
memory version does. Times come from the caller's clock (``now``), like the core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from .gcra import Gcra

PREFIX = "th:gate:rl:"


@dataclass(frozen=True)
class Rule:
    """One tier of limits."""

    name: str
    """``source``, ``network`` or ``global``."""
    rate: float
    """Sustained requests per second per key."""
    burst: int
    """Requests allowed at once on top of the rate."""


def rule(name: str, rate: float, burst_seconds: float = 4.0) -> Rule:
    """A rule whose burst is ``burst_seconds`` worth of its rate (at least 1)."""
    return Rule(name, rate, max(1, math.ceil(rate * burst_seconds)))


@dataclass(frozen=True)
class Refusal:
    """A request over a limit."""

    rule: str
    """Name of the tier that refused it."""
    retry_after: float
    """Seconds until it would conform."""


class Limits(Protocol):
    """Checks one request against a key per rule: None when it conforms (and is counted)."""

    async def check(self, keys: Sequence[tuple[Rule, str]], now: float) -> Refusal | None: ...


class MemoryLimits:
    """GCRA in process memory (the embedded node)."""

    def __init__(self) -> None:
        self._cores: dict[Rule, Gcra] = {}

    def core(self, r: Rule) -> Gcra:
        core = self._cores.get(r)
        if core is None:
            core = self._cores[r] = Gcra(r.rate, r.burst)
        return core

    def check_now(self, keys: Sequence[tuple[Rule, str]], now: float) -> Refusal | None:
        worst: Refusal | None = None
        for r, key in keys:
            wait = self.core(r).peek(key, now)
            if wait > 0 and (worst is None or wait > worst.retry_after):
                worst = Refusal(r.name, wait)
        if worst is not None:
            return worst
        for r, key in keys:
            self.core(r).check(key, now)
        return None

    async def check(self, keys: Sequence[tuple[Rule, str]], now: float) -> Refusal | None:
        return self.check_now(keys, now)


# KEYS: one per rule.  ARGV: now, then (interval, tolerance) per key.
# Same arithmetic as Gcra: tat = max(stored, now); conforms when tat - tolerance <= now;
# charged: tat + interval, kept until it is in the past.
_GCRA = """
local now = tonumber(ARGV[1])
local tats = {}
local worst, which = 0, 0
for i = 1, #KEYS do
  local tol = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local wait = tat - tol - now
  if wait > worst then worst, which = wait, i end
end
if which > 0 then return {which, string.format('%.6f', worst)} end
for i = 1, #KEYS do
  local new = tats[i] + tonumber(ARGV[2 * i])
  local ms = math.ceil((new - now) * 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.6f', new), 'PX', ms)
end
return {0, '0'}
"""


class RedisLimits:
    """GCRA in Redis, shared by every node (one round trip per request)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_GCRA)

    async def check(self, keys: Sequence[tuple[Rule, str]], now: float) -> Refusal | None:
        if not keys:
            return None
        names = [f"{PREFIX}{r.name}:{r.rate:g}:{r.burst}:{key}" for r, key in keys]
        args: list[str] = [repr(now)]
        for r, _ in keys:
            interval = 1.0 / r.rate
            args += [repr(interval), repr(interval * (r.burst - 1))]
        which, wait = await self._script(keys=names, args=args)
        index = int(which)
        if index == 0:
            return None
        return Refusal(keys[index - 1][0].name, float(wait))
