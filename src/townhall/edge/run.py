"""Run an edge: varnishd as a child with a private working directory, optionally one
varnishncsa whose lines feed the listener counts and the watch's observations (to Redis with
``--redis``, else to the origin with ``--ops-key``), and the mitigation poller (``--ops-key``:
blocks and revocations, VCL reloaded when they change); stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..store.redis_client import redis_client
from ..watch.ingest import EdgeObserver
from .acl import MitigationPoller, Mitigations, varnishadm
from .logship import LogShipper, OriginSink, RedisSink, Sink, varnishncsa_command
from .settings import EdgeSettings, EdgeSettingsError
from .varnish import render_vcl

logger = logging.getLogger(__name__)

READY_TIMEOUT = 30.0
NOT_COUNTED = (
    "neither --redis nor --ops-key: listeners served by this edge are not counted and the "
    "watch does not see its traffic (the origin sees only the edge's own fetches); give the "
    "cluster's Redis, or an operator key to report to the origin"
)
VSL_MASK = ",".join(
    f"-{tag}"
    for tag in (
        # Varnish's defaults
        "Debug",
        "ObjProtocol",
        "ObjStatus",
        "ObjReason",
        "ObjHeader",
        "VCL_trace",
        "ExpKill",
        "WorkThread",
        "Hash",
        "VfpAcct",
        "H2RxHdr",
        "H2RxBody",
        "H2TxHdr",
        "H2TxBody",
        "VdpAcct",
        # header sets and unsets (the VCL's scratch headers are most of them), accounting and
        # storage records: nothing the edge's log reader prints; every request writes fewer
        # shared-memory log records and varnishncsa reads fewer
        "ReqHeader",
        "ReqUnset",
        "RespHeader",
        "RespUnset",
        "BereqHeader",
        "BereqUnset",
        "BerespHeader",
        "BerespUnset",
        "VCL_return",
        "VCL_acl",
        "TTL",
        "Storage",
        "ReqAcct",
        "BereqAcct",
    )
)
"""``vsl_mask`` of the edge's varnishd (``varnishlog -n DIR`` shows the rest)."""
JAIL_USER = "varnish"


@dataclass(frozen=True)
class EdgeRunConfig:
    """How to run one edge process."""

    settings: EdgeSettings
    """What the VCL is generated from."""
    listen_host: str
    """Address varnishd listens on."""
    listen_port: int
    """Port varnishd listens on."""
    redis_url: str | None = None
    """Ship listener ids to this Redis; None ships them to the origin (with ``ops_key``) or,
    without either, runs no log shipper."""
    storage: str = "malloc,256m"
    """varnishd ``-s`` storage: parts are small and only wanted near the live edge."""
    varnishd: str = "varnishd"
    varnishncsa: str = "varnishncsa"
    ops_key: str | None = None
    """Operator API key: poll the origin's block list and revocations into the VCL."""
    poll_interval: float = 2.0
    """Seconds between mitigation polls."""
    kind: str = "varnish"
    """``varnish`` (LL-HLS and standard HLS, JWT tickets) or ``nginx`` (standard HLS through
    listener links: :mod:`townhall.edge.nginx`)."""
    nginx: str = "nginx"
    workers: str = "auto"
    """nginx ``worker_processes``."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (it holds keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _hand_to_jail_user(path: Path) -> None:
    """As root, varnishd reads the VCL as its jail user (``varnish``): give the file to it,
    still mode 0600, so the embedded keys stay private."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(JAIL_USER)
    except KeyError:
        return
    os.chown(path, user.pw_uid, user.pw_gid)


def varnishd_command(cfg: EdgeRunConfig, workdir: Path, vcl: Path) -> list[str]:
    jail = ["-j", "none"] if os.geteuid() != 0 else []
    return [
        cfg.varnishd,
        "-F",
        "-n",
        str(workdir / "varnish"),
        "-a",
        f"{cfg.listen_host}:{cfg.listen_port}",
        "-T",
        "127.0.0.1:0",
        "-f",
        str(vcl),
        "-s",
        cfg.storage,
        "-p",
        "vcc_allow_inline_c=off",
        "-p",
        "feature=+http2",
        "-p",
        f"vsl_mask={VSL_MASK}",
        *jail,
    ]


