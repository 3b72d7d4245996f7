"""CPU per request of the cache software an edge can run, on this machine, with the load
shape of a standard-HLS audience: many keep-alive connections (one 127.x source each), each
sending one GET a second for the same cached 2 s segment.

* nginx 1.22 (Debian ``nginx-light``), one worker, serving the segment as a file;
* Varnish 7.1 with a minimal VCL (cache everything), the segment cached from that nginx;
* Varnish with townhall's generated VCL (``townhall edge run``: ticket verified with
  vmod-digest on every request, ticket-free cache key, log records), the segment cached from
  a live townhall node;
* nginx with townhall's generated configuration (``townhall edge run --kind nginx --workers
  1``: listener link checked with ``secure_link`` on every request, link-free cache key,
  buffered access log), the same segment through a listener link.

CPU is utime + stime of the serving process (nginx's worker, Varnish's ``cache-main``) over
the whole run, connection set-up included, divided by the requests answered. The clients
(:mod:`bench.pace`) run in a child process on the same 2 cores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from .common import LOOPBACK, BenchResult, Figure, cpu_seconds, free_port, open_stage
from .edge import children, name_of, node_process, running_edge, stop_process, wait_segments

logger = logging.getLogger(__name__)

NAME = "edge_request_cost"
PERIOD_S = 1.0

NGINX_CONF = """worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    open_file_cache max=100;
    server {{
        listen {host}:{port};
        root {tmp}/www;
        location / {{ default_type video/iso.segment; }}
    }}
}}
"""

SIMPLE_VCL = """vcl 4.1;
backend origin {{ .host = "{host}"; .port = "{port}"; }}
sub vcl_backend_response {{ set beresp.ttl = 1h; }}
"""


def run(quick: bool) -> BenchResult:
    connections, seconds = (1000, 10.0) if quick else (2000, 20.0)
    result = BenchResult(
        NAME,
        f"CPU per request of nginx, Varnish (minimal VCL) and townhall's Varnish and nginx "
        f"edges: "
        f"{connections} keep-alive connections from distinct 127.x sources, one GET of the "
        f"same cached segment per connection per {PERIOD_S:.0f} s, for {seconds:.0f} s",
    )
    runs: dict[str, dict[str, Any]] = {}
    with node_process(NAME) as node:
        stage = open_stage(node, 1)
        wait_segments(stage.playlist_url, 3)
        segment_url = _complete_segment(stage.playlist_url)
        body = httpx.get(segment_url, timeout=10, trust_env=False).content
        with tempfile.TemporaryDirectory(prefix="bench-edge-cost-") as tmp:
            os.chmod(tmp, 0o755)
            www = Path(tmp) / "www"
            www.mkdir()
            (www / "seg.m4s").write_bytes(body)
            os.chmod(www / "seg.m4s", 0o644)
            with running_nginx(Path(tmp)) as (nginx_url, nginx_worker):
                runs["nginx"] = _measure(f"{nginx_url}/seg.m4s", nginx_worker, connections, seconds)
                with running_varnish(Path(tmp), nginx_url) as (varnish_url, varnish_worker):
                    runs["varnish_minimal_vcl"] = _measure(
                        f"{varnish_url}/seg.m4s", varnish_worker, connections, seconds
                    )
        with running_edge(node.url, node.data / "keys.json") as edge:
            worker = edge.pids()["varnish_worker"]
            url = _on(segment_url, edge.url)
            runs["townhall_edge_vcl"] = _measure(url, worker, connections, seconds)
        joined = httpx.post(
            f"{node.url}/api/spaces/{stage.space_id}/join", timeout=10, trust_env=False
        ).json()
        link_prefix = str(joined["std_playlist_url"]).rsplit("/", 1)[0]
        same_segment = f"{link_prefix}/{segment_url.rsplit('/', 1)[1]}"
        with running_edge(
            node.url, node.data / "keys.json", name="bench-nginx", kind="nginx", workers=1
        ) as edge:
            worker = edge.pids()["nginx_worker"]
            url = _on(same_segment, edge.url)
            runs["townhall_edge_nginx"] = _measure(url, worker, connections, seconds)
    for label, rec in runs.items():
        result.figures.append(Figure(f"{label}: CPU per request", rec["us_per_request"], "µs"))
    for label, rec in runs.items():
        result.figures.append(
            Figure(
                f"{label}: standard-HLS listeners per core (~1 request/s each)",
                rec["requests_per_core_s"],
                "listeners/core",
            )
        )
    result.raw.update({"segment_bytes": len(body), "period_s": PERIOD_S, "runs": runs})
    result.notes += [
        "same bytes, same clients, same machine: the difference is the server's cost per "
        "request on an idle keep-alive connection (Varnish hands each one from its waiter to a "
        "worker thread; nginx's event loop answers it in place)",
        "a standard-HLS listener makes ~1 request/s (a playlist and a segment per 2.048 s "
        "segment), ~0.5 on the standard-HLS variant (4.096 s segments); an LL-HLS listener "
        "~5.9 (a blocking reload and a part per 0.341 s part), "
        "and its blocking reloads also pass through Varnish's waiting list",
    ]
    return result


def _complete_segment(playlist_url: str) -> str:
    text = httpx.get(playlist_url, timeout=10, trust_env=False).text
    names = [line for line in text.splitlines() if line.startswith("seg")]
    if not names:
        raise RuntimeError("the live playlist lists no complete segment yet")
    return playlist_url.rsplit("/", 1)[0] + "/" + names[-1]


def _on(url: str, base: str) -> str:
    parts, b = urlsplit(url), urlsplit(base)
    return urlunsplit((b.scheme, b.netloc, parts.path, parts.query, ""))


def _measure(url: str, pid: int, connections: int, seconds: float) -> dict[str, Any]:
    check = httpx.get(url, timeout=10, trust_env=False)
    if check.status_code != 200:
        raise RuntimeError(f"{url} answered {check.status_code} before the run")
    before = cpu_seconds(pid)
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.pace", url, str(connections), str(PERIOD_S), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    cpu = cpu_seconds(pid) - before
    wall = time.time() - started
    if done.returncode != 0:
        raise RuntimeError(f"bench.pace failed: {done.stderr[-1000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    answered = int(out["ok"]) + int(out["not_ok"])
    out["server_cpu_s"] = cpu
    out["wall_s"] = wall
    out["us_per_request"] = cpu / answered * 1e6 if answered else None
    out["requests_per_core_s"] = answered / cpu if cpu > 0 else None
    return out


def _worker_of(parent: int, names: tuple[str, ...], timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(parent):
            if name_of(pid) in names:
                return pid
        time.sleep(0.1)
    raise RuntimeError(f"no {names} child of {parent}")


@contextmanager
def running_nginx(tmp: Path) -> Iterator[tuple[str, int]]:
    """nginx (one worker) serving ``tmp``/www on a free loopback port: (URL, worker pid)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, host=LOOPBACK, port=port))
    proc = subprocess.Popen(
        [binary, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        worker = _worker_of(proc.pid, ("nginx",))
        _wait_http(f"http://{LOOPBACK}:{port}/seg.m4s")
        yield f"http://{LOOPBACK}:{port}", worker
    finally:
        stop_process(proc, "nginx")


@contextmanager
def running_varnish(tmp: Path, backend: str) -> Iterator[tuple[str, int]]:
    """varnishd with :data:`SIMPLE_VCL` in front of ``backend``: (URL, cache-main pid)."""
    b = urlsplit(backend)
    port = free_port()
    vcl = tmp / "simple.vcl"
    vcl.write_text(SIMPLE_VCL.format(host=b.hostname, port=b.port))
    os.chmod(vcl, 0o644)
    workdir = tmp / "varnish"
    jail = ["-j", "none"] if os.geteuid() != 0 else []
    proc = subprocess.Popen(
        ["varnishd", "-F", "-n", str(workdir), "-a", f"{LOOPBACK}:{port}", "-T", "127.0.0.1:0"]
        + ["-f", str(vcl), "-s", "malloc,64m", *jail],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://{LOOPBACK}:{port}"
        _wait_http(f"{url}/seg.m4s")
        yield url, _worker_of(proc.pid, ("cache-main", "varnishd"))
    finally:
        stop_process(proc, "varnishd")


def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 in {timeout:.0f} s")
