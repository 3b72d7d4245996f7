"""Helpers for the delivery benchmarks: a node with the join gate opened up, ``townhall edge run``
(Varnish) in front of it, a private redis-server, per-process CPU from /proc, and load-test
runs through :mod:`townhall.loadgen` saved as JSON for :mod:`bench.simulate_validation`.

Every process is started as a child and stopped (SIGTERM, then SIGKILL) when its context
manager exits, whatever the reason.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from townhall.loadgen import report as load_report
from townhall.loadgen.runner import LoadSettings
from townhall.loadgen.runner import run as load_run

from .common import LOOPBACK, TOWNHALL, Node, _wait_healthy, cpu_seconds, free_port

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"
LOADTESTS = RESULTS / "loadtests"
OPEN_GATE = (
    "--join-rate-source",
    "0",
    "--join-rate-network",
    "0",
    "--join-rate-global",
    "0",
    "--admit-rate",
    "5000",
)
"""Node flags for delivery benchmarks: the join gate must not be what is measured (thousands
of simulated listeners share a few /24 networks and join at up to ~200/s)."""

RUNS: list[tuple[str, Path]] = []
"""Load-test reports written in this process: (label, path), for simulate_validation."""


def stop_process(proc: subprocess.Popen[Any], name: str, grace: float = 10.0) -> None:
    """SIGTERM, wait ``grace`` s, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0f s: killing it", name, grace)
            proc.kill()
            proc.wait(5)


@dataclass
class RedisNode(Node):
    """A node started with ``--redis``: accounts live in Redis, not in the SQLite file."""

    redis_url: str = ""

    def add_user(self, name: str) -> str:
        import asyncio

        from townhall.auth.apikeys import hash_api_key, new_api_key
        from townhall.store import User
        from townhall.store.redis import RedisStore

        key = new_api_key()

        async def add() -> None:
            store = RedisStore(self.redis_url)
            try:
                await store.add_user(User(name, hash_api_key(key), name, True, False, time.time()))
            finally:
                await store.close()

        asyncio.run(add())
        return key


@contextmanager
def node_process(name: str, *extra: str, redis_url: str | None = None) -> Iterator[Node]:
    """``townhall serve`` on a free loopback port with extra flags (default: the gate opened
    up, :data:`OPEN_GATE`), with ``--redis`` if given; always stopped."""
    flags = [*(extra or OPEN_GATE), *(["--redis", redis_url] if redis_url else [])]
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        port = free_port()
        log = Path(tmp) / "node.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*TOWNHALL, "serve", "--host", LOOPBACK, "--port", str(port), "--data", str(data)]
                + ["--rtc-address", LOOPBACK, "--log-level", "warning", *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://{LOOPBACK}:{port}"
        node = (
            RedisNode(url, data, proc, log, redis_url) if redis_url else Node(url, data, proc, log)
        )
        try:
            _wait_healthy(node)
            yield node
        finally:
            node.stop()
            tail = log.read_text(errors="replace")[-2000:]
            if "Traceback" in tail:
                logger.warning("node log tail (%s):\n%s", name, tail)


@contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A private redis-server (no persistence) on a free loopback port: (URL, pid)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--save", "", "--appendonly", "no", "--port", str(port)]
            + ["--bind", LOOPBACK, "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    import redis

                    redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5).ping()
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://{LOOPBACK}:{port}/0", proc.pid
        finally:
            stop_process(proc, "redis-server")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def name_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass
class Edge:
    """A running ``townhall edge run``."""

    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def pids(self) -> dict[str, int]:
        """``edge`` (the townhall process), ``varnishd`` (manager), ``varnish_worker`` (the
        child that serves: ``cache-main``), ``varnishncsa`` when running; for an nginx edge
        ``nginx`` (master) and ``nginx_worker``, ``nginx_worker2``, … (the event loops)."""
        found = {"edge": self.process.pid}
        workers = 0
        for pid in descendants(self.process.pid):
            cmd, comm = command_of(pid), name_of(pid)
            if comm == "nginx" or cmd.startswith("nginx"):
                if _ppid(pid) == self.process.pid:
                    found["nginx"] = pid
                elif "cache" not in cmd:  # not the cache manager/loader processes
                    workers += 1
                    found["nginx_worker" if workers == 1 else f"nginx_worker{workers}"] = pid
                continue
            if cmd.startswith("varnishncsa") or comm == "varnishncsa":
                found["varnishncsa"] = pid
            elif comm == "varnishd" or cmd.startswith("varnishd"):
                parent = _ppid(pid)
                found["varnish_worker" if parent != self.process.pid else "varnishd"] = pid
            elif comm.startswith("cache-"):
                found["varnish_worker"] = pid
        return found


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError):
        return -1