async def wait_listening(host: str, port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    """Wait until ``proc`` (the cache server ``what``) accepts connections on host:port."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise EdgeSettingsError(f"{what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise EdgeSettingsError(f"{what} did not listen on {host}:{port} in {READY_TIMEOUT:.0f} s")


async def stop_process(proc: asyncio.subprocess.Process | None, name: str) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        logger.warning("%s did not stop in 10 s; killing it", name)
        proc.kill()
        await proc.wait()


async def run_edge(cfg: EdgeRunConfig, stop: asyncio.Event) -> int:
    """Run until ``stop`` is set or the cache server exits; returns its exit status (0 when
    stopped on request)."""
    if cfg.kind == "nginx":
        from .nginx_run import run_nginx_edge

        return await run_nginx_edge(cfg, stop)
    if shutil.which(cfg.varnishd) is None:
        raise EdgeSettingsError(f"{cfg.varnishd} not found: install the Debian package varnish")
    workdir = Path(tempfile.mkdtemp(prefix=f"townhall-edge-{cfg.settings.name}-"))
    os.chmod(workdir, 0o755 if os.geteuid() == 0 else 0o700)
    vcl = workdir / "edge.vcl"
    write_private(vcl, render_vcl(cfg.settings))
    _hand_to_jail_user(vcl)
    varnishd: asyncio.subprocess.Process | None = None
    ncsa: asyncio.subprocess.Process | None = None
    shipper_task: asyncio.Task[None] | None = None
    poller: asyncio.Task[None] | None = None
    try:
        varnishd = await asyncio.create_subprocess_exec(
            *varnishd_command(cfg, workdir, vcl), stdin=asyncio.subprocess.DEVNULL
        )
        await wait_listening(cfg.listen_host, cfg.listen_port, varnishd, "varnishd")
        logger.info(
            "edge %s serving on http://%s:%d (origin %s:%d)",
            cfg.settings.name,
            cfg.listen_host,
            cfg.listen_port,
            cfg.settings.origin_host,
            cfg.settings.origin_port,
        )
        if not reports(cfg):
            logger.warning(NOT_COUNTED)
        else:
            ncsa, shipper_task = await _start_shipper(cfg, workdir)
        if cfg.ops_key:
            poller = asyncio.create_task(_poll_mitigations(cfg, workdir))
        return await serve_until_stopped(cfg, varnishd, stop, "varnishd")
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(BaseException):
                await poller
        await stop_process(ncsa, "varnishncsa")
        if shipper_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(shipper_task, 5)
        await stop_process(varnishd, "varnishd")
        shutil.rmtree(workdir, ignore_errors=True)


async def serve_until_stopped(
    cfg: EdgeRunConfig, server: asyncio.subprocess.Process, stop: asyncio.Event, what: str
) -> int:
    """Say the edge is ready, then wait until ``stop`` is set (0) or the cache server
    ``what`` exits (its status, at least 1)."""
    print(f"edge {cfg.settings.name} ready on {edge_url(cfg)}", flush=True)
    exited = asyncio.create_task(server.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if exited.done():
        logger.error("%s exited with status %s", what, server.returncode)
        return server.returncode or 1
    return 0


def edge_url(cfg: EdgeRunConfig) -> str:
    host = f"[{cfg.listen_host}]" if ":" in cfg.listen_host else cfg.listen_host
    return f"http://{host}:{cfg.listen_port}"


async def _start_shipper(
    cfg: EdgeRunConfig, workdir: Path
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    """One varnishncsa and one reader for the listener counts and the watch's observations."""
    ncsa = await asyncio.create_subprocess_exec(
        *varnishncsa_command(str(workdir / "varnish"), cfg.varnishncsa),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert ncsa.stdout is not None
    shipper, task = ship_stream(cfg, ncsa.stdout)
    await wait_attached(cfg, shipper, task)
    return ncsa, task


def reports(cfg: EdgeRunConfig) -> bool:
    """Whether this edge runs a log reader: it has Redis, or an operator key for the origin."""
    return cfg.redis_url is not None or bool(cfg.ops_key)


def origin_api(cfg: EdgeRunConfig) -> str:
    host = cfg.settings.origin_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.settings.origin_port}"


def ship_stream(
    cfg: EdgeRunConfig, stream: asyncio.StreamReader
) -> tuple[LogShipper, asyncio.Task[None]]:
    """The edge's one log reader over ``stream`` (observation lines), shipping to Redis
    (``--redis``) or else to the origin (``--ops-key``)."""
    sink: Sink
    if cfg.redis_url is not None:
        sink = RedisSink(redis_client(cfg.redis_url))
    else:
        assert cfg.ops_key, "an edge without Redis reports to the origin with --ops-key"
        sink = OriginSink(origin_api(cfg), cfg.ops_key)
    shipper = LogShipper(sink, EdgeObserver(cfg.settings.name, cfg.listen_port))

    async def ship() -> None:
        try:
            await shipper.run(stream)
        except Exception:
            logger.exception("the log shipper stopped")
        finally:
            logger.info("log shipper read %d lines, counted %d", shipper.lines, shipper.counted)
            await sink.close()

    return shipper, asyncio.create_task(ship())


async def _poll_mitigations(cfg: EdgeRunConfig, workdir: Path) -> None:
    """Poll the origin's mitigations; load and use a regenerated VCL when they change."""
    assert cfg.ops_key is not None
    generation = 0
    admin = str(workdir / "varnish")

    async def reload(m: Mitigations) -> None:
        nonlocal generation
        generation += 1
        path = workdir / f"edge-{generation}.vcl"
        write_private(path, render_vcl(cfg.settings, m.blocked, m.revoked))
        _hand_to_jail_user(path)
        name = f"th{generation}"
        await varnishadm(admin, "vcl.load", name, str(path))
        await varnishadm(admin, "vcl.use", name)
        if generation > 1:  # the previous one is cold soon; best effort
            with contextlib.suppress(RuntimeError):
                await varnishadm(admin, "vcl.discard", f"th{generation - 1}")
        with contextlib.suppress(OSError):
            (workdir / f"edge-{generation - 1}.vcl").unlink()

    await MitigationPoller(origin_api(cfg), cfg.ops_key, reload, interval=cfg.poll_interval).run()


async def wait_attached(cfg: EdgeRunConfig, shipper: LogShipper, task: asyncio.Task[None]) -> None:
    """Send probe requests until the log reader has seen one: requests served from then on
    are all counted."""
    host = "127.0.0.1" if cfg.listen_host in ("0.0.0.0", "") else cfg.listen_host
    host = "::1" if host == "::" else host
    deadline = time.monotonic() + READY_TIMEOUT
    while shipper.lines == 0:
        if task.done() or time.monotonic() > deadline:
            raise EdgeSettingsError("the log reader did not start reading the edge's log")
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(host, cfg.listen_port)
            writer.write(b"GET /_edge/probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            await reader.read()
            writer.close()
        await asyncio.sleep(0.1)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and ``--listen HOST:0``)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
