"""The parent side of a load test: plan, start worker processes, aggregate their snapshots,
scrape the origin's Prometheus counter, show progress, and hand the result to the report."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .client import Origin
from .metrics import OriginSample, parse_requests
from .worker import MODES, Plan, plan_to_json

logger = logging.getLogger(__name__)

MAX_LISTENERS = 20_000
"""Hard cap on simulated listeners (one socket each; the file limit here is 20,000)."""
MAX_DURATION = 900.0
"""Hard cap on a run's length in seconds."""
MAX_WORKERS = 8
"""Hard cap on worker processes."""
GRACE = 15.0
"""Seconds after the planned end before workers are terminated."""


@dataclass(frozen=True)
class LoadSettings:
    """Everything a run needs (validated by :func:`check_settings`)."""

    space: str
    server: str
    edge: str | None
    listeners: int
    ramp: float
    duration: float
    sources: str | None = "127.1.0.0/16"
    workers: int | None = None
    origin_metrics: str | None = None
    timeout: float = 10.0
    warmup: float = 2.0
    use_uvloop: bool = True
    mode: str = "ll-hls"


def check_settings(s: LoadSettings) -> None:
    """Refuse settings outside the hard caps, with a sentence that says why."""
    if not 1 <= s.listeners <= MAX_LISTENERS:
        raise ValueError(f"--listeners must be 1..{MAX_LISTENERS}, not {s.listeners}")
    if not 0 < s.duration <= MAX_DURATION:
        raise ValueError(f"--duration must be in (0, {MAX_DURATION:.0f}] s, not {s.duration}")
    if not 0 <= s.ramp < s.duration:
        raise ValueError("--ramp must be at least 0 and shorter than --duration")
    if s.workers is not None and not 1 <= s.workers <= MAX_WORKERS:
        raise ValueError(f"--workers must be 1..{MAX_WORKERS}")
    if s.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {s.mode!r}")
    for flag, url in (("--server", s.server), ("--edge", s.edge)):
        if url is not None:
            try:
                Origin.from_url(url)
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}") from None


def check_space(s: LoadSettings) -> None:
    """Fail before any listener starts if the server cannot be reached or has no such space
    (a run in which nobody can join measures nothing)."""
    url = f"{s.server.rstrip('/')}/api/spaces/{s.space}/state"
    try:
        r = httpx.get(url, timeout=5.0, trust_env=False)
    except httpx.HTTPError as exc:
        raise ValueError(f"cannot reach --server {s.server}: {exc}") from None
    if r.status_code == 404:
        raise ValueError(f"{s.server} has no space {s.space!r}")
    if r.status_code != 200:
        raise ValueError(f"{url} answered {r.status_code}: {r.text[:200]}")


def source_addresses(cidr: str | None, count: int) -> tuple[str, ...]:
    """``count`` distinct host addresses from ``cidr`` (reused round-robin if it is smaller)."""
    if not cidr:
        return ()
    net = ipaddress.ip_network(cidr, strict=False)
    hosts = net.num_addresses - 2 if net.num_addresses > 2 else net.num_addresses
    first = 1 if net.num_addresses > 2 else 0
    n = min(count, hosts)
    return tuple(str(net[first + i]) for i in range(n))


