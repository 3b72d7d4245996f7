"""Prometheus view of the watch, and the thin asyncio adapter that ticks it every second.

Metrics (on :data:`townhall.api.metrics.REGISTRY`):

- ``townhall_watch_verdict{label}``: 1 for the label of the latest verdict, 0 for the others;
- ``townhall_watch_attack{kind}``: 1 while the latest verdict names that attack kind;
- ``townhall_watch_confidence``: confidence of the latest verdict;
- ``townhall_watch_windows_total{label}`` and ``townhall_watch_attack_windows_total{kind}``:
  closed windows by final verdict;
- ``townhall_watch_<feature>`` gauges: key features of the latest judged window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from prometheus_client import Counter, Gauge

from ..api.metrics import REGISTRY
from .features import Features
from .verdict import ATTACK_KINDS, Verdict
from .watch import Watch, headline

logger = logging.getLogger(__name__)

LABELS = ("normal", "flash_crowd", "attack", "both")

VERDICT = Gauge(
    "townhall_watch_verdict",
    "1 for the label of the latest watch verdict",
    ["label"],
    registry=REGISTRY,
)
ATTACK = Gauge(
    "townhall_watch_attack",
    "1 while the latest watch verdict names this attack kind",
    ["kind"],
    registry=REGISTRY,
)
CONFIDENCE = Gauge(
    "townhall_watch_confidence", "Confidence of the latest watch verdict (0..1)", registry=REGISTRY
)
WINDOWS = Counter(
    "townhall_watch_windows_total", "Closed watch windows by verdict", ["label"], registry=REGISTRY
)
ATTACK_WINDOWS = Counter(
    "townhall_watch_attack_windows_total",
    "Closed watch windows naming each attack kind",
    ["kind"],
    registry=REGISTRY,
)

_FEATURES: dict[str, tuple[str, Callable[[Features], float]]] = {
    "requests_per_second": (
        "Requests observed per second",
        lambda f: f.requests / f.duration,
    ),
    "join_attempts_per_second": (
        "Join attempts per second",
        lambda f: f.joins.attempts / f.duration,
    ),
    "joins_admitted_per_second": (
        "Joins admitted per second",
        lambda f: f.joins.admitted / f.duration,
    ),
    "joins_queued_per_second": ("Joins queued per second", lambda f: f.joins.queued / f.duration),
    "joins_refused_per_second": (
        "Joins refused per second",
        lambda f: f.joins.refused / f.duration,
    ),
    "distinct_sources": ("Distinct client addresses", lambda f: f.sources),
    "distinct_networks": ("Distinct /24 or /48 networks", lambda f: f.networks),
    "new_network_share": (
        "Share of requests from networks never seen before",
        lambda f: f.new_network_share,
    ),
    "source_entropy": ("Normalised entropy of requests over sources", lambda f: f.entropy),
    "invalid_ticket_share": (
        "Share of ticket-bearing requests with an invalid ticket",
        lambda f: (
            f.tickets.invalid / (f.tickets.valid + f.tickets.invalid)
            if f.tickets.valid + f.tickets.invalid
            else 0.0
        ),
    ),
    "returning_share": (
        "Share of join attempts by returning listeners",
        lambda f: f.joins.returning / f.joins.returning_known if f.joins.returning_known else 0.0,
    ),
    "ticket_rate_max": ("Highest requests per second of one ticket", lambda f: f.ticket_rate_max),
    "ticket_rate_p99": ("p99 of requests per second per ticket", lambda f: f.ticket_rate_p99),
    "source_rate_max": ("Highest requests per second of one source", lambda f: f.source_rate_max),
    "missing_per_second": (
        "Requests for missing objects or cache misses per second",
        lambda f: (f.missing + f.misses) / f.duration,
    ),
    "origin_requests_per_second": ("Origin requests per second", lambda f: f.origin_rps),
    "open_connections": ("Open connections, all servers", lambda f: f.open_connections),
    "suspect_sources": ("Sources attributed to attack patterns", lambda f: f.suspects.sources),
}
FEATURE_GAUGES = {
    name: Gauge(f"townhall_watch_{name}", help_text, registry=REGISTRY)
    for name, (help_text, _) in _FEATURES.items()
}


def publish(watch: Watch, verdicts: Sequence[Verdict]) -> None:
    """Count the final verdicts of one tick and set the gauges from the latest judgement."""
    for verdict in verdicts:
        if verdict.final:
            WINDOWS.labels(verdict.label).inc()
            for kind in verdict.attacks:
                ATTACK_WINDOWS.labels(kind).inc()
    latest = watch.latest()
    if latest is None:
        return
    verdict, features = latest
    for label in LABELS:
        VERDICT.labels(label).set(1.0 if verdict.label == label else 0.0)
    for kind in ATTACK_KINDS:
        ATTACK.labels(kind).set(1.0 if kind in verdict.attacks else 0.0)
    CONFIDENCE.set(verdict.confidence)
    for name, (_, read) in _FEATURES.items():
        FEATURE_GAUGES[name].set(float(read(features)) if features.duration > 0 else 0.0)


async def run_watch(
    watch: Watch, *, clock: Callable[[], float] = time.time, interval: float = 1.0
) -> None:
    """Tick ``watch`` every ``interval`` seconds, publish metrics and log label changes.
    Runs until cancelled (start it in the app's lifespan)."""
    last = "normal"
    while True:
        await asyncio.sleep(interval)
        try:
            verdicts = watch.tick(clock())
            publish(watch, verdicts)
        except Exception:  # the watch must never take the node down
            logger.exception("watch tick failed")
            continue
        for verdict in verdicts:
            if verdict.final and verdict.label != last:
                level = logging.WARNING if verdict.attacks else logging.INFO
                logger.log(level, "watch: %s", headline(verdict))
                last = verdict.label
