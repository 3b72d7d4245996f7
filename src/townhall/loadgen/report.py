"""The load test report: a JSON document (timeline + summary) and a PNG of the timeline."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import stats
from .metrics import OriginSample, rate_between
from .runner import LoadSettings
from .worker import KINDS

logger = logging.getLogger(__name__)

REPORT_VERSION = 1
STEADY_AFTER_RAMP = 3.0
"""Seconds after the ramp before the steady-state window starts."""


def timeline(ticks: list[dict[str, Any]], origin: list[OriginSample]) -> list[dict[str, Any]]:
    """One row per second: listeners, request rates (first hop and origin), latency, stalls,
    errors, generator CPU."""
    bins: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tick in ticks:
        bins[max(0, round(tick["t"]))].append(tick)
    origin_by_sec = {round(s.t): s for s in origin}
    rows: list[dict[str, Any]] = []
    prev: OriginSample | None = None
    latest: dict[int, dict[str, Any]] = {}  # carried forward: a late tick is not a dip
    for sec in sorted(bins):
        group = bins[sec]
        for t in group:
            latest[t["worker"]] = t
        by_kind: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for t in group:
            by_kind.update(t["requests"])
            errors.update(t["errors"])
        part = stats.merge(t["latency"]["part"] for t in group)
        sample = origin_by_sec.get(sec)
        origin_rps = None
        if sample is not None and prev is not None and sample.t > prev.t:
            origin_rps = (sample.media - prev.media) / (sample.t - prev.t)
        if sample is not None:
            prev = sample
        rows.append(
            {
                "t": sec,
                "active": sum(t["active"] for t in latest.values()),
                "rps": sum(by_kind.values()),
                "rps_by_kind": dict(by_kind),
                "origin_rps": origin_rps,
                "errors": sum(errors.values()),
                "stalls": sum(t["stalls"] for t in group),
                "warmup_stalls": sum(t["warmup_stalls"] for t in group),
                "part_p50": stats.percentile(part, 50),
                "part_p99": stats.percentile(part, 99),
                "bytes": sum(t["bytes"] for t in group),
                "cpu_cores": sum(t["cpu_seconds"] for t in group),
            }
        )
    return rows


def worker_rate(ticks: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """Requests/s by kind within (start, end], exact even when snapshots arrive late: each
    worker's counts are divided by the time its snapshots actually covered."""
    by_worker: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in ticks:
        by_worker[t["worker"]].append(t)
    rates: Counter[str] = Counter()
    for wticks in by_worker.values():
        wticks.sort(key=lambda t: t["t"])
        inside = [i for i, t in enumerate(wticks) if start < t["t"] <= end]
        if not inside or inside[0] == 0:
            continue
        span = wticks[inside[-1]]["t"] - wticks[inside[0] - 1]["t"]
        if span <= 0:
            continue
        counts: Counter[str] = Counter()
        for i in inside:
            counts.update(wticks[i]["requests"])
        for k, v in counts.items():
            rates[k] += v / span
    return dict(rates)


def steady_window(settings: LoadSettings) -> tuple[float, float]:
    """Seconds [from, to] of the steady state: after the ramp (plus a settling time) to the
    end. Short runs fall back to their second half."""
    start = settings.ramp + STEADY_AFTER_RAMP
    end = settings.duration - 0.5
    if end - start < 2.0:
        start = settings.duration / 2
    return start, end


