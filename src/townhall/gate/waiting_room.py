"""The waiting room: admission at a configured rate, a shuffled pre-queue, then FIFO.

A pure core (``now`` passed in). Everyone who asks to join gets a sequence number:
- before the start, arrivals join a *pre-queue*; they hold a random draw, and at the start
  the pre-queue is ordered by that draw (shuffled once, the Cloudflare Waiting Room and
  Queue-it semantics), so arriving early gives no edge over arriving on time;
- after the start, sequence numbers are handed out first-come-first-served after the
  pre-queue.
An admission *frontier* advances at ``rate`` per second from the start (paused while the
space is at its active-listener capacity, which is checked against the honest listener
count: the admission rate bounds any overshoot during the count's lag), never banking more
than ``burst`` ahead of arrivals. A sequence number below the frontier is admitted; anyone
else waits with a position (``seq − frontier``) and an ETA (``position / rate``). The state
is three numbers and a timestamp, so it fits in Redis as easily as in memory.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    """Where one person stands."""

    admitted: bool
    """True when they may get a listener ticket now."""
    position: int
    """People ahead of them (0 when admitted)."""
    eta: float
    """Estimated seconds until admission (0 when admitted)."""


@dataclass
class RoomState:
    """The shared numbers of one space's room."""

    started_at: float | None = None
    """When admissions began (the space went live); None before."""
    prequeue: int = 0
    """People who arrived before the start."""
    arrivals: int = 0
    """People who arrived after the start."""
    frontier: float = 0.0
    """Sequence numbers below this are admitted."""
    updated: float = 0.0
    """When ``frontier`` was last advanced."""


class WaitingRoom:
    """Admission decisions for one space."""

    def __init__(self, rate: float, burst: int, capacity: int | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self.state = RoomState()

    # -- arrivals ------------------------------------------------------------------

    def arrive_early(self, draw: float) -> float:
        """Someone arrives before the start; returns the draw that orders them later."""
        self.state.prequeue += 1
        return min(max(draw, 0.0), 0.999999)

    def arrive(self, now: float, active: int) -> int:
        """Someone arrives after the start; returns their sequence number."""
        self.advance(now, active)
        seq = self.state.prequeue + self.state.arrivals
        self.state.arrivals += 1
        return seq

    def start(self, now: float) -> None:
        """The space went live: admissions begin."""
        if self.state.started_at is None:
            self.state.started_at = now
            self.state.updated = now
            self.state.frontier = float(self.burst)

    # -- the frontier -----------------------------------------------------------------

    def advance(self, now: float, active: int) -> None:
        s = self.state
        if s.started_at is None:
            return
        elapsed = max(0.0, now - s.updated)
        s.updated = max(s.updated, now)
        if self.capacity is not None and active >= self.capacity:
            return
        total = s.prequeue + s.arrivals
        s.frontier = max(
            s.frontier, min(s.frontier + elapsed * self.rate, float(total + self.burst))
        )

    def prequeue_seq(self, draw: float) -> int:
        """The sequence number a pre-queue draw maps to once started."""
        return int(draw * self.state.prequeue)

    def place(self, seq: int, now: float, active: int) -> Place:
        """Where sequence number ``seq`` stands at ``now``."""
        self.advance(now, active)
        s = self.state
        if s.started_at is None:
            ahead = seq  # before the start, an indicative position only
            return Place(False, ahead, 0.0)
        full = self.capacity is not None and active >= self.capacity
        if seq < s.frontier and not full:
            return Place(True, 0, 0.0)
        if full and seq < s.frontier:
            # at capacity: first in line; admitted as soon as someone leaves
            return Place(False, 1, 1.0 / self.rate)
        position = int(seq - s.frontier) + 1
        return Place(False, position, position / self.rate)
