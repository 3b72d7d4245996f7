"""CPU of a full stage: 13 speakers (host, 2 co-hosts, 10 speakers) publishing tones to
one node; the node ingests, mixes, sends 13 N−1 returns and encodes the programme.

The speakers run in a separate process (:mod:`bench.speakers_proc`); the node's CPU
(utime + stime of all its threads, ``/proc/PID/stat``) is sampled over the window.
An idle baseline (space live, nobody publishing) is measured first.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from .common import BenchResult, Figure, Node, cpu_seconds, open_stage, running_node, summary
from .mixer_cost import mixer_tick_cost, packager_cost, return_encode_cost

logger = logging.getLogger(__name__)

NAME = "stage_cpu"
TARGET_CORES = 0.5
SPEAKERS = 13


def run(quick: bool) -> BenchResult:
    window = 15.0 if quick else 60.0
    idle = 4.0 if quick else 10.0
    result = BenchResult(
        NAME,
        f"node CPU with {SPEAKERS} WHIP speakers (tones, separate process) over "
        f"{window:.0f} s: ingest, mix, {SPEAKERS} N−1 returns, programme encode",
    )
    with running_node(NAME) as node:
        stage = open_stage(node, SPEAKERS)
        time.sleep(1.0)
        idle_cores, _ = _sample(node.pid, idle)
        spec = {"whip_url": stage.whip_url, "tokens": [s.token for s in stage.seats]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
            spec_path = f.name
        try:
            _with_speakers(node, stage.space_id, spec_path, window, idle_cores, result)
        finally:
            os.unlink(spec_path)
    mixer = mixer_tick_cost(SPEAKERS)
    packager = packager_cost()
    encode = return_encode_cost()
    tick = mixer["tick_s"]
    assert isinstance(tick, dict)
    result.figures += [
        Figure("mixer tick (13 speakers) mean", float(tick["mean"]) * 1e6, "µs"),
        Figure("mixer share of a core (ticks + pushes)", _f(mixer["core_share"]), "cores"),
        Figure("packager share of a core (AAC + fMP4)", _f(packager["core_share"]), "cores"),
        Figure(
            f"{SPEAKERS} return Opus encodes, share of a core",
            _f(encode["core_share_per_return"]) * SPEAKERS,
            "cores",
        ),
    ]
    result.raw["mixer_in_process"] = mixer
    result.raw["packager_in_process"] = packager
    result.raw["return_encode_in_process"] = encode
    return result


def _f(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _with_speakers(
    node: Node, space_id: str, spec_path: str, window: float, idle: float, result: BenchResult
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.speakers_proc", spec_path, str(window + 60)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert child.stdout is not None
        ready = _read_line(child.stdout, 60.0)
        if not ready.startswith("READY"):
            raise RuntimeError(f"speakers did not connect: {ready!r}")
        time.sleep(3.0)  # settle: connections, jitter buffers, encoders warmed up
        on_stage = _speakers_live(node.url, space_id)
        speakers_before = cpu_seconds(child.pid)
        cores, per_second = _sample(node.pid, window)
        speakers_cores = (cpu_seconds(child.pid) - speakers_before) / window
        after = _speakers_live(node.url, space_id)
    finally:
        _stop(child)
    per_sec = summary(per_second)
    result.figures += [
        Figure("node CPU, 13 speakers", cores, "cores", TARGET_CORES),
        Figure("node CPU, live space, no speakers", idle, "cores"),
        Figure("node CPU per speaker (above idle)", (cores - idle) / SPEAKERS, "cores"),
        Figure("speakers' process CPU (not counted)", speakers_cores, "cores"),
    ]
    result.raw.update(
        {
            "window_s": window,
            "node_cores": cores,
            "node_cores_idle": idle,
            "node_cores_per_second": per_sec,
            "node_cores_timeline": per_second,
            "speakers_process_cores": speakers_cores,
            "speakers_on_stage_before": on_stage,
            "speakers_on_stage_after": after,
            "loadavg_after": list(os.getloadavg()),
        }
    )
    if after.get("speaking", 0) < SPEAKERS:
        result.notes.append(
            f"only {after.get('speaking')} of {SPEAKERS} judged speaking at the end"
        )
    result.notes.append(
        "2-core machine: the speakers' process competes with the node for the other core"
    )


def _sample(pid: int, seconds: float) -> tuple[float, list[float]]:
    """Cores used by ``pid`` over ``seconds``, and per 1 s sample."""
    start_wall, start_cpu = time.monotonic(), cpu_seconds(pid)
    per_second: list[float] = []
    last_wall, last_cpu = start_wall, start_cpu
    while (now := time.monotonic()) < start_wall + seconds:
        time.sleep(min(1.0, start_wall + seconds - now))
        wall, cpu = time.monotonic(), cpu_seconds(pid)
        per_second.append((cpu - last_cpu) / (wall - last_wall))
        last_wall, last_cpu = wall, cpu
    return (last_cpu - start_cpu) / (last_wall - start_wall), per_second


def _speakers_live(url: str, space_id: str) -> dict[str, int]:
    state = httpx.get(f"{url}/api/spaces/{space_id}/state", timeout=5, trust_env=False).json()
    speakers = state.get("speakers", [])
    return {
        "on_stage": len(speakers),
        "unmuted": sum(1 for s in speakers if not s.get("muted")),
        "speaking": sum(1 for s in speakers if s.get("speaking")),
    }


def _read_line(stream: IO[bytes], timeout: float) -> str:
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0].decode(errors="replace").strip() if line else ""


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
    if child.stdin is not None:
        child.stdin.close()
    if child.stdout is not None:
        child.stdout.close()