def check_bindable(address: str) -> None:
    """Fail early if the machine cannot bind a socket to ``address``."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        try:
            s.bind((address, 0))
        except OSError as exc:
            raise ValueError(f"cannot bind a socket to source address {address}: {exc}") from exc


def default_workers(listeners: int) -> int:
    """One process per core, at most two (the system under test needs the rest)."""
    cores = os.cpu_count() or 1
    return 1 if listeners < 1000 else max(1, min(2, cores))


def plans(s: LoadSettings, t0: float) -> list[Plan]:
    """Split listeners across workers round-robin so every worker ramps evenly."""
    workers = s.workers or default_workers(s.listeners)
    sources = source_addresses(s.sources, s.listeners)
    return [
        Plan(
            worker=w,
            space=s.space,
            server=s.server.rstrip("/"),
            edge=s.edge.rstrip("/") if s.edge else None,
            listeners=tuple(range(w, s.listeners, workers)),
            total_listeners=s.listeners,
            sources=sources,
            t0=t0,
            ramp=s.ramp,
            duration=s.duration,
            timeout=s.timeout,
            warmup=s.warmup,
            use_uvloop=s.use_uvloop,
            mode=s.mode,
        )
        for w in range(workers)
    ]


class OriginScraper:
    """Reads ``townhall_http_requests_total`` from the origin's /metrics."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(timeout=2.0)
        self.failures = 0

    def sample(self, t: float) -> OriginSample | None:
        try:
            r = self._client.get(self.url)
            r.raise_for_status()
        except httpx.HTTPError:
            self.failures += 1
            return None
        return parse_requests(r.text, t)

    def close(self) -> None:
        self._client.close()


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def busy_fraction(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    """Share of all cores busy between two :func:`machine_cpu` readings."""
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


def server_listeners(server: str, space: str) -> dict[str, Any] | None:
    """The server's own listener figures from the space's state document."""
    try:
        r = httpx.get(f"{server.rstrip('/')}/api/spaces/{space}/state", timeout=5.0)
        r.raise_for_status()
        listeners = r.json().get("listeners")
    except (httpx.HTTPError, ValueError):
        return None
    return dict(listeners) if isinstance(listeners, dict) else None


Progress = Callable[[list[dict[str, Any]], list[OriginSample], float, int], None]
"""Called about once a second with all ticks so far, origin samples, elapsed, target."""


def run(s: LoadSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the load test to the end and return the raw material for the report."""
    check_settings(s)
    sources = source_addresses(s.sources, 1)
    if sources:
        check_bindable(sources[0])
    check_space(s)
    outbox: queue.Queue[dict[str, Any]] = queue.Queue()
    t0 = time.time() + 1.0  # let the workers import before the first listener
    worker_plans = plans(s, t0)
    metrics_url = s.origin_metrics or f"{s.server.rstrip('/')}/metrics"
    scraper = OriginScraper(metrics_url)
    origin: list[OriginSample] = []
    ticks: list[dict[str, Any]] = []
    finals: list[dict[str, Any]] = []
    crashes: list[dict[str, Any]] = []
    first = scraper.sample(0.0)
    procs = [_spawn(p, outbox) for p in worker_plans]
    cpu_start = machine_cpu()
    hard_stop = t0 + s.duration + GRACE
    next_scrape = t0
    try:
        while len(finals) + len(crashes) < len(procs) and time.time() < hard_stop:
            try:
                msg = outbox.get(timeout=0.2)
            except queue.Empty:
                msg = None
            if msg is not None:
                kind = msg.get("type")
                if kind == "final":
                    finals.append(msg)
                    ticks.append(msg)
                elif kind == "crash":
                    crashes.append(msg)
                else:
                    ticks.append(msg)
            now = time.time()
            if now >= next_scrape and now < t0 + s.duration + 0.5:
                sample = scraper.sample(now - t0)
                if sample is not None:
                    origin.append(sample)
                next_scrape += 1.0
                if progress is not None:
                    progress(ticks, origin, now - t0, s.listeners)
            if all(p.poll() is not None for p in procs) and outbox.empty():
                break
        cpu_end = machine_cpu()
        end_sample = scraper.sample(time.time() - t0)
        if end_sample is not None:
            origin.append(end_sample)
        server_counts = server_listeners(s.server, s.space)
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, hard_stop - time.time()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(5)
        scraper.close()
    if progress is not None:
        progress(ticks, origin, time.time() - t0, s.listeners)
    return {
        "settings": s,
        "workers": len(procs),
        "t0": t0,
        "ticks": ticks,
        "finals": finals,
        "crashes": crashes,
        "origin": origin,
        "origin_before": first,
        "metrics_url": metrics_url,
        "metrics_failures": scraper.failures,
        "server_listeners": server_counts,
        "machine_busy": busy_fraction(cpu_start, cpu_end),
        "cores": os.cpu_count(),
    }


def _spawn(plan: Plan, outbox: queue.Queue[dict[str, Any]]) -> subprocess.Popen[str]:
    """A worker process (``python -m townhall.loadgen.worker``) fed its plan on stdin; a
    thread turns its JSON lines into messages. A separate interpreter, not multiprocessing,
    so the parent's ``__main__`` (e.g. ``python -m townhall``) is never re-imported."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "townhall.loadgen.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(plan_to_json(plan))
    proc.stdin.close()
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            try:
                outbox.put(json.loads(line))
            except ValueError:
                logger.warning("worker %d: %s", plan.worker, line.strip()[:200])
        stdout.close()
        rc = proc.wait()
        if rc != 0:
            outbox.put({"type": "crash", "worker": plan.worker, "error": f"exit code {rc}"})

    threading.Thread(target=pump, name=f"loadgen-worker-{plan.worker}", daemon=True).start()
    return proc