def build(raw: dict[str, Any]) -> dict[str, Any]:
    """The JSON report from :func:`townhall.loadgen.runner.run`'s result."""
    s: LoadSettings = raw["settings"]
    ticks: list[dict[str, Any]] = raw["ticks"]
    finals: list[dict[str, Any]] = raw["finals"]
    origin: list[OriginSample] = raw["origin"]
    rows = timeline(ticks, origin)
    a, b = steady_window(s)
    steady_rows = [r for r in rows if a + 1 <= r["t"] <= b]
    seconds = max(1, len(steady_rows))
    by_kind = worker_rate(ticks, a, b)
    errors: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for t in ticks:
        errors.update(t["errors"])
        requests.update(t["requests"])
    latency = {k: stats.summary(stats.merge(t["latency"][k] for t in ticks)) for k in KINDS}
    lag = stats.summary(stats.merge(t["loop_lag"] for t in ticks))
    duration = max((t["t"] for t in ticks), default=0.0)
    cpu = sum(t["cpu_seconds"] for t in ticks)
    media_rps = sum(v for k, v in by_kind.items() if k != "join")
    server = raw.get("server_listeners") or {}
    summary = {
        "listeners_requested": s.listeners,
        "listeners_started": sum(f["listeners_started"] for f in finals),
        "listeners_joined": sum(f["listeners_joined"] for f in finals),
        "failed_joins": sum(f["failed_joins"] for f in finals),
        "listeners_with_media": sum(f["listeners_with_media"] for f in finals),
        "distinct_listeners": sum(f["distinct_listeners"] for f in finals),
        "server_listeners_current": server.get("current"),
        "server_listeners": server or None,
        "requests_total": sum(requests.values()),
        "requests": dict(requests),
        "errors_total": sum(errors.values()),
        "errors": dict(errors),
        "stalls": sum(f["stalls_total"] for f in finals),
        "listeners_stalled": sum(f.get("listeners_stalled", 0) for f in finals),
        "warmup_stalls": sum(f["warmup_stalls_total"] for f in finals),
        "stalls_at_end": sum(f["stalls_at_end"] for f in finals),
        "stalled_seconds": sum(t["stalled_seconds"] for t in ticks),
        "parts_received": sum(f["parts_received"] for f in finals),
        "parts_skipped": sum(f["parts_skipped"] for f in finals),
        "resyncs": sum(t["resyncs"] for t in ticks),
        "steady": {
            "from": a,
            "to": b,
            "seconds": len(steady_rows),
            "listeners": (
                sum(r["active"] for r in steady_rows) / len(steady_rows) if steady_rows else 0
            ),
            "edge_rps": media_rps,
            "edge_rps_by_kind": by_kind,
            "origin_rps": rate_between(origin, a, b),
            "mbit_per_s": sum(r["bytes"] for r in steady_rows) * 8 / seconds / 1e6,
        },
        "latency": latency,
        "loop_lag": lag,
        "generator_cpu_cores": cpu / duration if duration > 0 else None,
        "generator_cpu_cores_max": max((r["cpu_cores"] for r in rows), default=None),
        "machine_busy": raw.get("machine_busy"),
        "machine_cores": raw.get("cores"),
        "worker_crashes": raw["crashes"],
        "metrics_failures": raw["metrics_failures"],
    }
    config = asdict(s)
    config.update(
        {
            "workers": raw["workers"],
            "started_at": raw["t0"],
            "metrics_url": raw["metrics_url"],
            "http_client": "asyncio.Protocol HTTP/1.1 keep-alive (townhall.loadgen.client)",
        }
    )
    return {"version": REPORT_VERSION, "config": config, "summary": summary, "timeline": rows}


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_clean) + "\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)


def write_png(report: dict[str, Any], path: Path) -> None:
    """Four panels: listeners; request rates at the first hop vs the origin; part latency;
    stalls and errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    t = [r["t"] for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, [r["active"] for r in rows], color="tab:blue")
    ax.set_ylabel("listeners active")
    edge = report["config"]["edge"]
    ax.set_title(
        f"townhall loadtest: {report['config']['listeners']} listeners "
        f"{'via edge ' + edge if edge else 'straight to the origin'}"
    )
    ax = axes[1]
    ax.plot(t, [r["rps"] for r in rows], label="requests/s sent (edge)" if edge else "requests/s")
    ax.plot(
        t,
        [r["origin_rps"] if r["origin_rps"] is not None else math.nan for r in rows],
        label="origin media requests/s (/metrics)",
    )
    ax.set_ylabel("requests/s")
    ax.legend(loc="upper left")
    ax = axes[2]
    ax.plot(t, [_ms(r["part_p50"]) for r in rows], label="part p50")
    ax.plot(t, [_ms(r["part_p99"]) for r in rows], label="part p99")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.legend(loc="upper left")
    ax = axes[3]
    ax.bar(t, [r["stalls"] for r in rows], label="stalls", color="tab:red")
    ax.plot(t, [r["errors"] for r in rows], label="errors", color="black")
    ax.set_ylabel("per second")
    ax.set_xlabel("seconds since start")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ms(value: float | None) -> float:
    return math.nan if value is None else value * 1000
