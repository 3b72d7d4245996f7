"""Synthetic traffic for the watch tests: pure functions producing time-ordered streams.

Every generator takes a seeded ``random.Random``, a start time and a duration and returns a
list of :class:`Observation` (or samples), sorted by time. ``merge`` interleaves streams and
``replay`` feeds them to a :class:`Watch`, ticking once a second like the real adapter.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from townhall.watch.observations import ConnectionSample, Observation, OriginSample
from townhall.watch.verdict import Verdict
from townhall.watch.watch import Watch

PLAYER_RATE = 4  # requests per second of one LL-HLS player
SPACE = "sp1"

Event = Observation | ConnectionSample | OriginSample


def crowd_address(rng: random.Random) -> str:
    """An address in one of ~4 million public-looking /24s."""
    return (
        f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


def _player(
    rng: random.Random, at: float, until: float, source: str, subject: str, rate: float
) -> Iterator[Observation]:
    """A player's requests: blocking playlist reloads and parts, ``rate`` per second."""
    t = at + rng.random() / rate
    step = 1.0 / rate
    kind_toggle = rng.random() < 0.5
    while t < until:
        kind_toggle = not kind_toggle
        yield Observation(
            at=t,
            kind="playlist" if kind_toggle else "media",
            source=source,
            outcome="served",
            subject=subject,
            space=SPACE,
            latency=0.01,
        )
        t += step * rng.uniform(0.9, 1.1)


def audience(
    rng: random.Random,
    start: float,
    seconds: float,
    *,
    listeners: int = 60,
    joins_per_second: float = 1.0,
    networks: int = 40,
    prefix: str = "base",
) -> list[Observation]:
    """A steady audience on a few familiar networks: players at 4 req/s plus a trickle of
    joins (returning listeners among them)."""
    nets = [f"10.{rng.randint(0, 255)}.{i}" for i in range(networks)]
    out: list[Observation] = []
    end = start + seconds
    for i in range(listeners):
        source = f"{rng.choice(nets)}.{rng.randint(1, 254)}"
        out.extend(_player(rng, start, end, source, f"{prefix}:{i}", PLAYER_RATE))
    t = start
    k = 0
    while True:
        t += rng.expovariate(joins_per_second)
        if t >= end:
            break
        k += 1
        source = f"{rng.choice(nets)}.{rng.randint(1, 254)}"
        subject = f"{prefix}-new:{k}"
        out.append(
            Observation(t, "join", source, "admitted", subject, SPACE, 0.02, rng.random() < 0.3)
        )
        out.extend(_player(rng, t, end, source, subject, PLAYER_RATE))
    out.sort(key=lambda o: o.at)
    return out


def flash_crowd(
    rng: random.Random,
    start: float,
    seconds: float,
    *,
    join_rate: float,
    returning: float = 0.1,
    admit_rate: float = 100.0,
    poll_every: float = 3.0,
    expired_share: float = 0.005,
    nat_share: float = 0.05,
    play_until: float | None = None,
    prefix: str = "crowd",
) -> list[Observation]:
    """Many people arriving at once: sources spread over thousands of /24s (a few behind a
    shared NAT), ``returning`` of them seen before, a waiting room admitting ``admit_rate``
    per second (the others re-ask every ``poll_every`` s), admitted ones play at 4 req/s, a
    few old tabs present expired tickets."""
    out: list[Observation] = []
    end = start + seconds
    play_end = play_until if play_until is not None else end
    nats = [crowd_address(rng) for _ in range(20)]
    frontier = start
    t = start
    k = 0
    while True:
        t += rng.expovariate(join_rate)
        if t >= end:
            break
        k += 1
        source = rng.choice(nats) if rng.random() < nat_share else crowd_address(rng)
        back = rng.random() < returning
        subject = f"{prefix}:{k}"
        if rng.random() < expired_share:  # an old tab with an expired ticket, gives up
            for i in range(3):
                out.append(Observation(t + i, "playlist", source, "expired_ticket", None, SPACE))
            continue
        # the waiting room: admitted when the frontier reaches them
        frontier = max(frontier + 1.0 / admit_rate, t)
        ask = t
        while ask < frontier and ask < end:
            out.append(Observation(ask, "join", source, "queued", None, SPACE, 0.02, back))
            ask += poll_every * rng.uniform(0.8, 1.2)
        if frontier < end:
            out.append(
                Observation(
                    max(ask, frontier), "join", source, "admitted", subject, SPACE, 0.02, back
                )
            )
            out.extend(_player(rng, max(ask, frontier), play_end, source, subject, PLAYER_RATE))
    out.sort(key=lambda o: o.at)
    return out


def join_flood(
    rng: random.Random, start: float, seconds: float, *, sources: int = 3, rate: float = 100.0
) -> list[Observation]:
    """A few sources asking to join ``rate`` times a second each; the gate limits them."""
    addrs = [f"198.51.100.{i + 2}" for i in range(sources)]
    out: list[Observation] = []
    for source in addrs:
        t = start
        i = 0
        while t < start + seconds:
            outcome = "admitted" if i < 2 else "limited"
            subject = f"flood:{source}:{i}" if outcome == "admitted" else None
            out.append(Observation(t, "join", source, outcome, subject, SPACE, 0.001))
            t += rng.expovariate(rate)
            i += 1
    out.sort(key=lambda o: o.at)
    return out


