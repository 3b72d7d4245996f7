"""LiveKit's published audio benchmark room, here: 10 speakers, 3,000 listeners.

(LiveKit reported that room on 16 cores at 80 %, i.e. ~12.8 cores.) townhall's side: one node
(stage + mixer + packager + LL-HLS origin), one ``townhall edge run`` (Varnish, with the
listener log shipper feeding a private redis-server, as deployed for honest counts), the 10
speakers publishing over WHIP from a separate process (9 quiet tones and one speaker sending
timing marks), and the listeners from :mod:`townhall.loadgen` through the edge. CPU of every
townhall process (node, edge process, varnishd manager and worker, varnishncsa) and of
redis-server comes from /proc over the load test's steady window: ``livekit_room_cores``. The
generator's and the speakers' CPU are reported, not counted.

Mouth-to-ear during the load: the bench's mark follower (``bench.hls_follower``: the arrival
of the part holding a mark − its send time) and ``townhall.listen.follow`` (playout latency of
its simulated player, PDT-based), both through the edge.

``python -m bench.livekit_room SPEC.json SECONDS`` is the speakers' child process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from .common import LOOPBACK, BenchResult, Figure, open_stage, summary
from .edge import (
    _readline,
    listeners_run,
    loadavg,
    node_process,
    playlist_facts,
    redis_server,
    running_edge,
    saturated,
    stalled_share,
    stop_process,
    wait_segments,
)
from .hls_follower import ReceivedPart, follow
from .listen_adapter import run_follow
from .marks import MarkDetector, match_marks

logger = logging.getLogger(__name__)

NAME = "livekit_room"
SPEAKERS = 10
TARGET_CORES = 2.0
TARGET_M2E_P50 = 1.5
LIVEKIT_CORES = 16 * 0.8
COUNTED = ("origin", "edge", "varnishd", "varnish_worker", "varnishncsa", "redis")
TONE_AMPLITUDE = 0.005
"""The 9 other speakers' tones: mixed like any voice, but quiet enough (peaks of their sum
< 0.05 FS) not to trigger or mask the mark detector (onset at 0.1 FS RMS)."""


LADDER = (500, 1000, 1500)
"""Audience sizes measured by the full run (all below this 2-core machine's saturation with
the generator and the speakers beside the system under test)."""
QUICK_LADDER = (500,)
ROOM_LISTENERS = 3000
"""LiveKit's room: the size the figure is projected to."""


def run(quick: bool) -> BenchResult:
    sizes = QUICK_LADDER if quick else LADDER
    ramp, duration = (5.0, 30.0) if quick else (10.0, 35.0)
    result = BenchResult(
        NAME,
        f"LiveKit's audio room ({SPEAKERS} speakers, {ROOM_LISTENERS} listeners): CPU of "
        "townhall's processes (node with --redis; edge: varnishd + log shipper; redis) over the "
        f"steady window of runs with {', '.join(map(str, sizes))} listeners, projected to "
        f"{ROOM_LISTENERS} by a straight-line fit; mouth-to-ear through the edge under the "
        "largest load",
    )
    runs: list[tuple[int, dict[str, Any]]] = []
    with (
        redis_server() as (redis_url, redis_pid),
        node_process(NAME, redis_url=redis_url) as node,
    ):
        stage = open_stage(node, SPEAKERS)
        tokens = [s.token for s in stage.seats]
        speaking = len(sizes) * (duration + 20.0) + 120.0
        with marked_speakers(stage.whip_url, tokens, speaking) as child:
            wait_segments(stage.playlist_url, 2)
            timing = playlist_facts(stage.playlist_url)
            with running_edge(node.url, node.data / "keys.json", redis_url) as edge:
                pids = {"origin": node.pid, **edge.pids(), "redis": redis_pid}
                pids["speakers"] = child.pid
                playlist = _on_edge(stage.playlist_url, edge.url)
                window = max(8.0, duration - ramp - 8.0)
                latency: dict[str, Any] = {}
                for listeners in sizes:
                    listener = None
                    if listeners == sizes[-1]:  # latency under the largest load
                        listener = threading.Thread(
                            target=_listen,
                            args=(playlist, time.time() + 1.0 + ramp + 3.0, window, latency),
                            daemon=True,
                        )
                        listener.start()
                    label = f"{NAME}-{listeners}{'-quick' if quick else ''}"
                    rec = listeners_run(
                        label, stage.space_id, node.url, edge.url, listeners, ramp, duration, pids
                    )
                    runs.append((listeners, rec))
                    if listener is not None:
                        listener.join(window + 30)
                    time.sleep(3.0)  # the previous listeners' connections drain
                state = _state(node.url, stage.space_id)
        sent = child.marks
    _report(result, runs, latency, sent, state, timing["part"])
    return result


def _current(state: dict[str, Any]) -> float | None:
    listeners = state.get("listeners")
    if isinstance(listeners, dict) and isinstance(listeners.get("current"), int | float):
        return float(listeners["current"])
    return None


