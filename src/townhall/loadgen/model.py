"""A fluid (cohort) model of one space at internet scale: no object per listener.

Inputs are the same numbers the code uses (part and segment durations and the bit rate from
:class:`townhall.packaging.PackagingConfig`, the part container overhead from the real fMP4
muxer, the hls.js low-latency cadence the load generator follows). Outputs: origin and edge
request rates, bandwidth, and the distribution of join waits behind an admission rate.

Two delivery tiers, as the product serves them (:data:`TIERS`):

- ``ll-hls`` (Varnish edges): per listener one blocking playlist reload per part and one part
  GET per part, i.e. ``2 / part`` requests/s; segments only for players that fetch them
  (``segment_fraction``; hls.js in low-latency mode fetches parts). An edge fetches each
  distinct object once (request collapsing), so the origin sees, per edge that has at least one
  listener, ``1/part`` parts + ``1/part`` playlist positions (+ ``1/segment`` segments if anyone
  fetches them).
- ``std`` (the standard-HLS variant on nginx edges, ``std_playlist_url``): per listener one
  playlist reload and one standard segment per standard segment duration ``D``, i.e. ``2 / D``
  requests/s. An edge fetches each segment once and keeps the playlist ``playlist_ttl``
  seconds (nginx counts in whole seconds: 1–2 s for ``1s``), then refreshes it in the
  background on the next request (:func:`playlist_fetch_rate`).

With ``edges == 0`` listeners go straight to the origin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

HTTP_RESPONSE_OVERHEAD = 220
"""Bytes of status line and headers per response (uvicorn/Varnish answers measured here)."""
PLAYLIST_BYTES = 1100
"""Bytes of a live playlist near the steady state (6 segments, parts for the last 3)."""
TIERS = ("ll-hls", "std")
"""Delivery tiers the model knows: LL-HLS on Varnish edges, standard HLS on nginx edges."""


def part_overhead_bytes(frames_per_part: int) -> int:
    """Container bytes per part beyond the AAC frames, from the real fMP4 muxer."""
    from townhall.packaging.fmp4 import fragment

    return len(fragment(1, 0, [b"\0"] * frames_per_part)) - frames_per_part


def standard_playlist_bytes(group: int, segment: float) -> int:
    """Bytes of a steady-state ``std.m3u8``, rendered by the real standard playlist writer."""
    from datetime import UTC, datetime, timedelta

    from townhall.packaging.playlist import Segment
    from townhall.packaging.standard import StandardPlaylist

    playlist = StandardPlaylist(group=group, nominal_segment_duration=segment)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for msn in range(group * (playlist.window + 2)):
        pdt = start + timedelta(seconds=msn * segment)
        playlist.add(Segment(msn, segment, pdt, f"seg{msn}.m4s"))
    return len(playlist.render().encode())


@dataclass(frozen=True)
class Scenario:
    """One space's audience and delivery tier."""

    listeners: int
    """Listeners in the space (steady state)."""
    edges: int
    """Edge caches sharing the audience evenly (0: straight to the origin)."""
    join_window: float
    """Seconds over which the listeners arrive (uniformly)."""
    part: float
    """Part duration in seconds."""
    segment: float
    """Segment duration in seconds."""
    bitrate: int
    """Audio bit rate in bit/s."""
    part_overhead: int
    """Container bytes per part (moof + mdat headers)."""
    admit_rate: float | None = None
    """Admissions per second through the waiting room (None: no admission limit)."""
    segment_fraction: float = 0.0
    """Share of listeners that fetch whole segments too (0 for hls.js low-latency)."""
    playlist_bytes: int = PLAYLIST_BYTES
    """Size of a playlist answer."""
    http_overhead: int = HTTP_RESPONSE_OVERHEAD
    """Bytes of headers per response."""
    cohorts: int = 2000
    """Arrival cohorts in the join-wait computation."""
    tier: str = "ll-hls"
    """Delivery tier (:data:`TIERS`): LL-HLS parts, or the standard-HLS variant."""
    std_segment: float = 0.0
    """Standard segment duration in seconds (``std`` tier; a whole number of segments)."""
    playlist_ttl: float = 1.0
    """Seconds an edge keeps a standard playlist before refreshing it (``std`` tier)."""

    @classmethod
    def with_defaults(
        cls,
        *,
        listeners: int,
        edges: int,
        join_window: float,
        part: float | None = None,
        segment: float | None = None,
        admit_rate: float | None = None,
        tier: str = "ll-hls",
    ) -> Scenario:
        """A scenario with part, segment, bit rate and overhead as a node runs them by
        default (``townhall.config.Config``), packaged by the real packaging code; for the
        ``std`` tier the standard segment, playlist size and the nginx edge's playlist TTL
        come from the code too."""
        from townhall.config import Config
        from townhall.edge.nginx import PLAYLIST_TTL_SECONDS
        from townhall.packaging import PackagingConfig

        node = Config()
        cfg = PackagingConfig(
            part_frames=node.part_frames,
            parts_per_segment=node.parts_per_segment,
            bitrate=node.bitrate,
        )
        seg = segment if segment is not None else cfg.segment_duration
        std = tier == "std"
        return cls(
            listeners=listeners,
            edges=edges,
            join_window=join_window,
            part=part if part is not None else cfg.part_target,
            segment=seg,
            bitrate=cfg.bitrate,
            part_overhead=part_overhead_bytes(cfg.part_frames),
            admit_rate=admit_rate,
            tier=tier,
            std_segment=cfg.standard_group * seg if std else 0.0,
            playlist_ttl=float(PLAYLIST_TTL_SECONDS),
            playlist_bytes=(
                standard_playlist_bytes(cfg.standard_group, seg) if std else PLAYLIST_BYTES
            ),
        )

    def __post_init__(self) -> None:
        _finite(
            join_window=self.join_window,
            part=self.part,
            segment=self.segment,
            bitrate=self.bitrate,
            admit_rate=self.admit_rate,
            std_segment=self.std_segment,
            playlist_ttl=self.playlist_ttl,
        )
        if self.listeners < 0 or self.edges < 0:
            raise ValueError("listeners and edges must be >= 0")
        if self.part <= 0 or self.segment < self.part:
            raise ValueError("part must be > 0 and segment >= part")
        if self.join_window < 0:
            raise ValueError("join window must be >= 0")
        if self.admit_rate is not None and self.admit_rate <= 0:
            raise ValueError("admit rate must be > 0")
        if not 0.0 <= self.segment_fraction <= 1.0:
            raise ValueError("segment_fraction must be within [0, 1]")
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}")
        if self.tier == "std" and self.std_segment < self.segment:
            raise ValueError("std_segment must be >= segment (a whole number of segments)")
        if self.playlist_ttl < 0:
            raise ValueError("playlist_ttl must be >= 0")


