"""Traffic features of one window (pure, ``now`` passed in), and the baseline they are read
against.

A :class:`FeatureWindow` takes every :class:`~townhall.watch.observations.Observation` of its
window into counters keyed by source, network and ticket (a few dictionary updates per
request; each dictionary is capped). :meth:`FeatureWindow.features` turns them into a frozen
:class:`Features`: volumes and request mix, how spread the sources are, ticket validity, rates
per source and per ticket, missing objects, connections and origin load, the *suspects*
(requests attributed to attack patterns) and the *remainder* seen as a possible crowd.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..gate.network import network_of
from .observations import (
    ADMITTED,
    EXPIRED_TICKET,
    FORGED_TICKET,
    INVALID_TICKET,
    KINDS,
    MISS,
    MISSING,
    NO_TICKET,
    QUEUED,
    ConnectionSample,
    Observation,
    OriginSample,
)
from .verdict import Verdict, WatchThresholds

OVERFLOW = "(other)"
"""Key that collects sources or tickets beyond a window's cap."""
TOP = 10
"""Entries kept in the top lists of :class:`Features`."""


def fast_network(address: str) -> str:
    """:func:`townhall.gate.network.network_of`, with a fast path for dotted IPv4 text (the
    servers hand us canonical addresses; the general path costs ~30 µs an address)."""
    if address.count(".") == 3 and address.replace(".", "").isdigit():
        return address[: address.rindex(".")] + ".0/24"
    return network_of(address)


