"""Honest listener counts: distinct tickets that fetched media in the last window (pure core)."""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class ListenerCounts:
    """Listener figures for one space."""

    current: int
    """Distinct listeners who fetched media in the last 30 s."""
    peak: int
    """Highest ``current`` seen so far."""
    total: int
    """Distinct listeners ever seen."""


class ListenerCounter:
    """Counts per space from media fetches; ``now`` is passed in, no clock inside."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._last_seen: dict[str, dict[str, float]] = {}
        self._peak: dict[str, int] = {}
        self._ever: dict[str, int] = {}

    def touch(self, space_id: str, listener_id: str, now: float) -> None:
        seen = self._last_seen.setdefault(space_id, {})
        if listener_id not in seen:
            self._ever[space_id] = self._ever.get(space_id, 0) + 1
        seen[listener_id] = now

    def counts(self, space_id: str, now: float) -> ListenerCounts:
        seen = self._last_seen.get(space_id, {})
        horizon = now - self._window
        stale = [k for k, t in seen.items() if t < horizon]
        for key in stale:
            del seen[key]
        current = len(seen)
        peak = max(self._peak.get(space_id, 0), current)
        self._peak[space_id] = peak
        return ListenerCounts(current=current, peak=peak, total=self._ever.get(space_id, 0))