def _finite(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name.replace('_', ' ')} must be a finite number, not {value}")


@dataclass(frozen=True)
class JoinWaits:
    """How long listeners wait to be admitted (fluid FIFO queue)."""

    p50: float
    """Median wait in seconds."""
    p90: float
    """90th percentile."""
    p99: float
    """99th percentile."""
    max: float
    """Longest wait."""
    mean: float
    """Mean wait."""
    last_admitted_at: float
    """Seconds after the first arrival when the last listener is admitted."""
    peak_queue: float
    """Most listeners waiting at once."""
    no_wait_admit_rate: float = 0.0
    """Admission rate (listeners/s) at which nobody waits: the arrival rate, listeners over
    the join window (what ``townhall serve --admit-rate`` needs for this audience)."""


@dataclass(frozen=True)
class Prediction:
    """Model outputs (rates per second, bandwidth in bit/s)."""

    scenario: Scenario
    """The inputs."""
    listener_rps: float
    """Requests per second of one listener."""
    edge_rps_total: float
    """Requests per second arriving at the first hop (all edges, or the origin if none)."""
    edge_rps_per_edge: float
    """Requests per second at one edge (0 without edges)."""
    listeners_per_edge: float
    """Listeners per edge."""
    active_edges: float
    """Expected edges with at least one listener."""
    origin_objects_per_second: float
    """Distinct objects per second an edge fetches (parts, playlist positions, segments)."""
    origin_rps: float
    """Media requests per second at the origin (steady state)."""
    origin_join_rps: float
    """Join POSTs per second at the API during the join window (not cacheable)."""
    part_bytes: float
    """Bytes of one media object a listener fetches (audio + container): a part (``ll-hls``)
    or a standard segment (``std``)."""
    edge_egress_bps: float
    """Bits per second from all edges to listeners (bodies and headers)."""
    edge_egress_bps_per_edge: float
    """Bits per second out of one edge."""
    origin_egress_bps: float
    """Bits per second out of the origin."""
    join_waits: JoinWaits
    """Admission waits (all zero without an admission rate)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def active_edges(listeners: float, edges: int) -> float:
    """Expected number of edges with at least one listener when listeners pick edges evenly
    at random: ``E (1 - (1 - 1/E)^L)``."""
    if edges <= 0 or listeners <= 0:
        return 0.0
    if edges == 1:
        return 1.0
    return edges * -math.expm1(listeners * math.log1p(-1.0 / edges))


def join_waits(listeners: int, window: float, admit_rate: float | None, cohorts: int) -> JoinWaits:
    """FIFO fluid queue: arrivals uniform over ``window``, served at ``admit_rate``.

    Cohorts are served in order; within a cohort members are admitted evenly, so a cohort's
    representative wait is that of its middle member."""
    no_wait = listeners / window if window > 0 else float(listeners)
    if admit_rate is None or listeners == 0:
        return JoinWaits(0.0, 0.0, 0.0, 0.0, 0.0, window, 0.0, no_wait)
    k = max(1, min(cohorts, listeners))
    mass = listeners / k
    dt = window / k
    free = 0.0
    waits: list[float] = []
    peak = 0.0
    for i in range(k):
        arrive = (i + 0.5) * dt
        start = max(arrive - dt / 2, free)
        service = mass / admit_rate
        finish = start + service
        # waiting at the cohort's last arrival: everything arrived so far minus admitted so far
        peak = max(peak, (i + 1) * mass - admit_rate * min(finish, arrive + dt / 2))
        # member j of the cohort arrives at arrive - dt/2 + j*dt/mass, leaves start + j/rate
        waits.append(max(0.0, start + service / 2 - arrive))
        free = finish
    order = sorted(waits)

    def pct(q: float) -> float:
        return order[min(k - 1, max(0, math.ceil(k * q / 100) - 1))]

    last_member = max(0.0, free - window)  # last arrival is at ``window``
    return JoinWaits(
        p50=pct(50),
        p90=pct(90),
        p99=pct(99),
        max=max(order[-1], last_member),
        mean=sum(order) / k,
        last_admitted_at=max(free, window),
        peak_queue=max(0.0, peak),
        no_wait_admit_rate=no_wait,
    )


def playlist_fetch_rate(ttl: float, requests_per_second: float) -> float:
    """Origin fetches per second of one playlist at one nginx edge that keeps it ``ttl``
    seconds (``proxy_cache_valid``) and refreshes it in the background on the first request
    after that, requests arriving as a Poisson stream of ``requests_per_second``.

    nginx keeps expiry in whole seconds (``valid_sec = ngx_time() + ttl``, stale once
    ``valid_sec < ngx_time()``): an entry cached at ``T`` goes stale at ``floor(T) + ttl + 1``.
    A refresh happens ``W`` after a second boundary (``W`` ~ Exp(rate): the wait for the next
    request), so the next boundary is ``floor(W) + ttl + 1`` seconds later and the mean
    period is ``ttl + 1 + E[floor(W)] = ttl + 1 + 1/(e^rate - 1)``. Every request reaches the
    origin when ``ttl`` is 0 (nothing kept)."""
    if requests_per_second <= 0:
        return 0.0
    if ttl <= 0:
        return requests_per_second
    whole_seconds_waited = (
        0.0 if requests_per_second > 50 else 1.0 / math.expm1(requests_per_second)
    )
    return 1.0 / (ttl + 1.0 + whole_seconds_waited)


@dataclass(frozen=True)
class _Cadence:
    """What one tier's listeners ask of an edge and what an edge asks of the origin."""

    listener_rps: float
    listener_bytes_per_s: float
    media_bytes: float
    edge_objects_per_s: float
    """Origin fetches per second of one edge with listeners."""
    edge_origin_bytes_per_s: float


