"""Join throughput: admitted joins per second per server core, against a hello-world
request (``GET /healthz``) on the same server stack (uvicorn + the townhall app), one
server worker, loopback, ``wrk`` with a Lua script for the POST.

The node runs with the gate's limits out of the way (admission rate and request limits far
above what one core can do) so every join is admitted and issues a signed listener ticket:
the figure is the cost of the whole join path (fast path, blocks, shedding, the three GCRA
limits, the space cache, the waiting room, ticket signing, the watch observation). Server
CPU is utime + stime from ``/proc``; ``wrk`` runs on the other core.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .common import (
    LOOPBACK,
    TOWNHALL,
    BenchResult,
    Figure,
    Node,
    _wait_healthy,
    cpu_seconds,
    free_port,
)

logger = logging.getLogger(__name__)

NAME = "join_throughput"
TARGET_PER_CORE = 6000.0
TARGET_RATIO = 1.5
CONNECTIONS = 100
OPEN_GATE = (
    "--admit-rate", "1000000000", "--join-rate-source", "0",
    "--join-rate-network", "0", "--join-rate-global", "0",
)  # fmt: skip
POST_LUA = (
    'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n'
)


@contextmanager
def gate_node() -> Iterator[Node]:
    """A node with the gate opened wide (every join admitted)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        port = free_port()
        log = Path(tmp) / "node.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    *TOWNHALL,
                    "serve",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(port),
                    "--data",
                    str(data),
                    "--rtc-address",
                    LOOPBACK,
                    "--log-level",
                    "warning",
                    *OPEN_GATE,
                ],  # fmt: skip
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = Node(f"http://{LOOPBACK}:{port}", data, proc, log)
        try:
            _wait_healthy(node)
            yield node
        finally:
            node.stop()


def _wrk(url: str, seconds: float, script: Path | None) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return {
        "requests_per_s": rate,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
    }


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]
    return float(match.group(1)) * scale


def _idle_cores(node: Node, seconds: float = 3.0) -> float:
    """The node's own background CPU (the live space's programme encoder), no requests."""
    cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)


def _measure(
    node: Node, url: str, seconds: float, script: Path | None, idle: float
) -> dict[str, float]:
    _wrk(url, 2, script)  # warm up
    cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
    run = _wrk(url, seconds, script)
    raw = (cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)
    cores = max(1e-6, raw - idle)
    run["server_cores_raw"] = raw
    run["server_cores"] = cores
    run["per_core_raw"] = run["requests_per_s"] / raw if raw > 0 else float("nan")
    run["per_core"] = run["requests_per_s"] / cores if cores > 0 else float("nan")
    run["cpu_us_per_request"] = 1e6 / run["per_core"]
    return run


def run(quick: bool) -> BenchResult:
    seconds = 5.0 if quick else 15.0
    result = BenchResult(
        NAME,
        f"wrk -t1 -c{CONNECTIONS} on loopback, {seconds:.0f} s each: GET /healthz vs "
        "POST /api/spaces/{id}/join (admitted, ticket signed), one uvicorn worker",
    )
    if shutil.which("wrk") is None:
        result.error = "wrk is not installed (apt-get install wrk)"
        return result
    with gate_node() as node, tempfile.TemporaryDirectory() as tmp:
        key = node.add_user("bench")
        r = httpx.post(
            node.url + "/api/spaces",
            json={"title": "join bench"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
            trust_env=False,
        )
        r.raise_for_status()
        space = r.json()["id"]
        script = Path(tmp) / "post.lua"
        script.write_text(POST_LUA)
        join_url = f"{node.url}/api/spaces/{space}/join"
        sample = httpx.post(join_url, json={}, timeout=10, trust_env=False)
        if sample.status_code != 200:
            result.error = f"join answered {sample.status_code}: {sample.text[:200]}"
            return result
        idle = _idle_cores(node)
        hello = _measure(node, node.url + "/healthz", seconds, None, idle)
        join = _measure(node, join_url, seconds, script, idle)
    ratio = join["cpu_us_per_request"] / hello["cpu_us_per_request"]
    result.raw.update(
        {
            "idle_cores": idle,
            "hello": hello,
            "join": join,
            "sample_join_keys": sorted(sample.json()),
        }
    )
    result.notes.append(
        f"per-core figures subtract the node's idle CPU ({idle:.3f} cores: the live space's "
        f"encoder); without subtracting: {join['per_core_raw']:.0f} joins/s per core"
    )
    result.figures += [
        Figure("admitted joins per server core", join["per_core"], "joins/s"),
        Figure("join CPU per request", join["cpu_us_per_request"], "µs"),
        Figure("hello-world CPU per request", hello["cpu_us_per_request"], "µs"),
        Figure("join throughput (1 worker)", join["requests_per_s"], "joins/s"),
        Figure("hello-world throughput (1 worker)", hello["requests_per_s"], "req/s"),
        Figure("hello-world per server core", hello["per_core"], "req/s"),
        Figure("join cost / hello-world cost (CPU per request)", ratio, "×", TARGET_RATIO),
        Figure("join p99 latency", join["p99_ms"], "ms"),
    ]
    if join["per_core"] < TARGET_PER_CORE:
        result.notes.append(
            f"MISSES the ≥ {TARGET_PER_CORE:.0f} admitted joins/s per core target "
            f"({join['per_core']:.0f})"
        )
    else:
        result.notes.append(
            f"meets the ≥ {TARGET_PER_CORE:.0f} admitted joins/s per core target "
            f"({join['per_core']:.0f})"
        )
    if join["non_2xx"] or hello["non_2xx"]:
        result.notes.append(f"non-2xx answers: join {join['non_2xx']}, hello {hello['non_2xx']}")
    logger.info("join bench: %s", json.dumps(result.raw))
    return result
