"""Gate cores with no event loop: GCRA, the waiting room, adaptive shedding, networks."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.gate.gcra import Gcra
from townhall.gate.network import network_of
from townhall.gate.shedding import AdaptiveLimit
from townhall.gate.waiting_room import WaitingRoom


def test_gcra_burst_then_rate() -> None:
    g = Gcra(rate=10, burst=5)
    results = [g.check("a", 0.0).allowed for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    denied = g.check("a", 0.0)
    assert 0.09 < denied.retry_after <= 0.1 + 1e-9
    assert g.check("a", 0.1).allowed and not g.check("a", 0.1).allowed
    assert g.check("b", 0.0).allowed  # keys are independent


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(1, 100), burst=st.integers(1, 20), n=st.integers(10, 400))
def test_gcra_never_exceeds_rate_plus_burst(rate: float, burst: int, n: int) -> None:
    g = Gcra(rate=rate, burst=burst)
    rng = random.Random(n)
    now, allowed, start = 0.0, 0, 0.0
    for _ in range(n):
        now += rng.random() * 0.05
        allowed += g.check("k", now).allowed
    assert allowed <= burst + rate * (now - start) + 1e-6


def test_gcra_prunes_idle_keys() -> None:
    g = Gcra(rate=1, burst=1)
    for i in range(100):
        g.check(str(i), 0.0)
    g.check("late", 100.0)
    assert len(g) == 1


def test_networks() -> None:
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_of("::ffff:198.51.100.9") == "198.51.100.0/24"
    assert network_of("nonsense") == "invalid"


def test_waiting_room_prequeue_is_shuffled_then_fifo() -> None:
    room = WaitingRoom(rate=10, burst=10)
    rng = random.Random(7)
    draws = [room.arrive_early(rng.random()) for _ in range(100)]
    room.start(now=0.0)
    seqs = [room.prequeue_seq(d) for d in draws]
    # arriving first gives no advantage: the first arrivals are spread over the queue
    assert max(seqs[:10]) > 50
    late = [room.arrive(now=0.0, active=0) for _ in range(5)]
    assert late == [100, 101, 102, 103, 104]
    assert room.place(0, 0.0, 0).admitted  # within the burst
    back = room.place(late[-1], 0.0, 0)
    assert not back.admitted and back.position == 95 and abs(back.eta - 9.5) < 1e-9
    # the queue drains at the configured rate
    assert not room.place(late[-1], 9.0, 0).admitted
    assert room.place(late[-1], 9.6, 0).admitted


def test_waiting_room_admits_at_once_when_quiet_and_does_not_bank() -> None:
    room = WaitingRoom(rate=5, burst=3)
    room.start(0.0)
    for t in range(3):
        seq = room.arrive(float(t * 10), active=0)
        assert room.place(seq, float(t * 10), 0).admitted
    # a long quiet spell banks at most ``burst`` admissions
    seqs = [room.arrive(1000.0, active=0) for _ in range(10)]
    admitted = [room.place(s, 1000.0, 0).admitted for s in seqs]
    assert admitted.count(True) == 3


def test_waiting_room_respects_capacity() -> None:
    room = WaitingRoom(rate=10, burst=10, capacity=20)
    room.start(0.0)
    seqs = [room.arrive(0.0, active=0) for _ in range(50)]
    assert sum(room.place(s, 1.0, active=0).admitted for s in seqs) == 20
    # full: nobody else gets in, and the frontier does not advance meanwhile
    assert sum(room.place(s, 5.0, active=20).admitted for s in seqs) == 0
    assert room.place(seqs[25], 6.0, active=20).position >= 1
    assert sum(room.place(s, 7.0, active=10).admitted for s in seqs) == 30


def test_adaptive_limit_shrinks_under_latency_and_recovers() -> None:
    lim = AdaptiveLimit(initial=100, min_limit=4)
    for _ in range(300):
        assert lim.try_acquire()
        lim.release(0.01)
    healthy = lim.limit
    for _ in range(200):
        lim.try_acquire()
        lim.release(0.2)  # 20x slower: overload
    assert lim.limit < healthy / 2
    for _ in range(2000):
        lim.try_acquire()
        lim.release(0.01)
    assert lim.limit > healthy * 0.9


def test_adaptive_limit_refuses_over_limit() -> None:
    lim = AdaptiveLimit(initial=8, min_limit=8)
    assert all(lim.try_acquire() for _ in range(8))
    assert not lim.try_acquire() and lim.refused == 1
    lim.release(0.01)
    assert lim.try_acquire()