def distributed_flood(
    rng: random.Random,
    start: float,
    seconds: float,
    *,
    networks: int = 2000,
    rate: float = 400.0,
    forged: float = 0.95,
) -> list[Observation]:
    """Joins from ``networks`` never-seen networks, ``forged`` of them with forged or expired
    tickets (2:1), the rest with stolen valid ones."""
    addrs = [
        f"{rng.randint(200, 223)}.{rng.randint(0, 255)}.{i % 256}.{rng.randint(1, 254)}"
        for i in range(networks)
    ]
    out: list[Observation] = []
    t = start
    k = 0
    while True:
        t += rng.expovariate(rate)
        if t >= start + seconds:
            break
        k += 1
        source = rng.choice(addrs)
        if rng.random() < forged:
            outcome = "forged_ticket" if rng.random() < 2 / 3 else "expired_ticket"
            out.append(Observation(t, "join", source, outcome, None, SPACE, 0.001))
        else:
            out.append(Observation(t, "join", source, "admitted", f"stolen:{k}", SPACE, 0.002))
    return out


def cache_busting(
    rng: random.Random, start: float, seconds: float, *, sources: int = 20, rate: float = 300.0
) -> list[Observation]:
    """Random URLs at the edges: 404s from the origin, some misses with random queries."""
    addrs = [f"192.0.2.{i + 2}" for i in range(sources)]
    out: list[Observation] = []
    t = start
    while True:
        t += rng.expovariate(rate)
        if t >= start + seconds:
            break
        outcome = "not_found" if rng.random() < 0.7 else "miss"
        kind = "media" if rng.random() < 0.6 else "other"
        out.append(Observation(t, kind, rng.choice(addrs), outcome, None, SPACE, 0.05))
    return out


def hammering(
    rng: random.Random, start: float, seconds: float, *, tickets: int = 50, rate: float = 40.0
) -> list[Observation]:
    """Holders of valid tickets asking for the playlist ``rate`` times a second."""
    out: list[Observation] = []
    for i in range(tickets):
        source = f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7"
        t = start + rng.random() / rate
        while t < start + seconds:
            out.append(Observation(t, "playlist", source, "served", f"hammer:{i}", SPACE, 0.01))
            t += 1.0 / rate
    out.sort(key=lambda o: o.at)
    return out


def connections(
    observations: Iterable[Observation],
    start: float,
    seconds: int,
    *,
    per_source: float = 1.2,
    extra_open: int = 0,
    extra_from: float = 0.0,
    holders: int = 50,
) -> list[ConnectionSample]:
    """Once-a-second connection samples consistent with ``observations`` (each active source
    holds ``per_source`` connections), plus ``extra_open`` idle connections from ``holders``
    addresses from ``extra_from`` on (slowloris)."""
    active: dict[int, set[str]] = {}
    done: dict[int, int] = {}
    for o in observations:
        second = int(o.at - start)
        active.setdefault(second, set()).add(o.source)
        done[second] = done.get(second, 0) + 1
    out: list[ConnectionSample] = []
    per_holder = extra_open // holders if holders else 0
    for s in range(seconds):
        at = start + s + 1
        extra = extra_open if at > extra_from and extra_open else 0
        top = (
            tuple((f"203.0.113.{i + 2}", per_holder) for i in range(min(holders, 10)))
            if extra
            else ()
        )
        open_now = int(len(active.get(s, ())) * per_source) + extra
        out.append(ConnectionSample(at, open_now, done.get(s, 0), "edge-1", top))
    return out


def origin_load(start: float, seconds: int, rps: float, cpu: float = 0.2) -> list[OriginSample]:
    return [OriginSample(start + s + 1, rps, cpu) for s in range(seconds)]


def merge(*streams: Iterable[Event]) -> list[Event]:
    return list(heapq.merge(*streams, key=lambda e: e.at))


@dataclass
class Replay:
    """What a replay produced."""

    verdicts: list[tuple[float, Verdict]] = field(default_factory=list)
    """(tick time, verdict) for every verdict the ticks returned, finals and provisionals."""

    def first(self, since: float, predicate: object) -> float | None:
        """Tick time of the first verdict after ``since`` that satisfies ``predicate``."""
        assert callable(predicate)
        for at, verdict in self.verdicts:
            if verdict.window_start + verdict.duration > since and predicate(verdict):
                return at
        return None

    def finals(self) -> list[Verdict]:
        return [v for _, v in self.verdicts if v.final]


def replay(watch: Watch, events: Iterable[Event], until: float, start: float) -> Replay:
    """Feed ``events`` (time-ordered) to ``watch`` and tick it every second up to ``until``."""
    result = Replay()
    next_tick = start + 1.0
    for e in events:
        while e.at >= next_tick:
            result.verdicts.extend((next_tick, v) for v in watch.tick(next_tick))
            next_tick += 1.0
        if isinstance(e, Observation):
            watch.observe(e)
        elif isinstance(e, ConnectionSample):
            watch.observe_connections(e)
        else:
            watch.observe_origin(e)
    while next_tick <= until:
        result.verdicts.extend((next_tick, v) for v in watch.tick(next_tick))
        next_tick += 1.0
    return result