def _pump(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)
    out.put("")
    stream.close()


@contextmanager
def running_edge(
    origin: str,
    keys: Path,
    redis_url: str | None = None,
    name: str = "bench-edge",
    kind: str = "varnish",
    workers: int = 1,
) -> Iterator[Edge]:
    """``townhall edge run`` in front of ``origin`` on a free loopback port; always stopped.
    ``kind`` nginx runs ``workers`` worker processes."""
    port = free_port()
    cmd = [*TOWNHALL, "edge", "run", "--origin", origin, "--listen", f"{LOOPBACK}:{port}"]
    cmd += ["--keys", str(keys), "--name", name, "--log-level", "warning", "--kind", kind]
    if kind == "nginx":
        cmd += ["--workers", str(workers)]
    if redis_url:
        cmd += ["--redis", redis_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    edge = Edge(f"http://{LOOPBACK}:{port}", proc)
    try:
        deadline = time.monotonic() + 40
        while not any(" ready on " in line for line in edge.output):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line == "" or time.monotonic() > deadline:
                raise RuntimeError(f"edge did not start: {''.join(edge.output)[-2000:]}")
            if line:
                edge.output.append(line)
        yield edge
    finally:
        stop_process(proc, "townhall edge run", 15)


class CpuSampler:
    """Samples utime + stime of named processes once a second in a thread, so that the
    cores each used over any window of wall time can be read afterwards."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._take()

    def _take(self) -> None:
        now = time.time()
        row: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                row[name] = cpu_seconds(pid)
            except (OSError, ValueError, IndexError):
                continue
        self.samples.append((now, row))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def cores(self, name: str, start: float, end: float) -> float | None:
        """Average cores ``name`` used between wall times ``start`` and ``end`` (nearest
        samples inside the window)."""
        inside = [(t, row[name]) for t, row in self.samples if start <= t <= end and name in row]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)

    def all_cores(self, start: float, end: float) -> dict[str, float | None]:
        return {name: self.cores(name, start, end) for name in self.pids}


def loadtest(label: str, settings: LoadSettings) -> dict[str, Any]:
    """Run :mod:`townhall.loadgen` to the end; the report is written to
    ``bench/results/loadtests/{label}.json`` and remembered in :data:`RUNS`."""
    raw = load_run(settings)
    doc = load_report.build(raw)
    LOADTESTS.mkdir(parents=True, exist_ok=True)
    path = LOADTESTS / f"{label}.json"
    load_report.write_json(doc, path)
    RUNS.append((label, path))
    return doc


def steady_wall(doc: dict[str, Any]) -> tuple[float, float]:
    """The load test's steady window as wall-clock times."""
    t0 = float(doc["config"]["started_at"])
    st = doc["summary"]["steady"]
    return t0 + float(st["from"]), t0 + float(st["to"])


def playlist_facts(playlist_url: str) -> dict[str, float]:
    """PART-TARGET and the newest segment's EXTINF of a live playlist (what the node is really
    producing, whatever the packaging defaults say)."""
    text = httpx.get(playlist_url, timeout=10, trust_env=False).text
    part = re.search(r"PART-TARGET=([0-9.]+)", text)
    extinf = re.findall(r"#EXTINF:([0-9.]+)", text)
    return {
        "part": float(part.group(1)) if part else float("nan"),
        "segment": float(extinf[-1]) if extinf else float("nan"),
    }


def wait_segments(playlist_url: str, count: int = 2, timeout: float = 20.0) -> None:
    """Until the live playlist lists ``count`` complete segments."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = httpx.get(playlist_url, timeout=10, trust_env=False).text
            if text.count("#EXTINF") >= count:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the live playlist did not list {count} segments in {timeout:.0f} s")


@contextmanager
def speakers(whip_url: str, tokens: list[str], seconds: float) -> Iterator[int]:
    """``bench.speakers_proc`` publishing tones for ``tokens``; yields its pid once connected."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"whip_url": whip_url, "tokens": tokens}, f)
        spec = f.name
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.speakers_proc", spec, str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert child.stdout is not None
        line = _readline(child.stdout, 60.0)
        if not line.startswith("READY"):
            raise RuntimeError(f"speakers did not connect: {line!r}")
        yield child.pid
    finally:
        stop_process(child, "speakers", 20)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        os.unlink(spec)


def _readline(stream: IO[bytes], timeout: float) -> str:
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0].decode(errors="replace").strip() if got else ""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def listeners_run(
    label: str,
    space: str,
    node: str,
    edge: str,
    listeners: int,
    ramp: float,
    duration: float,
    pids: dict[str, int],
    mode: str = "ll-hls",
) -> dict[str, Any]:
    """:func:`measured_run` of ``listeners`` joining ``space`` through ``node`` and listening
    through ``edge``."""
    settings = LoadSettings(
        space=space,
        server=node,
        edge=edge,
        listeners=listeners,
        ramp=ramp,
        duration=duration,
        mode=mode,
    )
    return measured_run(label, settings, pids)


