"""Verdicts: normal, flash crowd, attack (which kinds) or both, with confidence and evidence.

A pure function of one window's :class:`~townhall.watch.features.Features` and the learned
:class:`~townhall.watch.features.BaselineStats`. Every threshold lives in
:class:`WatchThresholds`; every evidence sentence carries the numbers that decided it.

How a flash crowd is told from an attack (the rule of thumb the table encodes):

======================  ====================================  ====================================
signal                  flash crowd                           attack
======================  ====================================  ====================================
join sources            thousands, spread (entropy ≈ 1)       few (join flood) or many but new
networks                many /24s, some seen before           concentrated, or all never seen
tickets                 valid (or none needed)                forged / expired / for other spaces
per-ticket rate         ≈ 4 req/s (a player)                  far above (playlist hammering)
URLs                    existing parts and playlists          random (404s, misses: cache busting)
connections             about one or two per active client    many open, few requests (slowloris)
returning listeners     some (5–20 %)                         none
======================  ====================================  ====================================

Requests are first *attributed*: a source that joins far too often, whose tickets are mostly
invalid, or whose URLs mostly do not exist, and a ticket that asks far too often, are
suspects (see ``features.Suspects``). Attack rules look at the suspects' totals; the crowd
rule looks only at the *remainder*, so a crowd and an attack in the same window give "both".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .features import BaselineStats, Features

Label = Literal["normal", "flash_crowd", "attack", "both"]
ATTACK_KINDS = ("join_flood", "forged_tickets", "cache_busting", "playlist_hammering", "slowloris")


@dataclass(frozen=True)
class WatchThresholds:
    """Every number the watch decides with (rates are per second of the window)."""

    # -- attribution (who is a suspect) -----------------------------------------------------
    flood_source_join_rate: float = 2.0
    """A source making more join attempts per second than this is a join-flood suspect (a
    listener joins once; a queued one re-asks every few seconds; a big NAT stays below)."""
    invalid_source_share: float = 0.5
    """A source whose ticket-bearing requests are at least this share invalid is a suspect."""
    busting_source_share: float = 0.5
    """A source whose requests are at least this share for missing objects is a suspect."""
    player_request_rate: float = 4.0
    """What one LL-HLS player asks per second (blocking playlist reload + a part)."""
    hammer_ticket_rate: float = 12.0
    """A valid ticket asking more than this per second (3× a player) is a suspect."""

    # -- attack rules ----------------------------------------------------------------------
    join_flood_min_rate: float = 5.0
    """Join attempts per second from flood suspects needed to call a join flood..."""
    join_flood_min_share: float = 0.25
    """...and the share of all join attempts they must make..."""
    flood_alone_source_rate: float = 20.0
    """...unless the busiest of them joins this often per second (no NAT does that)."""
    forged_min_rate: float = 10.0
    """Forged or foreign (bad) tickets per second that alone make an attack (they do not
    occur by accident)."""
    invalid_min_rate: float = 20.0
    """Invalid tickets (forged, bad or expired) per second needed to call an attack..."""
    invalid_min_share: float = 0.2
    """...with this share of the ticket-bearing requests or of the join attempts."""
    busting_min_rate: float = 20.0
    """Requests per second for missing objects (404/400) or cache misses of random URLs..."""
    busting_min_share: float = 0.05
    """...with this share of the cacheable requests (playlists, media, other paths)..."""
    busting_alone_rate: float = 100.0
    """...or this rate with at least ``busting_alone_share``."""
    busting_alone_share: float = 0.01
    """See ``busting_alone_rate``."""
    hammer_min_tickets: int = 3
    """Tickets above ``hammer_ticket_rate`` needed to call playlist hammering..."""
    hammer_min_rate: float = 50.0
    """...and requests per second they must make together."""
    slowloris_min_open: int = 300
    """Open connections (all servers) below which there is no slowloris verdict."""
    conns_per_active_source: float = 2.0
    """Connections one active client plausibly holds; the rest are *excess*."""
    slowloris_min_excess: int = 200
    """Excess connections (open − allowance for active clients) needed..."""
    slowloris_max_completion: float = 1.0
    """...while completed requests per open connection per second stay below this; or..."""
    conns_source_max: int = 16
    """...addresses each holding at least this many connections (a browser holds at most
    six per host) together hold ``slowloris_min_excess`` (needs servers to report their top
    connection holders)."""

    # -- the crowd rule (on the remainder) ---------------------------------------------------
    crowd_min_join_rate: float = 5.0
    """Join attempts per second (not from suspects) for a flash crowd..."""
    crowd_surge_ratio: float = 5.0
    """...and at least this multiple of the learned join rate, once one is learned."""
    crowd_min_networks: int = 20
    """Distinct /24 (or /48) networks the remainder's joins must come from..."""
    crowd_min_entropy: float = 0.75
    """...normalised Shannon entropy of their sources (1 = perfectly spread)..."""
    crowd_max_top_share: float = 0.2
    """...the five busiest sources making at most this share of them..."""
    crowd_max_invalid_share: float = 0.1
    """...and at most this share of their tickets invalid."""
    both_min_returning: float = 0.02
    """With an attack in the same window, the remainder must also show this share of
    returning listeners (checked when ``returning_min_known`` joins say either way)."""
    returning_min_known: int = 20
    """Joins with a known returning flag needed before the returning share counts."""

    # -- bookkeeping -------------------------------------------------------------------------
    baseline_min_windows: int = 6
    """Normal windows learned before ratios against the baseline apply (one minute)."""
    min_duration: float = 3.0
    """Seconds of an open window before a provisional verdict is given."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What the watch concluded about one window."""

    window_start: float
    """Unix time the window began."""
    label: Label
    """normal, flash_crowd, attack or both."""
    attacks: tuple[str, ...]
    """Attack kinds recognised (empty unless label is attack or both)."""
    confidence: float
    """0..1: how sure the rules are of ``label`` (and of each attack)."""
    evidence: tuple[str, ...]
    """Sentences with the numbers behind the verdict, strongest first."""
    duration: float = 10.0
    """Seconds of traffic judged (less than the window for a provisional verdict)."""
    final: bool = True
    """False for a provisional verdict on a window still open."""
    scores: dict[str, float] = field(default_factory=dict)
    """Confidence of each signal that fired (attack kinds and ``flash_crowd``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_start": self.window_start,
            "duration": round(self.duration, 3),
            "final": self.final,
            "label": self.label,
            "attacks": list(self.attacks),
            "confidence": round(self.confidence, 3),
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
            "evidence": list(self.evidence),
        }


# -- helpers -----------------------------------------------------------------------------------


def strength(value: float, threshold: float) -> float:
    """Confidence that a signal at ``value`` is real, given it fires at ``threshold``:
    0.6 at the threshold, rising with log(value/threshold) to 0.99 at ten times it."""
    if threshold <= 0 or value <= 0:
        return 0.99 if value > 0 else 0.0
    ratio = value / threshold
    if ratio < 1:
        return 0.0
    return min(0.99, 0.6 + 0.39 * min(1.0, math.log10(ratio)))


def n(value: float) -> str:
    """A count for people: 12,345."""
    return f"{round(value):,}"


def count(value: int, noun: str) -> str:
    """``1 network``, ``41 networks``, ``2 addresses``."""
    if value == 1:
        return f"1 {noun}"
    return f"{n(value)} {noun}{'es' if noun.endswith('s') else 's'}"


def pct(share: float) -> str:
    """A share for people: 88 %, 0.3 %, 12 %."""
    value = share * 100
    if value == 0:
        return "0 %"
    if value < 1:
        return f"{value:.1f} %"
    return f"{value:.0f} %"


def rate(value: float) -> str:
    """A rate for people: 184/s, 3.2/s."""
    return f"{value:,.0f}/s" if value >= 10 else f"{value:.1f}/s"


def _top(pairs: tuple[tuple[str, int], ...], k: int = 3) -> str:
    return ", ".join(f"{key}: {n(c)}" for key, c in pairs[:k])


# -- the rules ---------------------------------------------------------------------------------


def classify(
    features: Features, baseline: BaselineStats, thresholds: WatchThresholds | None = None
) -> Verdict:
    """The verdict for one window (see the module docstring)."""
    t = thresholds or WatchThresholds()
    f = features
    d = max(f.duration, 1e-9)
    found: list[tuple[str, float, list[str]]] = []  # kind, confidence, evidence

    # join flood: a few sources asking to join far too often
    s = f.suspects
    flood_rate = s.flood_joins / d
    flood_share = s.flood_joins / f.joins.attempts if f.joins.attempts else 0.0
    busiest_flood = s.top_flood_sources[0][1] / d if s.top_flood_sources else 0.0
    if flood_rate >= t.join_flood_min_rate and (
        flood_share >= t.join_flood_min_share or busiest_flood >= t.flood_alone_source_rate
    ):
        conf = max(
            strength(flood_rate, t.join_flood_min_rate)
            * min(1.0, 0.7 + 0.3 * flood_share / max(t.join_flood_min_share, 1e-9)),
            strength(busiest_flood, t.flood_alone_source_rate),
        )
        refused = f.joins.refused / f.joins.attempts if f.joins.attempts else 0.0
        found.append(
            (
                "join_flood",
                min(conf, 0.99),
                [
                    f"{pct(flood_share)} of {n(f.joins.attempts)} join attempts came from "
                    f"{count(s.flood_sources, 'source')} in "
                    f"{count(s.flood_networks, 'network')}, each above "
                    f"{rate(t.flood_source_join_rate)}; the busiest asked {rate(busiest_flood)} "
                    f"(attempts: {_top(s.top_flood_sources)})",
                    f"{pct(refused)} of all join attempts were refused by limits or shedding",
                ],
            )
        )

    # forged, foreign or expired tickets
    forged_rate = (f.tickets.forged + f.tickets.bad) / d
    invalid = f.tickets.invalid
    invalid_rate = invalid / d
    bearing = f.tickets.valid + invalid
    invalid_share = invalid / bearing if bearing else 0.0
    join_inv_rate = f.joins.invalid_ticket / d
    join_inv_share = f.joins.invalid_ticket / f.joins.attempts if f.joins.attempts else 0.0
    ticket_conf = 0.0
    if forged_rate >= t.forged_min_rate:
        ticket_conf = max(ticket_conf, strength(forged_rate, t.forged_min_rate))
    if invalid_rate >= t.invalid_min_rate and invalid_share >= t.invalid_min_share:
        ticket_conf = max(
            ticket_conf,
            min(strength(invalid_rate, t.invalid_min_rate), 0.6 + 0.39 * invalid_share),
        )
    if join_inv_rate >= t.invalid_min_rate and join_inv_share >= t.invalid_min_share:
        ticket_conf = max(
            ticket_conf,
            min(strength(join_inv_rate, t.invalid_min_rate), 0.6 + 0.39 * join_inv_share),
        )
    if ticket_conf > 0:
        ev = [
            f"{n(invalid)} requests ({rate(invalid_rate)}) presented invalid tickets: "
            f"{n(f.tickets.forged)} forged, {n(f.tickets.expired)} expired, "
            f"{n(f.tickets.bad)} for another space or unreadable; "
            f"{pct(1 - invalid_share)} of ticket-bearing requests had a valid one",
        ]
        if f.joins.attempts:
            valid_joins = f.joins.attempts - f.joins.invalid_ticket
            ev.insert(
                0,
                f"{pct(join_inv_share)} of {n(f.joins.attempts)} join attempts presented an "
                f"invalid ticket, {pct(valid_joins / f.joins.attempts)} did not; "
                f"{pct(f.join_new_network_share)} of the attempts came from "
                f"{count(f.join_new_networks, 'network')} never seen before",
            )
        ev.append(
            f"the invalid tickets came from {count(s.invalid_sources, 'source')} in "
            f"{count(s.invalid_networks, 'network')}, {n(s.invalid_new_networks)} of them "
            "never seen before"
        )
        found.append(("forged_tickets", ticket_conf, ev))

    # cache busting: random URLs that miss the cache and reach the origin
    cacheable = f.mix.get("playlist", 0) + f.mix.get("media", 0) + f.mix.get("other", 0)
    busting = f.missing + f.misses
    bust_rate = busting / d
    bust_share = busting / cacheable if cacheable else 0.0
    if (bust_rate >= t.busting_min_rate and bust_share >= t.busting_min_share) or (
        bust_rate >= t.busting_alone_rate and bust_share >= t.busting_alone_share
    ):
        conf = min(
            strength(bust_rate, t.busting_min_rate),
            0.6 + 0.39 * min(1.0, bust_share / 0.3),
        )
        ev = [
            f"{n(busting)} requests ({rate(bust_rate)}, {pct(bust_share)} of playlist and media "
            f"requests) asked for URLs that do not exist or missed the cache "
            f"({n(f.missing)} not found, {n(f.misses)} misses)",
            f"they came from {count(s.busting_sources, 'source')} (busiest: "
            f"{_top(s.top_busting_sources)})",
        ]
        if f.origin_rps > 0:
            usual = (
                f", usually {rate(baseline.origin_rps)}"
                if baseline.windows >= t.baseline_min_windows
                else ""
            )
            ev.append(f"origin load {rate(f.origin_rps)}{usual}, CPU {f.origin_cpu:.2f} cores")
        found.append(("cache_busting", conf, ev))

    # playlist hammering: valid tickets asking far more often than a player
    hammer_rate = s.hammer_requests / d
    if s.hammer_tickets >= t.hammer_min_tickets and hammer_rate >= t.hammer_min_rate:
        conf = min(
            strength(hammer_rate, t.hammer_min_rate),
            strength(f.ticket_rate_max, t.hammer_ticket_rate),
        )
        share = s.hammer_requests / f.requests if f.requests else 0.0
        found.append(
            (
                "playlist_hammering",
                conf,
                [
                    f"{count(s.hammer_tickets, 'valid ticket')} asked "
                    f"{rate(s.hammer_mean_rate)} each "
                    f"(max {rate(f.ticket_rate_max)}); a player asks about "
                    f"{rate(t.player_request_rate)}",
                    f"they made {n(s.hammer_requests)} requests, {pct(share)} of all, from "
                    f"{count(s.hammer_sources, 'source')}; the median ticket asked "
                    f"{rate(f.ticket_rate_median)}",
                ],
            )
        )

    # slowloris: connections held open with few requests completed
    allowance = t.conns_per_active_source * f.sources
    excess = f.open_connections - allowance
    idle = excess >= t.slowloris_min_excess and f.completion_rate <= t.slowloris_max_completion
    held = f.connection_heavy_open >= t.slowloris_min_excess
    if f.open_connections >= t.slowloris_min_open and (idle or held):
        conf = 0.0
        if idle:
            conf = min(
                strength(excess, t.slowloris_min_excess),
                0.6 + 0.39 * (1 - f.completion_rate / max(t.slowloris_max_completion, 1e-9)),
            )
        if held:
            conf = max(conf, strength(f.connection_heavy_open, t.slowloris_min_excess))
        ev = [
            f"{n(f.open_connections)} connections open while only {count(f.sources, 'source')} "
            f"made requests ({n(max(excess, 0))} more than {t.conns_per_active_source:g} per "
            "active source)",
            f"{f.completion_rate:.2f} requests completed per open connection per second; a "
            f"player completes about {rate(t.player_request_rate)}",
        ]
        if f.connection_heavy_sources:
            ev.append(
                f"{count(f.connection_heavy_sources, 'address')} each hold at least "
                f"{t.conns_source_max} connections, {n(f.connection_heavy_open)} together"
            )
        if f.connection_top_sources:
            ev.append(f"most connections: {_top(f.connection_top_sources)}")
        found.append(("slowloris", conf, ev))

    crowd_conf, crowd_ev = _crowd(f, baseline, t, attacked=bool(found))
    return _verdict(f, found, crowd_conf, crowd_ev, t)


def _crowd(
    f: Features, baseline: BaselineStats, t: WatchThresholds, *, attacked: bool
) -> tuple[float, list[str]]:
    """Confidence (0 when not) that the remainder is a flash crowd, and why."""
    c = f.crowd
    d = max(f.duration, 1e-9)
    join_rate = c.joins / d
    if join_rate < t.crowd_min_join_rate:
        return 0.0, []
    learned = baseline.windows >= t.baseline_min_windows
    usual = baseline.join_rate if learned else 0.0
    if learned and usual > 0 and join_rate < t.crowd_surge_ratio * usual:
        return 0.0, []
    if c.networks < t.crowd_min_networks or c.entropy < t.crowd_min_entropy:
        return 0.0, []
    if c.top_share > t.crowd_max_top_share or c.invalid_share > t.crowd_max_invalid_share:
        return 0.0, []
    returning_known = c.returning_known >= t.returning_min_known
    if attacked and returning_known and c.returning_share < t.both_min_returning:
        return 0.0, []
    surge = strength(join_rate, t.crowd_min_join_rate)
    spread = min(1.0, (c.entropy - t.crowd_min_entropy) / max(1e-9, 1 - t.crowd_min_entropy))
    back = min(1.0, c.returning_share / 0.1) if returning_known else 0.3
    conf = min(0.99, 0.45 + 0.25 * surge + 0.15 * spread + 0.14 * back)
    surge_text = (
        f", {join_rate / usual:,.0f}× the usual {rate(usual)}" if learned and usual > 0 else ""
    )
    ev = [
        f"{n(c.joins)} join attempts ({rate(join_rate)}{surge_text}) from {n(c.sources)} sources "
        f"in {n(c.networks)} networks (spread {c.entropy:.2f} of 1; the five busiest made "
        f"{pct(c.top_share)})",
        f"{pct(c.invalid_share)} of their tickets were invalid; "
        + (
            f"{pct(c.returning_share)} are returning listeners"
            if returning_known
            else "returning listeners unknown"
        )
        + f"; {pct(c.new_network_share)} come from networks never seen before",
    ]
    if f.joins.attempts:
        ev.append(
            f"the gate admitted {n(f.joins.admitted)}, queued {n(f.joins.queued)} and "
            f"refused {n(f.joins.refused)} join attempts; the busiest ticket asked "
            f"{rate(f.ticket_rate_max)} (p99 {rate(f.ticket_rate_p99)})"
        )
    return conf, ev


def _verdict(
    f: Features,
    found: list[tuple[str, float, list[str]]],
    crowd_conf: float,
    crowd_ev: list[str],
    t: WatchThresholds,
) -> Verdict:
    found.sort(key=lambda item: -item[1])
    scores = {kind: conf for kind, conf, _ in found}
    attacks = tuple(kind for kind, _, _ in found)
    evidence: list[str] = [line for _, _, lines in found for line in lines]
    if crowd_conf > 0:
        scores["flash_crowd"] = crowd_conf
    attack_conf = max((conf for _, conf, _ in found), default=0.0)
    label: Label
    if found and crowd_conf > 0:
        label = "both"
        confidence = min(attack_conf, crowd_conf)
        evidence += crowd_ev
    elif found:
        label = "attack"
        confidence = attack_conf
    elif crowd_conf > 0:
        label = "flash_crowd"
        confidence = crowd_conf
        evidence = crowd_ev
    else:
        label = "normal"
        confidence, evidence = _normal(f, t)
    return Verdict(
        window_start=f.window_start,
        label=label,
        attacks=attacks,
        confidence=round(confidence, 3),
        evidence=tuple(evidence),
        duration=f.duration,
        scores=scores,
    )


def _normal(f: Features, t: WatchThresholds) -> tuple[float, list[str]]:
    d = max(f.duration, 1e-9)
    if f.requests == 0 and f.open_connections == 0:
        return 0.99, ["no traffic"]
    invalid_share = (
        f.tickets.invalid / (f.tickets.valid + f.tickets.invalid)
        if f.tickets.valid + f.tickets.invalid
        else 0.0
    )
    ev = [
        f"{n(f.requests)} requests ({rate(f.requests / d)}) from {n(f.sources)} sources in "
        f"{n(f.networks)} networks; {n(f.joins.attempts)} join attempts",
        f"busiest ticket {rate(f.ticket_rate_max)} (a player asks about "
        f"{rate(t.player_request_rate)}); {pct(invalid_share)} invalid tickets; "
        f"{n(f.missing)} requests for missing objects",
    ]
    # less sure when something approaches a threshold
    near = max(
        f.ticket_rate_max / t.hammer_ticket_rate,
        (f.missing + f.misses) / d / t.busting_min_rate,
        f.tickets.invalid / d / t.invalid_min_rate,
        f.suspects.flood_joins / d / t.join_flood_min_rate,
        f.crowd.joins / d / t.crowd_min_join_rate,
    )
    confidence = 0.95 if near < 0.5 else 0.8 if near < 1 else 0.65
    if near >= 1:
        ev.append("some figures passed a threshold, but not the rest of their rule")
    return confidence, ev