def _ll_hls(s: Scenario) -> _Cadence:
    per_part = 1.0 / s.part
    per_segment = 1.0 / s.segment
    part_bytes = s.bitrate * s.part / 8.0 + s.part_overhead
    segment_bytes = s.bitrate * s.segment / 8.0 + s.part_overhead * round(s.segment / s.part)
    per_part_bytes = (part_bytes + s.playlist_bytes + 2 * s.http_overhead) * per_part
    segment_share = (segment_bytes + s.http_overhead) * per_segment
    fetched = s.segment_fraction > 0
    return _Cadence(
        listener_rps=2.0 * per_part + s.segment_fraction * per_segment,
        listener_bytes_per_s=per_part_bytes + s.segment_fraction * segment_share,
        media_bytes=part_bytes,
        edge_objects_per_s=2.0 * per_part + (per_segment if fetched else 0.0),
        edge_origin_bytes_per_s=per_part_bytes + (segment_share if fetched else 0.0),
    )


def _standard(s: Scenario, listeners_per_busy_edge: float) -> _Cadence:
    period = s.std_segment
    segment_bytes = s.bitrate * period / 8.0 + s.part_overhead * round(period / s.part)
    playlists = playlist_fetch_rate(s.playlist_ttl, listeners_per_busy_edge / period)
    return _Cadence(
        listener_rps=2.0 / period,
        listener_bytes_per_s=(segment_bytes + s.playlist_bytes + 2 * s.http_overhead) / period,
        media_bytes=segment_bytes,
        edge_objects_per_s=playlists + 1.0 / period,
        edge_origin_bytes_per_s=playlists * (s.playlist_bytes + s.http_overhead)
        + (segment_bytes + s.http_overhead) / period,
    )


