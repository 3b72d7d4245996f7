"""Start on time: a scheduled space whose audience arrives as a 10× surge at the start.

A node (admission rate R/s) behind a Varnish edge (``townhall edge run``); a space scheduled
a few seconds ahead. From 1 s before the start, join attempts arrive at 10 × R per second
from distinct 127.x sources (raw asyncio client, :mod:`townhall.loadgen.client`); queued
listeners poll politely with their queue ticket; admitted ones fetch the live playlist and a
part through the edge. During the surge the host starts the space and stage members (host
token, priority lane) join. Figures:

- host ``POST /start`` returned → first 200 of a part through the edge (target ≤ 1 s);
- stage members admitted (target 100 %);
- listeners answered with a 5xx (target 0): each gets audio or a queue position;
- admitted listeners per second while the queue drains vs the configured rate;
- join throughput per core: see the ``join_throughput`` benchmark (reused, not repeated).

Run: ``python -m bench --only start_on_time [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from townhall.loadgen.client import Connection, HttpError, Origin, connect, fetch
from townhall.loadgen.hls import hint_position
from townhall.loadgen.scenarios import addresses

from .common import LOOPBACK, TOWNHALL, BenchResult, Figure, _wait_healthy, free_port
from .common import Node as BenchNode

NAME = "start_on_time"


def _start_node(tmp: Path, rate: float) -> BenchNode:
    data = tmp / "data"
    data.mkdir()
    port = free_port()
    log = tmp / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*TOWNHALL, "serve", "--host", LOOPBACK, "--port", str(port), "--data", str(data)]
            + ["--rtc-address", LOOPBACK, "--log-level", "warning", "--admit-rate", str(rate)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = BenchNode(f"http://{LOOPBACK}:{port}", data, proc, log)
    _wait_healthy(node)
    return node


def _start_edge(node: BenchNode) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*TOWNHALL, "edge", "run", "--origin", node.url, "--listen", f"{LOOPBACK}:{port}"]
        + ["--keys", str(node.data / "keys.json"), "--name", "bench", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("edge exited before it was ready")
        if " ready on " in line:
            return proc, f"http://{LOOPBACK}:{port}"
    raise RuntimeError("edge did not get ready")


class Surge:
    """The audience: joins at a fixed arrival rate, polite polling, one part each."""

    def __init__(self, api: str, edge: str, space: str, end: float) -> None:
        self.api = Origin.from_url(api)
        self.edge = Origin.from_url(edge)
        self.space = space
        self.end = end
        self.status: dict[str, int] = {}
        self.admitted_at: list[float] = []
        self.five_xx = 0
        self.audio = 0
        self.queued = 0
        self.unanswered = 0

    def _count(self, what: str) -> None:
        self.status[what] = self.status.get(what, 0) + 1

    async def listener(self, source: str) -> None:
        body = b""
        conn: Connection | None = None
        got_place = False
        try:
            while time.time() < self.end:
                try:
                    if conn is None or not conn.usable:
                        conn = await connect(self.api, source, timeout=5)
                    r = await fetch(
                        conn, "POST", f"/api/spaces/{self.space}/join", 15, body, "application/json"
                    )
                except HttpError as exc:
                    self._count(exc.kind)
                    conn = None
                    await asyncio.sleep(1.0)
                    continue
                self._count(str(r.status))
                if r.status >= 500 and r.status != 503:
                    self.five_xx += 1
                if r.status == 503:  # shed: polite retry (counted apart)
                    self.five_xx += 1
                if r.status == 200:
                    self.admitted_at.append(time.time())
                    await self.play(source, orjson.loads(r.body)["playlist_url"])
                    return
                if r.status == 202:
                    got_place = True
                    answer = orjson.loads(r.body)
                    body = orjson.dumps({"queue_ticket": answer["queue_ticket"]})
                    await asyncio.sleep(float(answer["poll_after"]))
                    continue
                await asyncio.sleep(1.0)
            if got_place:
                self.queued += 1
            else:
                self.unanswered += 1
        finally:
            if conn is not None:
                conn.close()

    async def play(self, source: str, url: str) -> None:
        path = urlsplit(url).path.rsplit("/", 1)[0]
        conn: Connection | None = None
        try:
            conn = await connect(self.edge, source, timeout=5)
            for _ in range(20):
                r = await fetch(conn, "GET", f"{path}/live.m3u8", 10)
                hint = hint_position(r.body) if r.status == 200 else None
                if hint is not None:
                    r = await fetch(conn, "GET", f"{path}/part{hint[0]}.{hint[1]}.m4s", 10)
                    if r.status == 200:
                        self.audio += 1
                        return
                if r.status >= 500 and r.status != 503:
                    self.five_xx += 1
                await asyncio.sleep(0.5)
        except HttpError as exc:
            self._count(f"media:{exc.kind}")
        finally:
            if conn is not None:
                conn.close()


async def _first_part(edge: str, playlist_url: str) -> float:
    """Seconds until a part is answered 200 through the edge (blocking reload, then part)."""
    base = edge + urlsplit(playlist_url).path.rsplit("/", 1)[0]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as c:
        while True:
            r = await c.get(f"{base}/live.m3u8", params={"_HLS_msn": "0", "_HLS_part": "0"})
            if r.status_code == 200:
                r2 = await c.get(f"{base}/part0.0.m4s")
                if r2.status_code == 200:
                    return time.perf_counter()
            await asyncio.sleep(0.02)


async def _scenario(node: BenchNode, edge: str, rate: float, surge_s: float) -> dict[str, Any]:
    key = node.add_user("host")
    hdr = {"Authorization": f"Bearer {key}"}
    lead = 6.0
    start_at = datetime.now(UTC) + timedelta(seconds=lead)
    async with httpx.AsyncClient(base_url=node.url, timeout=15, trust_env=False) as c:
        r = await c.post(
            "/api/spaces",
            json={"title": "on time", "scheduled_start": start_at.isoformat()},
            headers=hdr,
        )
        r.raise_for_status()
        space = r.json()["id"]
        host = {"Authorization": f"Bearer {r.json()['host_token']}"}
        t_start = start_at.timestamp()
        arrivals = int(10 * rate * surge_s)
        end = t_start + surge_s + arrivals / rate + 15
        surge = Surge(node.url, edge, space, end)
        sources = addresses("127.20.0.0/14", arrivals)
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []

        async def arrive() -> None:
            t0 = t_start - 1.0
            for i, src in enumerate(sources):
                delay = t0 + i / (10 * rate) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(surge.listener(src)))

        arriving = loop.create_task(arrive())
        await asyncio.sleep(max(0.0, t_start - time.time()))
        t_post = time.perf_counter()
        r = await c.post(f"/api/spaces/{space}/start", headers=host)
        t_returned = time.perf_counter()
        r.raise_for_status()
        stage_ok = 0
        stage_total = 3
        ticket_url = ""
        for _ in range(stage_total):  # the host and co-hosts join in the priority lane
            j = await c.post(f"/api/spaces/{space}/join", headers=host)
            stage_ok += j.status_code == 200
            if j.status_code == 200:
                ticket_url = j.json()["playlist_url"]
        first = await asyncio.wait_for(_first_part(edge, ticket_url), 15)
        await arriving
        await asyncio.wait(tasks, timeout=max(1.0, end - time.time()) + 5)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    admitted = sorted(surge.admitted_at)
    # drain: after the first second of the start (the frontier's burst), admitted per second
    drain = [t for t in admitted if t >= t_start + 1.0]
    drain_rate = (len(drain) - 1) / (drain[-1] - drain[0]) if len(drain) > 2 else None
    return {
        "admit_rate": rate,
        "arrivals": arrivals,
        "arrival_rate": 10 * rate,
        "start_to_first_part_s": first - t_returned,
        "start_post_s": t_returned - t_post,
        "stage_admitted": stage_ok,
        "stage_total": stage_total,
        "admitted": len(admitted),
        "with_audio": surge.audio,
        "still_queued_at_end": surge.queued,
        "never_answered": surge.unanswered,
        "five_xx": surge.five_xx,
        "statuses": surge.status,
        "drain_rate": drain_rate,
    }


def run(quick: bool) -> BenchResult:
    rate, surge_s = (40.0, 3.0) if quick else (100.0, 4.0)
    result = BenchResult(
        NAME,
        f"scheduled space, admit rate {rate:.0f}/s, joins at {10 * rate:.0f}/s for "
        f"{surge_s:.0f} s from distinct 127.x sources; host start → first part at a Varnish edge",
    )
    if shutil.which("varnishd") is None:
        result.error = "varnishd is not installed (apt-get install varnish varnish-vmod-digest)"
        return result
    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-") as tmp:
        node = _start_node(Path(tmp), rate)
        edge_proc: subprocess.Popen[str] | None = None
        try:
            edge_proc, edge = _start_edge(node)
            raw = asyncio.run(_scenario(node, edge, rate, surge_s))
        finally:
            if edge_proc is not None:
                edge_proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    edge_proc.wait(15)
                if edge_proc.stdout is not None:
                    edge_proc.stdout.close()
            node.stop()
    result.raw.update(raw)
    stage_share = 100.0 * raw["stage_admitted"] / raw["stage_total"]
    result.figures += [
        Figure("start → first part at the edge", raw["start_to_first_part_s"], "s", 1.0),
        Figure("stage members not admitted", 100.0 - stage_share, "%", 0.0),
        Figure("listeners answered 5xx", float(raw["five_xx"]), "answers", 0.0),
        Figure("queue drain rate", raw["drain_rate"], "admitted/s"),
        Figure("configured admit rate", rate, "admitted/s"),
    ]
    result.notes.append(
        "stage members are the host's priority-lane joins during the surge; publishing over "
        "WHIP during the surge is not part of this run. Join throughput per core: see "
        "join_throughput."
    )
    if sys.platform != "linux":
        result.notes.append("127.x source binding needs Linux")
    return result