def entropy(counts: Iterable[int]) -> float:
    """Shannon entropy of a distribution of counts, normalised to 0..1 (1 = uniform)."""
    values = [c for c in counts if c > 0]
    k = len(values)
    if k <= 1:
        return 0.0
    total = sum(values)
    h = -sum((c / total) * math.log(c / total) for c in values)
    return float(h / math.log(k))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ascending ``sorted_values`` (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- the frozen figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinFigures:
    """Join attempts of the window."""

    attempts: int = 0
    """Join requests answered (first asks and waiting-room re-asks)."""
    admitted: int = 0
    """Answered with a ticket."""
    queued: int = 0
    """Answered with a place in the waiting room."""
    refused: int = 0
    """Refused (rate limit, shedding, block list, bad request, invalid ticket)."""
    invalid_ticket: int = 0
    """Of the attempts: those presenting a forged, expired or foreign ticket."""
    returning_known: int = 0
    """Attempts for which the gate knew whether the listener was returning."""
    returning: int = 0
    """Of those, returning listeners (seen in an earlier space, or following the host)."""


@dataclass(frozen=True)
class TicketFigures:
    """Ticket validity over every request of the window."""

    valid: int = 0
    """Requests with a valid ticket."""
    forged: int = 0
    """Requests with a ticket whose signature does not verify."""
    expired: int = 0
    """Requests with a genuine but expired (or revoked) ticket."""
    bad: int = 0
    """Requests with an unreadable ticket or one for another space."""
    missing: int = 0
    """Requests that needed a ticket and had none."""

    @property
    def invalid(self) -> int:
        """Forged + expired + bad."""
        return self.forged + self.expired + self.bad


@dataclass(frozen=True)
class Suspects:
    """Requests attributed to attack patterns (see :class:`~townhall.watch.verdict.
    WatchThresholds` for the attribution thresholds)."""

    sources: int = 0
    """Distinct suspect sources (any pattern)."""
    requests: int = 0
    """Requests from suspect sources."""
    flood_sources: int = 0
    """Sources joining faster than ``flood_source_join_rate``."""
    flood_networks: int = 0
    """Networks of those sources."""
    flood_joins: int = 0
    """Join attempts they made."""
    top_flood_sources: tuple[tuple[str, int], ...] = ()
    """Busiest of them, with their join attempts."""
    invalid_sources: int = 0
    """Sources whose ticket-bearing requests were mostly invalid."""
    invalid_networks: int = 0
    """Networks of those sources."""
    invalid_new_networks: int = 0
    """Of those networks, the ones never seen before."""
    invalid_requests: int = 0
    """Requests those sources made."""
    busting_sources: int = 0
    """Sources whose requests were mostly for missing objects or cache misses."""
    busting_requests: int = 0
    """Requests those sources made."""
    top_busting_sources: tuple[tuple[str, int], ...] = ()
    """Busiest of them, with their requests."""
    hammer_tickets: int = 0
    """Valid tickets asking faster than ``hammer_ticket_rate``."""
    hammer_requests: int = 0
    """Requests those tickets made."""
    hammer_mean_rate: float = 0.0
    """Their mean request rate, per second."""
    hammer_sources: int = 0
    """Sources that used those tickets."""
    top_hammer_tickets: tuple[tuple[str, float], ...] = ()
    """Busiest of those tickets (listener id), with their request rates per second."""
    offenders: tuple[tuple[str, int, str], ...] = ()
    """Top suspect sources: address, requests, reasons (``join_flood,forged_tickets``...)."""
    offender_networks: tuple[tuple[str, int, int], ...] = ()
    """Top suspect networks: network, requests, suspect sources in it."""


@dataclass(frozen=True)
class CrowdFigures:
    """The joins *not* attributed to suspects, read as a possible flash crowd."""

    joins: int = 0
    """Join attempts from non-suspect sources."""
    sources: int = 0
    """Distinct sources of those attempts."""
    networks: int = 0
    """Distinct networks of those attempts."""
    entropy: float = 0.0
    """Normalised Shannon entropy of those attempts over sources (1 = perfectly spread)."""
    top_share: float = 0.0
    """Share of those attempts made by the five busiest sources."""
    invalid_share: float = 0.0
    """Share of invalid tickets among these sources' ticket-bearing requests."""
    returning_known: int = 0
    """Attempts with a known returning flag."""
    returning_share: float = 0.0
    """Share of returning listeners among those."""
    new_network_share: float = 0.0
    """Share of the attempts from networks never seen before."""


@dataclass(frozen=True)
class SpaceFigures:
    """Per-space figures of one window (for the space's timeline)."""

    joins: int = 0
    """Join attempts."""
    admitted: int = 0
    """Joins admitted."""
    queued: int = 0
    """Joins queued."""
    refused: int = 0
    """Joins refused."""
    listeners: int = 0
    """Distinct valid tickets that fetched a playlist or media."""


@dataclass(frozen=True)
class Features:
    """Everything the verdict rules read about one window."""

    window_start: float
    """Unix time the window began."""
    duration: float
    """Seconds of traffic summarised (10 s for a closed window)."""
    requests: int = 0
    """Observations (requests answered)."""
    mix: dict[str, int] = field(default_factory=dict)
    """Requests per kind (join, playlist, media, state, api, other)."""
    sources: int = 0
    """Distinct client addresses."""
    networks: int = 0
    """Distinct /24 (IPv4) or /48 (IPv6) networks."""
    new_networks: int = 0
    """Networks never seen in earlier windows (or spaces)."""
    new_network_share: float = 0.0
    """Share of requests from those networks."""
    entropy: float = 0.0
    """Normalised Shannon entropy of requests over sources."""
    top_share: float = 0.0
    """Share of requests made by the five busiest sources."""
    top_sources: tuple[tuple[str, int], ...] = ()
    """Busiest sources and their requests."""
    top_networks: tuple[tuple[str, int], ...] = ()
    """Busiest networks and their requests."""
    join_sources: int = 0
    """Distinct sources of join attempts."""
    join_networks: int = 0
    """Distinct networks of join attempts."""
    join_new_network_share: float = 0.0
    """Share of join attempts from networks never seen before."""
    join_new_networks: int = 0
    """Networks of join attempts never seen before."""
    join_entropy: float = 0.0
    """Normalised entropy of join attempts over sources."""
    joins: JoinFigures = field(default_factory=JoinFigures)
    """Join attempts and their outcomes."""
    tickets: TicketFigures = field(default_factory=TicketFigures)
    """Ticket validity."""
    listeners: int = 0
    """Distinct valid tickets that made requests (other than joins)."""
    ticket_rate_max: float = 0.0
    """Highest request rate of one ticket, per second (over the part of the window since the
    ticket's first request, at least ``min_duration``)."""
    ticket_rate_p99: float = 0.0
    """99th percentile of per-ticket request rates."""
    ticket_rate_median: float = 0.0
    """Median per-ticket request rate."""
    source_rate_max: float = 0.0
    """Highest request rate of one source, per second."""
    source_rate_p99: float = 0.0
    """99th percentile of per-source request rates."""
    missing: int = 0
    """Requests for objects that do not exist (404, 400)."""
    misses: int = 0
    """Edge cache misses reported."""
    origin_rps: float = 0.0
    """Mean requests per second at the origin (from origin samples)."""
    origin_cpu: float = 0.0
    """Highest origin CPU use sampled, in cores."""
    open_connections: int = 0
    """Open connections, summed over servers (each server's highest sample)."""
    completed_requests: int = 0
    """Requests completed on those servers during the window."""
    completion_rate: float = 0.0
    """Completed requests per open connection per second."""
    connection_top_sources: tuple[tuple[str, int], ...] = ()
    """Addresses holding the most open connections (when servers report them)."""
    connection_heavy_sources: int = 0
    """Addresses holding at least ``conns_source_max`` connections (no browser does)."""
    connection_heavy_open: int = 0
    """Connections those addresses hold."""
    latency_mean: float = 0.0
    """Mean answer latency, seconds (of requests that reported one)."""
    suspects: Suspects = field(default_factory=Suspects)
    """Requests attributed to attack patterns."""
    crowd: CrowdFigures = field(default_factory=CrowdFigures)
    """The remainder's joins, read as a possible crowd."""
    capped: bool = False
    """True when a per-key table hit its cap (counts beyond it are lumped together)."""
    spaces: dict[str, SpaceFigures] = field(default_factory=dict)
    """Per-space figures (the busiest spaces of the window)."""

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest (what operators and the report see)."""
        d = max(self.duration, 1e-9)
        bearing = self.tickets.valid + self.tickets.invalid
        return {
            "window_start": self.window_start,
            "duration": round(self.duration, 3),
            "requests": self.requests,
            "requests_per_second": round(self.requests / d, 2),
            "mix": dict(self.mix),
            "sources": self.sources,
            "networks": self.networks,
            "new_networks": self.new_networks,
            "new_network_share": round(self.new_network_share, 4),
            "source_entropy": round(self.entropy, 4),
            "top5_source_share": round(self.top_share, 4),
            "top_sources": [list(p) for p in self.top_sources],
            "top_networks": [list(p) for p in self.top_networks],
            "joins": {
                "attempts": self.joins.attempts,
                "per_second": round(self.joins.attempts / d, 2),
                "admitted": self.joins.admitted,
                "queued": self.joins.queued,
                "refused": self.joins.refused,
                "invalid_ticket": self.joins.invalid_ticket,
                "sources": self.join_sources,
                "networks": self.join_networks,
                "new_network_share": round(self.join_new_network_share, 4),
                "source_entropy": round(self.join_entropy, 4),
                "returning_share": round(self.joins.returning / self.joins.returning_known, 4)
                if self.joins.returning_known
                else None,
            },
            "tickets": {
                "valid": self.tickets.valid,
                "forged": self.tickets.forged,
                "expired": self.tickets.expired,
                "bad": self.tickets.bad,
                "missing": self.tickets.missing,
                "invalid_share": round(self.tickets.invalid / bearing, 4) if bearing else 0.0,
            },
            "listeners": self.listeners,
            "rates": {
                "ticket_max": round(self.ticket_rate_max, 2),
                "ticket_p99": round(self.ticket_rate_p99, 2),
                "ticket_median": round(self.ticket_rate_median, 2),
                "source_max": round(self.source_rate_max, 2),
                "source_p99": round(self.source_rate_p99, 2),
            },
            "missing": self.missing,
            "misses": self.misses,
            "origin": {"requests_per_second": round(self.origin_rps, 2), "cpu": self.origin_cpu},
            "connections": {
                "open": self.open_connections,
                "completed": self.completed_requests,
                "completed_per_connection_per_second": round(self.completion_rate, 3),
            },
            "latency_mean": round(self.latency_mean, 4),
            "suspects": {
                "sources": self.suspects.sources,
                "requests": self.suspects.requests,
                "join_flood_sources": self.suspects.flood_sources,
                "invalid_ticket_sources": self.suspects.invalid_sources,
                "cache_busting_sources": self.suspects.busting_sources,
                "hammering_tickets": self.suspects.hammer_tickets,
            },
            "crowd": {
                "joins": self.crowd.joins,
                "sources": self.crowd.sources,
                "networks": self.crowd.networks,
                "entropy": round(self.crowd.entropy, 4),
                "returning_share": round(self.crowd.returning_share, 4),
            },
            "capped": self.capped,
        }


# -- the baseline --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineStats:
    """The usual figures, learned from windows judged normal."""

    windows: int = 0
    """Normal windows learned so far."""
    join_rate: float = 0.0
    """Usual join attempts per second."""
    request_rate: float = 0.0
    """Usual requests per second."""
    origin_rps: float = 0.0
    """Usual origin requests per second."""
    open_connections: float = 0.0
    """Usual open connections."""


class Baseline:
    """Networks and listeners seen before (bounded, least recently seen forgotten first) and
    moving averages of normal windows."""

    def __init__(
        self, *, max_networks: int = 200_000, max_subjects: int = 200_000, alpha: float = 0.1
    ) -> None:
        self.max_networks = max_networks
        self.max_subjects = max_subjects
        self.alpha = alpha
        self._networks: dict[str, None] = {}
        self._subjects: dict[str, str] = {}
        self._stats = BaselineStats()

    def knows_network(self, network: str) -> bool:
        return network in self._networks

    def returning(self, subject: str, space: str | None) -> bool | None:
        """True when ``subject`` listened to another space before; None when unknown."""
        last = self._subjects.get(subject)
        return True if last is not None and last != space else None

    def stats(self) -> BaselineStats:
        return self._stats

    def __len__(self) -> int:
        return len(self._networks) + len(self._subjects)

    def learn(self, window: FeatureWindow, features: Features, verdict: Verdict) -> None:
        """Remember what a closed window showed: its non-suspect networks (unless it was an
        attack), its valid listeners, and its figures when it was normal."""
        if verdict.label != "attack":
            suspects = window.suspect_sources
            nets = self._networks
            for source in window.src_requests:
                if source in suspects or source == OVERFLOW:
                    continue
                net = window.network(source)
                nets.pop(net, None)
                nets[net] = None
            _trim(nets, self.max_networks)
        subjects = self._subjects
        for space, listeners in window.space_listeners.items():
            for subject in listeners:
                subjects.pop(subject, None)
                subjects[subject] = space
        _trim(subjects, self.max_subjects)
        if verdict.label == "normal" and verdict.final:
            d = max(features.duration, 1e-9)
            s = self._stats
            a = self.alpha if s.windows else 1.0
            self._stats = BaselineStats(
                windows=s.windows + 1,
                join_rate=s.join_rate + a * (features.joins.attempts / d - s.join_rate),
                request_rate=s.request_rate + a * (features.requests / d - s.request_rate),
                origin_rps=s.origin_rps + a * (features.origin_rps - s.origin_rps),
                open_connections=s.open_connections
                + a * (features.open_connections - s.open_connections),
            )


def _trim(table: dict[str, Any], cap: int) -> None:
    excess = len(table) - cap
    if excess > 0:
        for key in list(_first(table, excess + cap // 10)):
            del table[key]


def _first(table: dict[str, Any], count: int) -> list[str]:
    out: list[str] = []
    for key in table:
        if len(out) >= count:
            break
        out.append(key)
    return out


# -- the window ---------------------------------------------------------------------------------


class FeatureWindow:
    """Counters of one window (see the module docstring)."""

    def __init__(
        self,
        start: float,
        baseline: Baseline,
        *,
        length: float = 10.0,
        max_keys: int = 200_000,
        max_spaces: int = 1_000,
    ) -> None:
        self.start = start
        self.length = length
        self.baseline = baseline
        self.max_keys = max_keys
        self.max_spaces = max_spaces
        self.capped = False
        self.requests = 0
        self.mix: Counter[str] = Counter()
        self.src_requests: Counter[str] = Counter()
        self.src_joins: Counter[str] = Counter()
        self.src_valid: Counter[str] = Counter()
        self.src_invalid: Counter[str] = Counter()
        self.src_busting: Counter[str] = Counter()
        self.src_returning_known: Counter[str] = Counter()
        self.src_returning: Counter[str] = Counter()
        self.net_requests: Counter[str] = Counter()
        self.net_joins: Counter[str] = Counter()
        self.ticket_requests: Counter[str] = Counter()
        self.ticket_source: dict[str, str] = {}
        self.ticket_first: dict[str, float] = {}
        self.space_joins: dict[str, list[int]] = {}
        self.space_listeners: dict[str, set[str]] = {}
        self._nets: dict[str, str] = {}
        self.joins = [0, 0, 0, 0, 0, 0, 0]  # attempts admitted queued refused invalid known ret
        self.tickets = [0, 0, 0, 0, 0]  # valid forged expired bad missing
        self.missing = 0
        self.misses = 0
        self.latency_sum = 0.0
        self.latency_count = 0
        self.conn_open: dict[str, int] = {}
        self.conn_completed = 0
        self.conn_sources: Counter[str] = Counter()
        self.origin_requests: list[float] = []
        self.origin_cpu = 0.0
        self.suspect_sources: dict[str, set[str]] = {}

    def network(self, source: str) -> str:
        net = self._nets.get(source)
        if net is None:
            net = fast_network(source)
            self._nets[source] = net
        return net

    # -- feeding ----------------------------------------------------------------------------

    def add(self, obs: Observation, count: int = 1) -> None:
        """Count one observation (``count`` times: an edge's sampled row stands for several)."""
        self.requests += count
        self.mix[obs.kind] += count
        source = obs.source
        if source not in self.src_requests and len(self.src_requests) >= self.max_keys:
            source = OVERFLOW
            self.capped = True
        self.src_requests[source] += count
        net = OVERFLOW if source == OVERFLOW else self.network(source)
        self.net_requests[net] += count
        outcome = obs.outcome
        subject = obs.subject
        invalid = outcome in INVALID_TICKET
        if obs.kind == "join":
            self._join(obs, source, net, invalid, count)
        if subject is not None:
            self.tickets[0] += count
            self.src_valid[source] += count
            if obs.kind != "join":
                if subject in self.ticket_requests:
                    self.ticket_requests[subject] += count
                elif len(self.ticket_requests) < self.max_keys:
                    self.ticket_requests[subject] = count
                    self.ticket_source[subject] = source
                    self.ticket_first[subject] = obs.at
                else:
                    self.capped = True
                if obs.space is not None and obs.kind in ("playlist", "media"):
                    listeners = self.space_listeners.get(obs.space)
                    if listeners is None and len(self.space_listeners) < self.max_spaces:
                        listeners = self.space_listeners[obs.space] = set()
                    if listeners is not None:
                        listeners.add(subject)
        elif invalid:
            self.src_invalid[source] += count
            if outcome == FORGED_TICKET:
                self.tickets[1] += count
            elif outcome == EXPIRED_TICKET:
                self.tickets[2] += count
            else:
                self.tickets[3] += count
        elif outcome == NO_TICKET:
            self.tickets[4] += count
        if outcome in MISSING:
            self.missing += count
            self.src_busting[source] += count
        elif outcome == MISS:
            self.misses += count
            self.src_busting[source] += count
        if obs.latency is not None:
            self.latency_sum += obs.latency * count
            self.latency_count += count

    def _join(self, obs: Observation, source: str, net: str, invalid: bool, count: int) -> None:
        j = self.joins
        j[0] += count
        self.src_joins[source] += count
        self.net_joins[net] += count
        outcome = obs.outcome
        slot = 1 if outcome == ADMITTED else 2 if outcome == QUEUED else 3
        j[slot] += count
        if invalid:
            j[4] += count
        returning = obs.returning
        if returning is None and obs.subject is not None:
            returning = self.baseline.returning(obs.subject, obs.space)
        if returning is not None:
            j[5] += count
            self.src_returning_known[source] += count
            if returning:
                j[6] += count
                self.src_returning[source] += count
        if obs.space is not None:
            row = self.space_joins.get(obs.space)
            if row is None and len(self.space_joins) < self.max_spaces:
                row = self.space_joins[obs.space] = [0, 0, 0, 0]
            if row is not None:
                row[0] += count
                row[slot] += count

    def add_connections(self, sample: ConnectionSample) -> None:
        """Count one connection sample (a server's highest open count in the window)."""
        self.conn_open[sample.server] = max(
            self.conn_open.get(sample.server, 0), sample.open_connections
        )
        self.conn_completed += sample.completed_requests
        for source, count in sample.top_sources:
            if count > self.conn_sources.get(source, 0):
                self.conn_sources[source] = count

    def add_origin(self, sample: OriginSample) -> None:
        """Count one origin load sample."""
        self.origin_requests.append(sample.requests)
        self.origin_cpu = max(self.origin_cpu, sample.cpu)

    # -- summarising ------------------------------------------------------------------------

    def features(self, now: float, thresholds: WatchThresholds | None = None) -> Features:
        """The window's :class:`Features` as of ``now`` (the window end once closed)."""
        t = thresholds or WatchThresholds()
        d = max(1.0, min(self.length, now - self.start))
        baseline = self.baseline
        new_nets = [n for n in self.net_requests if n != OVERFLOW and not baseline.knows_network(n)]
        new_requests = sum(self.net_requests[n] for n in new_nets)
        join_new = [n for n in self.net_joins if n != OVERFLOW and not baseline.knows_network(n)]
        join_new_attempts = sum(self.net_joins[n] for n in join_new)
        src_counts = sorted(self.src_requests.values())
        end = self.start + d
        ticket_rates = {
            subject: count / max(t.min_duration, min(d, end - self.ticket_first[subject]))
            for subject, count in self.ticket_requests.items()
        }
        tk_rates = sorted(ticket_rates.values())
        top5 = sum(c for _, c in self.src_requests.most_common(5))
        suspects = self._suspects(d, t, ticket_rates)
        held = [c for _, c in self.conn_sources.items() if c >= t.conns_source_max]
        crowd = self._crowd(t)
        open_conns = sum(self.conn_open.values())
        spaces = {
            space: SpaceFigures(
                joins=row[0],
                admitted=row[1],
                queued=row[2],
                refused=row[3],
                listeners=len(self.space_listeners.get(space, ())),
            )
            for space, row in self.space_joins.items()
        }
        for space, listeners in self.space_listeners.items():
            if space not in spaces:
                spaces[space] = SpaceFigures(listeners=len(listeners))
        j = self.joins
        tk = self.tickets
        return Features(
            window_start=self.start,
            duration=d,
            requests=self.requests,
            mix={k: self.mix.get(k, 0) for k in KINDS},
            sources=len(self.src_requests),
            networks=len(self.net_requests),
            new_networks=len(new_nets),
            new_network_share=new_requests / self.requests if self.requests else 0.0,
            entropy=entropy(self.src_requests.values()),
            top_share=top5 / self.requests if self.requests else 0.0,
            top_sources=tuple(self.src_requests.most_common(TOP)),
            top_networks=tuple(self.net_requests.most_common(TOP)),
            join_sources=len(self.src_joins),
            join_networks=len(self.net_joins),
            join_new_networks=len(join_new),
            join_new_network_share=join_new_attempts / j[0] if j[0] else 0.0,
            join_entropy=entropy(self.src_joins.values()),
            joins=JoinFigures(*j),
            tickets=TicketFigures(*tk),
            listeners=len(self.ticket_requests),
            ticket_rate_max=tk_rates[-1] if tk_rates else 0.0,
            ticket_rate_p99=quantile(tk_rates, 0.99),
            ticket_rate_median=quantile(tk_rates, 0.5),
            source_rate_max=(src_counts[-1] if src_counts else 0) / d,
            source_rate_p99=float(quantile(src_counts, 0.99)) / d,
            missing=self.missing,
            misses=self.misses,
            origin_rps=sum(self.origin_requests) / len(self.origin_requests)
            if self.origin_requests
            else 0.0,
            origin_cpu=self.origin_cpu,
            open_connections=open_conns,
            completed_requests=self.conn_completed,
            completion_rate=self.conn_completed / d / open_conns if open_conns else 0.0,
            connection_top_sources=tuple(self.conn_sources.most_common(TOP)),
            connection_heavy_sources=len(held),
            connection_heavy_open=sum(held),
            latency_mean=self.latency_sum / self.latency_count if self.latency_count else 0.0,
            suspects=suspects,
            crowd=crowd,
            capped=self.capped,
            spaces=spaces,
        )

    def _suspects(self, d: float, t: WatchThresholds, ticket_rates: dict[str, float]) -> Suspects:
        reasons: dict[str, set[str]] = {}
        flood = {
            s: c
            for s, c in self.src_joins.items()
            if c >= 3 and c >= t.flood_source_join_rate * d and s != OVERFLOW
        }
        invalid = {
            s
            for s, c in self.src_invalid.items()
            if c >= t.invalid_source_share * (c + self.src_valid.get(s, 0))
        }
        busting = {
            s: c
            for s, c in self.src_busting.items()
            if c >= 2 and c >= t.busting_source_share * self.src_requests[s]
        }
        hammer = {subject: r for subject, r in ticket_rates.items() if r >= t.hammer_ticket_rate}
        hammer_sources = {self.ticket_source[subject] for subject in hammer}
        for name, group in (
            ("join_flood", flood.keys()),
            ("forged_tickets", invalid),
            ("cache_busting", busting.keys()),
            ("playlist_hammering", hammer_sources),
        ):
            for source in group:
                reasons.setdefault(source, set()).add(name)
        self.suspect_sources = reasons
        requests = Counter({s: self.src_requests[s] for s in reasons})
        net_requests: Counter[str] = Counter()
        net_sources: Counter[str] = Counter()
        for source, count in requests.items():
            net = self.network(source)
            net_requests[net] += count
            net_sources[net] += 1
        invalid_nets = {self.network(s) for s in invalid}
        hammer_total = sum(self.ticket_requests[subject] for subject in hammer)
        return Suspects(
            sources=len(reasons),
            requests=sum(requests.values()),
            flood_sources=len(flood),
            flood_networks=len({self.network(s) for s in flood}),
            flood_joins=sum(flood.values()),
            top_flood_sources=tuple(Counter(flood).most_common(TOP)),
            invalid_sources=len(invalid),
            invalid_networks=len(invalid_nets),
            invalid_new_networks=sum(
                1 for net in invalid_nets if not self.baseline.knows_network(net)
            ),
            invalid_requests=sum(self.src_requests[s] for s in invalid),
            busting_sources=len(busting),
            busting_requests=sum(self.src_requests[s] for s in busting),
            top_busting_sources=tuple(Counter(busting).most_common(TOP)),
            hammer_tickets=len(hammer),
            hammer_requests=hammer_total,
            hammer_mean_rate=sum(hammer.values()) / len(hammer) if hammer else 0.0,
            hammer_sources=len(hammer_sources),
            top_hammer_tickets=tuple(sorted(hammer.items(), key=lambda item: -item[1])[:TOP]),
            offenders=tuple(
                (source, count, ",".join(sorted(reasons[source])))
                for source, count in requests.most_common(20)
            ),
            offender_networks=tuple(
                (net, count, net_sources[net]) for net, count in net_requests.most_common(TOP)
            ),
        )

    def _crowd(self, t: WatchThresholds) -> CrowdFigures:
        suspects = self.suspect_sources
        joins = {s: c for s, c in self.src_joins.items() if s not in suspects}
        total = sum(joins.values())
        if not total:
            return CrowdFigures()
        nets: Counter[str] = Counter()
        for source, count in joins.items():
            nets[self.network(source) if source != OVERFLOW else OVERFLOW] += count
        new = sum(c for net, c in nets.items() if not self.baseline.knows_network(net))
        top5 = sum(sorted(joins.values(), reverse=True)[:5])
        valid = invalid = known = returning = 0
        for source in joins:
            valid += self.src_valid.get(source, 0)
            invalid += self.src_invalid.get(source, 0)
            known += self.src_returning_known.get(source, 0)
            returning += self.src_returning.get(source, 0)
        return CrowdFigures(
            joins=total,
            sources=len(joins),
            networks=len(nets),
            entropy=entropy(joins.values()),
            top_share=top5 / total,
            invalid_share=invalid / (valid + invalid) if valid + invalid else 0.0,
            returning_known=known,
            returning_share=returning / known if known else 0.0,
            new_network_share=new / total,
        )
