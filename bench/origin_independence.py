"""Origin independence: the origin's load with 10x more listeners behind one edge.

One node (the origin, one speaker publishing a tone from another process) and one
``townhall edge run`` (Varnish) in front of it; simulated LL-HLS listeners
(:mod:`townhall.loadgen`, hls.js low-latency cadence) through the edge, first N then 10 N.
Origin requests/s come from its Prometheus ``/metrics`` (``townhall_http_requests_total``,
``/hls/`` routes) and origin CPU from ``/proc/PID/stat`` of the node process, both over the
load test's steady window (after the ramp). ``origin_ratio_10x`` = origin requests/s at 10 N
÷ at N; the CPU ratio is reported next to it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .common import BenchResult, Figure, open_stage
from .edge import (
    CpuSampler,
    listeners_run,
    loadavg,
    node_process,
    running_edge,
    saturated,
    speakers,
    stalled_share,
    wait_segments,
)

logger = logging.getLogger(__name__)

NAME = "origin_independence"
TARGET_RATIO = 1.1


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a <= 0 else b / a


def run(quick: bool) -> BenchResult:
    small, big = (100, 1000) if quick else (300, 3000)
    plans = [
        (small, 3.0 if quick else 5.0, 20.0 if quick else 30.0),
        (big, 8.0 if quick else 20.0, 25.0 if quick else 45.0),
    ]
    result = BenchResult(
        NAME,
        f"origin requests/s (/metrics) and origin CPU (/proc) with {small} vs {big} simulated "
        "LL-HLS listeners through one Varnish edge (townhall edge run), over each run's steady "
        "window",
    )
    runs: list[dict[str, Any]] = []
    with node_process(NAME) as node:
        stage = open_stage(node, 1)
        with speakers(stage.whip_url, [stage.seats[0].token], 600.0) as speaker_pid:
            wait_segments(stage.playlist_url)
            with running_edge(node.url, node.data / "keys.json") as edge:
                pids = {"origin": node.pid, "speakers": speaker_pid, **edge.pids()}
                with CpuSampler(pids) as idle:
                    time.sleep(5.0)
                idle_cores = idle.all_cores(0, time.time() + 1)
                for listeners, ramp, duration in plans:
                    label = f"{NAME}-{listeners}{'-quick' if quick else ''}"
                    runs.append(
                        listeners_run(
                            label,
                            stage.space_id,
                            node.url,
                            edge.url,
                            listeners,
                            ramp,
                            duration,
                            pids,
                        )
                    )
    one, ten = runs
    rps_ratio = _ratio(one["origin_rps"], ten["origin_rps"])
    cpu_ratio = _ratio(one["cores"].get("origin"), ten["cores"].get("origin"))
    result.figures += [
        Figure(f"origin req/s, {small} listeners", one["origin_rps"], "req/s"),
        Figure(f"origin req/s, {big} listeners", ten["origin_rps"], "req/s"),
        Figure("origin_ratio_10x (requests)", rps_ratio, "x", TARGET_RATIO),
        Figure(f"origin CPU, {small} listeners", one["cores"].get("origin"), "cores"),
        Figure(f"origin CPU, {big} listeners", ten["cores"].get("origin"), "cores"),
        Figure("origin CPU ratio 10x", cpu_ratio, "x", TARGET_RATIO),
        Figure(f"edge first-hop req/s, {big} listeners", ten["first_hop_rps"], "req/s"),
        Figure(f"varnish worker CPU, {big}", ten["cores"].get("varnish_worker"), "cores"),
        Figure(f"stalls, {big} listeners", float(ten["stalls"]), "events"),
    ]
    invalid = [r["listeners"] for r in runs if saturated(r)]
    result.raw.update(
        {
            "valid": not invalid,
            "origin_ratio_10x": rps_ratio,
            "origin_cpu_ratio_10x": cpu_ratio,
            "idle_cores_before_listeners": idle_cores,
            "runs": runs,
            "loadavg_end": loadavg(),
        }
    )
    result.notes.append(
        "origin load = media requests/s at the origin (/hls/ routes of "
        "townhall_http_requests_total); the node also packages the programme and mixes the "
        "speaker, which is the same work at any audience size"
    )
    for r in runs:
        if saturated(r):
            result.notes.append(
                f"NOT VALID at {r['listeners']} listeners: {100 * stalled_share(r):.0f} % of them "
                "stalled (the machine could not serve the steady cadence), so the origin saw a "
                "different request pattern; the ratio says nothing about the design here"
            )
    if ten["failed_joins"] or ten["listeners_joined"] < big:
        result.notes.append(
            f"only {ten['listeners_joined']} of {big} joined ({ten['failed_joins']} failed)"
        )
    result.notes.append(
        "listeners, edge and origin share this 2-core machine with the load generator "
        f"(generator {ten['generator_cpu_cores'] or 0:.2f} cores at {big}; machine busy "
        f"{100 * (ten['machine_busy'] or 0):.0f} %)"
    )
    return result