def _on_edge(url: str, edge: str) -> str:
    parts, base = urlsplit(url), urlsplit(edge)
    return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def _state(url: str, space: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = httpx.get(
            f"{url}/api/spaces/{space}/state", timeout=5, trust_env=False
        ).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return doc


def _listen(url: str, start: float, seconds: float, out: dict[str, Any]) -> None:
    """Both followers through the edge, from ``start`` for ``seconds`` (in a thread)."""
    time.sleep(max(0.0, start - time.time()))
    detector = MarkDetector()

    def on_part(part: ReceivedPart) -> None:
        detector.feed(part.pcm, part.arrived)

    async def both() -> None:
        async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
            parts, listen = await asyncio.gather(
                follow(http, url, seconds, on_part), run_follow(url, seconds)
            )
        out["parts"] = parts
        out["listen"] = listen

    try:
        asyncio.run(asyncio.wait_for(both(), seconds + 60))
    except Exception as exc:  # reported, the CPU figures still stand
        logger.warning("followers failed: %r", exc)
        out["error"] = repr(exc)
    out["found"] = detector.found


class _Child:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.marks: list[dict[str, float]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def marked_speakers(whip_url: str, tokens: list[str], seconds: float) -> Iterator[_Child]:
    """This module as a child process: seat 0 sends timing marks, the others quiet tones."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"whip_url": whip_url, "tokens": tokens}, f)
        spec = f.name
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.livekit_room", spec, str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    child = _Child(proc)
    try:
        assert proc.stdout is not None
        line = _readline(proc.stdout, 90.0)
        if not line.startswith("READY"):
            raise RuntimeError(f"speakers did not connect: {line!r}")
        yield child
    finally:
        stop_process(proc, "speakers", 20)
        if proc.stdout is not None:
            for raw in proc.stdout.read().decode(errors="replace").splitlines():
                if raw.startswith("MARKS "):
                    child.marks = json.loads(raw[6:])
            proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()
        os.unlink(spec)


def _room_cores(rec: dict[str, Any], listeners: int, part: float) -> dict[str, float]:
    """Cores of one run: node, edge side (everything counted but the node) and total; when
    the run saturated the machine the edge side is scaled to the full LL-HLS cadence
    (2 requests per part per listener) by needed/served requests."""
    cores = rec["cores"]
    needed = listeners * 2.0 / part if part > 0 else 0.0
    served = float(rec["first_hop_rps"] or 0.0)
    scale = max(1.0, needed / served) if served > 0 else 1.0
    node = cores.get("origin") or 0.0
    edge = sum(cores.get(k) or 0.0 for k in COUNTED if k != "origin") * scale
    return {
        "listeners": float(listeners),
        "node": node,
        "edge_side": edge,
        "total": node + edge,
        "measured_total": sum(cores.get(k) or 0.0 for k in COUNTED),
        "rps_needed": needed,
        "rps_served": served,
        "edge_scale": scale,
    }


def project(points: list[dict[str, float]], listeners: int) -> dict[str, float]:
    """Node and edge-side cores at ``listeners``. The edge side grows with the audience: a
    least-squares line through the measured runs (with one run, in proportion). The node's
    work does not (``origin_independence`` measures that): the mean of the runs."""
    node = sum(p["node"] for p in points) / len(points)
    if len(points) == 1:
        p = points[0]
        edge = p["edge_side"] * listeners / p["listeners"]
        return {"node": node, "edge_side": edge, "total": node + edge}
    slope, intercept = np.polyfit(
        [p["listeners"] for p in points], [p["edge_side"] for p in points], 1
    )
    edge = float(slope * listeners + intercept)
    return {
        "node": node,
        "edge_side": edge,
        "total": node + edge,
        "edge_per_1000_listeners": float(slope) * 1000.0,
        "edge_intercept": float(intercept),
    }


def _report(
    result: BenchResult,
    runs: list[tuple[int, dict[str, Any]]],
    latency: dict[str, Any],
    sent_raw: list[dict[str, float]],
    state: dict[str, Any],
    part: float,
) -> None:
    from .marks import SentMark

    points = [_room_cores(rec, n, part) for n, rec in runs]
    room = project(points, ROOM_LISTENERS)
    listeners, rec = runs[-1]
    cores = rec["cores"]
    sent = [SentMark(int(m["index"]), float(m["wall"])) for m in sent_raw]
    pairs = match_marks(sent, latency.get("found", []))
    m2e = summary([f.wall - s.wall for s, f in pairs])
    listen = latency.get("listen") or {}
    play = (listen.get("result") or {}) if isinstance(listen, dict) else {}
    playout_p50 = play.get("playout_latency_p50") if isinstance(play, dict) else None
    for p in points:
        result.figures.append(
            Figure(
                f"measured: {p['listeners']:.0f} listeners, node + edge + redis",
                p["total"],
                "cores",
            )
        )
    result.figures += [
        Figure(
            f"livekit_room_cores: {ROOM_LISTENERS} listeners, projected from {len(points)} run(s)",
            room["total"],
            "cores",
            TARGET_CORES,
        ),
        Figure(f"projected node cores at {ROOM_LISTENERS}", room["node"], "cores"),
        Figure(f"projected edge-side cores at {ROOM_LISTENERS}", room["edge_side"], "cores"),
        Figure(f"node (stage + origin) cores, {listeners} listeners", cores.get("origin"), "cores"),
        Figure("varnish worker cores", cores.get("varnish_worker"), "cores"),
        Figure(
            "edge log shipping cores (edge process + varnishncsa + redis)",
            sum(cores.get(k) or 0.0 for k in ("edge", "varnishncsa", "redis")),
            "cores",
        ),
        Figure("mouth-to-ear p50 (marks, part arrival via edge)", m2e["p50"], "s", TARGET_M2E_P50),
        Figure("mouth-to-ear p95 (marks)", m2e["p95"], "s"),
        Figure("townhall.listen.follow playout latency p50 (PDT)", playout_p50, "s"),
        Figure("listeners held (steady)", float(rec["steady_listeners"]), "listeners"),
        Figure(
            "listeners.current in the state document (edge logs → Redis HLL)",
            _current(state),
            "listeners",
        ),
        Figure("stalls", float(sum(r["stalls"] for _, r in runs)), "events"),
        Figure("generator CPU (not counted)", rec["generator_cpu_cores"], "cores"),
        Figure("speakers' process CPU (not counted)", cores.get("speakers"), "cores"),
    ]
    result.raw.update(
        {
            "livekit_room_cores": room["total"],
            "livekit_room_projection": room,
            "room_listeners": ROOM_LISTENERS,
            "measured": points,
            "part_s": part,
            "valid": not any(saturated(r) for _, r in runs),
            "livekit_reference_cores": LIVEKIT_CORES,
            "counted_processes": list(COUNTED),
            "speakers": SPEAKERS,
            "runs": [r for _, r in runs],
            "mouth_to_ear_listeners": listeners,
            "mouth_to_ear_marks_s": m2e,
            "marks_sent": len(sent),
            "marks_found": len(latency.get("found", [])),
            "marks_matched": len(pairs),
            "follower_parts": latency.get("parts"),
            "follower_error": latency.get("error"),
            "townhall_listen_follow": listen,
            "state_listeners": state.get("listeners"),
            "generator_distinct_listeners": rec.get("distinct_listeners"),
            "state_speakers_speaking": sum(
                1 for s in state.get("speakers", []) if s.get("speaking")
            ),
            "loadavg_end": loadavg(),
        }
    )
    result.notes += [
        f"LiveKit's figure for this room: 80 % of 16 cores ≈ {LIVEKIT_CORES:.1f} cores "
        "(their hardware, their load generator); ours: this 2-core machine, shared with the "
        "load generator and the speakers' process, cannot hold the 3,000-listener room beside "
        "its own generator, so the room's figure is a straight line through runs it can hold",
        "mouth-to-ear (marks) = arrival of the last byte of the part holding a mark − its send "
        "time, through the edge; a player adds its buffer (PART-HOLD-BACK = 3 parts); "
        "townhall.listen.follow's playout latency includes that buffer but trusts PDT",
    ]
    for (n, r), p in zip(runs, points, strict=True):
        if saturated(r):
            result.notes.append(
                f"SATURATED at {n}: {100 * stalled_share(r):.0f} % of the listeners stalled "
                f"(machine busy {100 * (r['machine_busy'] or 0):.0f} %); the edge served "
                f"{p['rps_served']:.0f} of {p['rps_needed']:.0f} req/s and its cost was scaled "
                f"by {p['edge_scale']:.2f}"
            )


# -- the speakers' child process -----------------------------------------------------------


async def _speak(spec_path: str, seconds: float) -> int:
    from townhall.stage import RtcSettings, ToneTrack, WhipClient

    from .marks import MarkTrack

    with open(spec_path) as f:
        spec = json.load(f)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    settings = RtcSettings(announced_address=LOOPBACK)
    clients = [WhipClient(spec["whip_url"], t, settings) for t in spec["tokens"]]
    marks = MarkTrack(period=1.0, lead=1.0)
    try:
        for i, client in enumerate(clients):
            track = marks if i == 0 else ToneTrack(150.0 + 23.0 * i, amplitude=TONE_AMPLITUDE)
            await client.publish(track)
        await asyncio.gather(*(c.wait_connected(30) for c in clients))
        print(f"READY {len(clients)}", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
    finally:
        marks.stop()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    sent = [{"index": m.index, "wall": m.wall} for m in marks.sent]
    print("MARKS " + json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_speak(sys.argv[1], float(sys.argv[2]))))