def predict(s: Scenario) -> Prediction:
    """Origin and edge load, bandwidth and join waits for a scenario."""
    active = active_edges(s.listeners, s.edges) if s.edges > 0 else 0.0
    busy = s.listeners / active if active > 0 else 0.0
    c = _standard(s, busy) if s.tier == "std" else _ll_hls(s)
    edge_total = s.listeners * c.listener_rps
    edge_egress = s.listeners * c.listener_bytes_per_s * 8.0
    if s.edges > 0:
        origin = active * c.edge_objects_per_s
        origin_egress = active * c.edge_origin_bytes_per_s * 8.0
        per_edge_rps = edge_total / s.edges
        per_edge_listeners = s.listeners / s.edges
        per_edge_egress = edge_egress / s.edges
    else:
        origin = edge_total
        origin_egress = edge_egress
        per_edge_rps = per_edge_listeners = per_edge_egress = 0.0
    join_rps = s.listeners / s.join_window if s.join_window > 0 else float(s.listeners)
    if s.admit_rate is not None:
        join_rps = min(join_rps, s.admit_rate)
    return Prediction(
        scenario=s,
        listener_rps=c.listener_rps,
        edge_rps_total=edge_total,
        edge_rps_per_edge=per_edge_rps,
        listeners_per_edge=per_edge_listeners,
        active_edges=active,
        origin_objects_per_second=c.edge_objects_per_s,
        origin_rps=origin,
        origin_join_rps=join_rps,
        part_bytes=c.media_bytes,
        edge_egress_bps=edge_egress,
        edge_egress_bps_per_edge=per_edge_egress,
        origin_egress_bps=origin_egress,
        join_waits=join_waits(s.listeners, s.join_window, s.admit_rate, s.cohorts),
    )
