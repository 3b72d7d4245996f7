"""Reading the origin's ``townhall_http_requests_total`` counter (Prometheus text format)."""

from __future__ import annotations

import re
from dataclasses import dataclass

COUNTER = "townhall_http_requests_total"
_LINE = re.compile(r"^townhall_http_requests_total\{(.*)\}\s+(\S+)$", re.MULTILINE)
_ROUTE = re.compile(r'route="([^"]*)"')


@dataclass(frozen=True)
class OriginSample:
    """The origin's request counters at one moment."""

    t: float
    """Seconds since the run's start."""
    media: float
    """Requests to LL-HLS routes (``/hls/...``) so far."""
    joins: float
    """Join requests so far."""
    total: float
    """All requests so far."""


def parse_requests(text: str, t: float) -> OriginSample:
    """Sum the counter by route family."""
    media = joins = total = 0.0
    for m in _LINE.finditer(text):
        value = float(m.group(2))
        route_m = _ROUTE.search(m.group(1))
        route = route_m.group(1) if route_m else ""
        total += value
        if route.startswith("/hls/"):
            media += value
        elif route.endswith("/join"):
            joins += value
    return OriginSample(t=t, media=media, joins=joins, total=total)


def rate_between(samples: list[OriginSample], start: float, end: float) -> float | None:
    """Media requests per second between the samples nearest ``start`` and ``end``."""
    inside = [s for s in samples if start <= s.t <= end]
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[-1]
    if b.t <= a.t:
        return None
    return (b.media - a.media) / (b.t - a.t)
