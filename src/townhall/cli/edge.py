"""``townhall edge-config`` (write a ready edge configuration) and ``townhall edge run``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import typer

from ..edge.nginx import NginxOptions, render_nginx
from ..edge.run import EdgeRunConfig, run_edge, write_private
from ..edge.settings import (
    EdgeSettings,
    EdgeSettingsError,
    build_settings,
    load_edge_keys,
    parse_listen,
)
from ..edge.varnish import render_vcl
from .common import console, fail

KINDS = ("varnish", "nginx")


def _default_keys() -> Path:
    return Path(os.environ.get("TOWNHALL_DATA", "data")) / "keys.json"


def _settings(origin: str, kind: str, keys: Path | None, name: str) -> EdgeSettings:
    if kind not in KINDS:
        fail(f"--kind must be one of {', '.join(KINDS)}")
    try:
        settings = build_settings(origin, load_edge_keys(keys or _default_keys()), name=name)
    except EdgeSettingsError as exc:
        fail(str(exc), code=2)
    for kid in settings.skipped_kids if kind == "varnish" else ():
        console.print(
            f"[yellow]warning:[/] key {kid!r} holds a zero byte and cannot be checked at the "
            "edge; tickets signed with it are refused there (listeners re-join for a new one)"
        )
    return settings


def edge_config(
    origin: str = typer.Option(..., "--origin", help="Origin base URL, e.g. http://10.0.0.5:8080."),
    kind: str = typer.Option(
        "varnish",
        "--kind",
        help="varnish (LL-HLS + standard HLS, JWT tickets) or nginx (standard HLS, links).",
    ),
    out: Path = typer.Option(None, "--out", help="Write here (mode 0600) instead of stdout."),
    keys: Path = typer.Option(None, "--keys", help="Ticket keys [$TOWNHALL_DATA/keys.json]."),
    listen: str = typer.Option(
        None, "--listen", help="HOST:PORT the edge will listen on (for the run hint)."
    ),
    name: str = typer.Option("edge", "--name", help="Edge name, sent as X-Edge."),
) -> None:
    """Write a ready edge configuration: a VCL with the ticket keys embedded (varnish) or an
    nginx.conf with the derived link keys (nginx)."""
    settings = _settings(origin, kind, keys, name)
    if kind == "nginx":
        try:
            text = render_nginx(settings, NginxOptions(listen=listen or "0.0.0.0:8081"))
        except ValueError as exc:
            fail(str(exc), code=2)
        hint = f"mkdir -p DIR && nginx -p DIR -c {out} -e stderr -g 'daemon off;'"
    else:
        text = render_vcl(settings)
        hint = f"varnishd -F -a {listen or '0.0.0.0:6081'} -f {out} -s malloc,256m"
    if out is None:
        sys.stdout.write(text)
        return
    write_private(out, text)
    console.print(f"wrote {out} (mode 0600); run it with: {hint}")


edge_app = typer.Typer(help="Run an edge cache in front of an origin.", no_args_is_help=True)


@edge_app.callback()
def _edge_group() -> None:
    """Edge caches in front of an origin (Varnish for LL-HLS, nginx for standard HLS)."""


@edge_app.command("run")
def run(
    origin: str = typer.Option(..., "--origin", help="Origin base URL, e.g. http://10.0.0.5:8080."),
    kind: str = typer.Option(
        "varnish",
        "--kind",
        help="varnish (LL-HLS + standard HLS, JWT tickets) or nginx (standard HLS, links).",
    ),
    listen: str = typer.Option("127.0.0.1:6081", "--listen", help="HOST:PORT to serve on."),
    keys: Path = typer.Option(None, "--keys", help="Ticket keys [$TOWNHALL_DATA/keys.json]."),
    redis: str = typer.Option(
        None,
        "--redis",
        help="Ship distinct listeners (HyperLogLogs) and the watch's observations to this "
        "Redis URL (a cluster).",
    ),
    name: str = typer.Option("edge", "--name", help="Edge name (X-Edge header, work dir)."),
    ops_key: str = typer.Option(
        None,
        "--ops-key",
        envvar="TOWNHALL_OPS_KEY",
        help="Operator API key: enforce the origin's blocks and revocations (polled); "
        "without --redis, also report listeners and observations to the origin.",
    ),
    workers: str = typer.Option(
        "auto", "--workers", help="nginx worker processes (a number or auto; nginx only)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
) -> None:
    """Run varnishd or nginx (and the listener log shipper with --redis or --ops-key) until
    SIGTERM/SIGINT."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if log_level.lower() != "debug":  # not a line per poll and per report
        logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = _settings(origin, kind, keys, name)
    try:
        host, port = parse_listen(listen)
    except EdgeSettingsError as exc:
        fail(str(exc), code=2)
    if workers != "auto" and not (workers.isdigit() and 0 < int(workers) <= 256):
        fail(f"--workers must be auto or a number from 1 to 256, not {workers!r}", code=2)
    cfg = EdgeRunConfig(
        settings=settings,
        listen_host=host,
        listen_port=port,
        redis_url=redis,
        ops_key=ops_key,
        kind=kind,
        workers=workers,
    )
    try:
        code = asyncio.run(_main(cfg))
    except EdgeSettingsError as exc:
        fail(str(exc))
    raise typer.Exit(code)


async def _main(cfg: EdgeRunConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run_edge(cfg, stop)
