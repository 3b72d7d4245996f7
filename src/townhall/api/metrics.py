"""Prometheus metrics of one node (a registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "townhall_http_requests_total",
    "HTTP requests by route and status class",
    ["route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "townhall_http_request_seconds",
    "HTTP request latency by route",
    ["route"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JOINS = Counter("townhall_joins_total", "Listener tickets issued", registry=REGISTRY)
LIVE_SPACES = Gauge("townhall_live_spaces", "Spaces live on this node", registry=REGISTRY)
STAGE_SESSIONS = Gauge(
    "townhall_stage_sessions", "WHIP sessions open on this node", registry=REGISTRY
)
PARTS = Counter("townhall_parts_total", "LL-HLS parts produced", registry=REGISTRY)
LISTENERS = Gauge(
    "townhall_listeners", "Distinct listeners in the last 30 s", ["space"], registry=REGISTRY
)
