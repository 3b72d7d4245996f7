"""Shared benchmark helpers: a node process, accounts, spaces, stage seats, statistics."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

TOWNHALL = [sys.executable, "-m", "townhall"]
LOOPBACK = "127.0.0.1"


@dataclass
class Figure:
    """One reported number, with its target (if the issue sets one)."""

    name: str
    """Short label, e.g. ``p50``."""
    value: float | None
    """Measured value (``None`` when nothing could be measured)."""
    unit: str
    """``s``, ``ms``, ``cores``, ..."""
    target: float | None = None
    """The issue's bound for this figure; the value should be at most this."""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value is None:
            return "n/a"
        return "meets" if self.value <= self.target else "MISSES"


@dataclass
class BenchResult:
    """What one benchmark hands to the report."""

    name: str
    """Benchmark name (module name)."""
    description: str
    """One line on what was measured and how."""
    figures: list[Figure] = field(default_factory=list)
    """Headline figures (with targets where the issue sets them)."""
    raw: dict[str, Any] = field(default_factory=dict)
    """Raw measurements and parameters, for the JSON report."""
    notes: list[str] = field(default_factory=list)
    """Caveats worth reading next to the figures."""
    error: str | None = None
    """Set when the benchmark failed; figures may then be partial."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, min, p50, p95, max and mean of ``values``."""
    return {
        "n": len(values),
        "min": min(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Node:
    """A running ``townhall serve`` process."""

    url: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def add_user(self, name: str) -> str:
        """Create an account with the CLI; returns its API key."""
        out = subprocess.run(
            [*TOWNHALL, "user", "add", name, "--json", "--data", str(self.data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return str(json.loads(out.stdout)["api_key"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def running_node(name: str) -> Iterator[Node]:
    """Start a node on a free loopback port in a temporary data folder; always stop it."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
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
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = Node(f"http://{LOOPBACK}:{port}", data, proc, log)
        try:
            _wait_healthy(node)
            yield node
        finally:
            node.stop()
            tail = log.read_text(errors="replace")[-2000:]
            if "Traceback" in tail:
                logger.warning("node log tail (%s):\n%s", name, tail)


def _wait_healthy(node: Node, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"node exited: {node.log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(node.url + "/healthz", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"node did not come up in {timeout:.0f} s")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Seat:
    """Someone on the stage who can publish."""

    identity: str
    """Their stage identity (``user:...`` or ``anon:...``)."""
    token: str
    """Speak token for WHIP."""


@dataclass(frozen=True)
class LiveStage:
    """A live space with speakers seated and unmuted."""

    space_id: str
    whip_url: str
    playlist_url: str
    seats: tuple[Seat, ...]


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


def open_stage(node: Node, speakers: int) -> LiveStage:
    """Create a live space as a fresh host and seat ``speakers`` people in all (host
    included): listeners request, the host accepts; the first two extra become co-hosts
    so that the stage can hold 13. Everyone is unmuted."""
    if not 1 <= speakers <= 13:
        raise ValueError("a stage holds 1..13 speakers")
    key = node.add_user("benchhost")
    with httpx.Client(base_url=node.url, timeout=10, trust_env=False) as c:
        space = _ok(c.post("/api/spaces", json={"title": "bench"}, headers=auth(key)))
        sid = space["id"]
        host = auth(space["host_token"])
        seats = [Seat(space["host"]["id"], space["host_token"])]
        for i in range(speakers - 1):
            joined = _ok(c.post(f"/api/spaces/{sid}/join"))
            ticket, who = joined["ticket"], joined["listener_id"]
            _ok(c.post(f"/api/spaces/{sid}/stage/request", headers=auth(ticket)))
            _ok(c.post(f"/api/spaces/{sid}/stage/accept", json={"target": who}, headers=host))
            if i < 2 and speakers > 11:
                _ok(
                    c.post(
                        f"/api/spaces/{sid}/stage/add-cohost", json={"target": who}, headers=host
                    )
                )
            token = _ok(c.post(f"/api/spaces/{sid}/stage/token", headers=auth(ticket)))["token"]
            seats.append(Seat(who, token))
        for seat in seats:
            r = c.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(seat.token))
            if r.status_code not in (200, 409):
                _ok(r)
        playlist = _ok(c.post(f"/api/spaces/{sid}/join"))["playlist_url"]
    return LiveStage(sid, space["urls"]["whip_url"], playlist, tuple(seats))


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, Python and the versions of what the figures depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for pkg in ("townhall", "aiortc", "av", "numpy", "fastapi", "uvicorn", "httpx", "psutil"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "versions": versions,
        "loadavg_at_start": list(os.getloadavg()),
    }
