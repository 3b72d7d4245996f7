"""Run an nginx standard-HLS edge: nginx as a child with a private prefix directory, the
access-log follower feeding the edge's one log reader (``--redis``, or the origin with
``--ops-key``), and the mitigation
poller (``--ops-key``: the configuration is regenerated and nginx reloaded with SIGHUP when
the block list or the revocations change); stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import tempfile
from pathlib import Path

from .acl import MitigationPoller, Mitigations
from .follow import LogFollower
from .nginx import ACCESS_LOG, NginxOptions, render_nginx
from .run import (
    NOT_COUNTED,
    EdgeRunConfig,
    edge_url,
    origin_api,
    reports,
    serve_until_stopped,
    ship_stream,
    stop_process,
    wait_attached,
    wait_listening,
    write_private,
)
from .settings import EdgeSettingsError

logger = logging.getLogger(__name__)


def nginx_options(cfg: EdgeRunConfig) -> NginxOptions:
    """Options for this machine: the open-file limit is raised to its hard limit here (nginx
    inherits it) and ``worker_connections`` sized to fit under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard = 1 << 20
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    host = f"[{cfg.listen_host}]" if ":" in cfg.listen_host else cfg.listen_host
    return NginxOptions(
        listen=f"{host}:{cfg.listen_port}",
        workers=cfg.workers,
        user="www-data" if os.geteuid() == 0 else None,
        connections=max(512, min(soft - 64, 100_000)),
        nofile=None,
    )


def nginx_command(cfg: EdgeRunConfig, prefix: Path, conf: Path) -> list[str]:
    return [cfg.nginx, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]


async def run_nginx_edge(cfg: EdgeRunConfig, stop: asyncio.Event) -> int:
    """Run until ``stop`` is set or nginx exits; returns nginx's exit status (0 when stopped
    on request)."""
    if shutil.which(cfg.nginx) is None:
        raise EdgeSettingsError(f"{cfg.nginx} not found: install the Debian package nginx-light")
    prefix = Path(tempfile.mkdtemp(prefix=f"townhall-edge-{cfg.settings.name}-"))
    os.chmod(prefix, 0o755 if os.geteuid() == 0 else 0o700)
    conf = prefix / "nginx.conf"
    options = nginx_options(cfg)
    write_private(conf, render_nginx(cfg.settings, options))
    check = await asyncio.create_subprocess_exec(
        *nginx_command(cfg, prefix, conf)[:-2],
        "-t",
        "-q",
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await check.communicate()
    if check.returncode != 0:
        shutil.rmtree(prefix, ignore_errors=True)
        raise EdgeSettingsError(f"nginx refused the configuration: {err.decode().strip()}")
    nginx: asyncio.subprocess.Process | None = None
    reader_stop = asyncio.Event()
    follower: asyncio.Task[None] | None = None
    shipper_task: asyncio.Task[None] | None = None
    poller: asyncio.Task[None] | None = None
    try:
        nginx = await asyncio.create_subprocess_exec(
            *nginx_command(cfg, prefix, conf), stdin=asyncio.subprocess.DEVNULL
        )
        await wait_listening(cfg.listen_host, cfg.listen_port, nginx, "nginx")
        logger.info(
            "nginx edge %s serving on %s (origin %s:%d)",
            cfg.settings.name,
            edge_url(cfg),
            cfg.settings.origin_host,
            cfg.settings.origin_port,
        )
        if not reports(cfg):
            logger.warning(NOT_COUNTED)
        else:
            stream = asyncio.StreamReader(limit=1 << 20)
            proc = nginx

            def reopen() -> None:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGUSR1)

            tail = LogFollower(prefix / ACCESS_LOG, reopen)
            follower = asyncio.create_task(tail.run(stream, reader_stop))
            shipper, shipper_task = ship_stream(cfg, stream)
            await wait_attached(cfg, shipper, shipper_task)
        if cfg.ops_key:
            poller = asyncio.create_task(_poll_mitigations(cfg, conf, options, nginx))
        return await serve_until_stopped(cfg, nginx, stop, "nginx")
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(BaseException):
                await poller
        # SIGTERM makes nginx exit fast; its workers flush their log buffers on the way.
        await stop_process(nginx, "nginx")
        reader_stop.set()
        for task in (follower, shipper_task):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)
        shutil.rmtree(prefix, ignore_errors=True)


async def _poll_mitigations(
    cfg: EdgeRunConfig, conf: Path, options: NginxOptions, nginx: asyncio.subprocess.Process
) -> None:
    """Poll the origin's mitigations; rewrite the configuration and reload nginx (SIGHUP:
    new workers take over, connections in flight finish on the old ones)."""
    assert cfg.ops_key is not None

    async def reload(m: Mitigations) -> None:
        write_private(conf, render_nginx(cfg.settings, options, m.blocked, m.revoked))
        if nginx.returncode is None:
            nginx.send_signal(signal.SIGHUP)

    await MitigationPoller(origin_api(cfg), cfg.ops_key, reload, interval=cfg.poll_interval).run()