def measured_run(label: str, settings: LoadSettings, pids: dict[str, int]) -> dict[str, Any]:
    """A load test with the CPU of ``pids`` sampled; a compact record of its steady state
    (the full report is in ``bench/results/loadtests/{label}.json``)."""
    with CpuSampler(pids) as sampler:
        doc = loadtest(label, settings)
    start, end = steady_wall(doc)
    s = doc["summary"]
    st = s["steady"]
    return {
        "label": label,
        "report": str(LOADTESTS / f"{label}.json"),
        "mode": settings.mode,
        "listeners": settings.listeners,
        "ramp_s": settings.ramp,
        "duration_s": settings.duration,
        "steady_window_s": [st["from"], st["to"]],
        "steady_listeners": st["listeners"],
        "listeners_joined": s["listeners_joined"],
        "listeners_with_media": s["listeners_with_media"],
        "distinct_listeners": s["distinct_listeners"],
        "failed_joins": s["failed_joins"],
        "first_hop_rps": st["edge_rps"],
        "first_hop_rps_by_kind": st["edge_rps_by_kind"],
        "origin_rps": st["origin_rps"],
        "stalls": s["stalls"],
        "listeners_stalled": s.get("listeners_stalled"),
        "warmup_stalls": s["warmup_stalls"],
        "stalls_at_end": s["stalls_at_end"],
        "errors_total": s["errors_total"],
        "errors": s["errors"],
        "resyncs": s["resyncs"],
        "latency_part_or_segment": s["latency"].get(
            "segment" if settings.mode == "hls" else "part"
        ),
        "cores": sampler.all_cores(start, end),
        "generator_cpu_cores": s["generator_cpu_cores"],
        "machine_busy": s["machine_busy"],
        "loadavg_after": loadavg(),
    }


SATURATED_SHARE = 0.01
"""A run in which more than 1 % of the listeners stalled was not served at the steady cadence
(the cores were saturated): its rates and CPU describe the saturation, not the design."""


def stalled_share(run: dict[str, Any]) -> float:
    """Share of the listeners that got media and stalled after the warm-up."""
    got = max(1, int(run["listeners_with_media"]))
    stalled = run.get("listeners_stalled")
    return (int(run["stalls"]) if stalled is None else int(stalled)) / got


def saturated(run: dict[str, Any]) -> bool:
    return stalled_share(run) > SATURATED_SHARE


def held_without_stall(run: dict[str, Any]) -> int:
    """Listeners that got media and played to the end without a stall after the warm-up (one
    in progress at the end counts); from stall events (a lower bound) if the generator does
    not report stalled listeners."""
    stalled = run.get("listeners_stalled")
    bad = int(run["stalls"]) if stalled is None else int(stalled)
    return max(0, int(run["listeners_with_media"]) - bad)
