"""``townhall loadtest`` (simulated LL-HLS listeners) and ``townhall simulate`` (a fluid model
of internet scale). Register with ``app.command("loadtest")(loadtest)`` and
``app.command("simulate")(simulate)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from .common import console, fail, print_json


def _table(ticks: list[dict[str, Any]], origin: list[Any], elapsed: float, target: int) -> Table:
    from ..loadgen import stats

    recent = [t for t in ticks if t["t"] > elapsed - 1.5 and t["type"] == "tick"]
    latest: dict[int, dict[str, Any]] = {}
    for t in ticks:
        latest[t["worker"]] = t
    rps = sum(sum(t["requests"].values()) for t in recent)
    part = stats.merge(t["latency"]["part"] for t in recent)
    p50, p99 = stats.percentile(part, 50), stats.percentile(part, 99)
    stalls = sum(t["stalls"] for t in ticks)
    errors = sum(sum(t["errors"].values()) for t in ticks)
    cpu = sum(t["cpu_seconds"] for t in recent)
    origin_rps = "-"
    if len(origin) >= 2 and origin[-1].t > origin[-2].t:
        origin_rps = f"{(origin[-1].media - origin[-2].media) / (origin[-1].t - origin[-2].t):.0f}"
    table = Table(title=f"townhall loadtest — {max(0.0, elapsed):.0f} s", show_header=True)
    for col in ("listeners", "req/s", "origin req/s", "part p50/p99", "stalls", "errors", "CPU"):
        table.add_column(col, justify="right")
    active = sum(t["active"] for t in latest.values())
    table.add_row(
        f"{active}/{target}",
        f"{rps:.0f}",
        origin_rps,
        f"{_ms(p50)}/{_ms(p99)} ms",
        str(stalls),
        str(errors),
        f"{cpu:.2f} cores",
    )
    return table


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def loadtest(
    space: str = typer.Option(..., "--space", help="Space id."),
    server: str = typer.Option(..., "--server", help="API base URL (joins, /metrics, state)."),
    edge: str = typer.Option(None, "--edge", help="Edge base URL: media requests go here."),
    listeners: int = typer.Option(..., "--listeners", help="Simulated listeners (max 20,000)."),
    ramp: float = typer.Option(10.0, "--ramp", help="Seconds over which listeners join."),
    duration: float = typer.Option(60.0, "--duration", help="Seconds the run lasts (max 900)."),
    sources: str = typer.Option(
        "127.1.0.0/16", "--sources", help="Source addresses, one per listener ('' = unbound)."
    ),
    json_out: Path = typer.Option(..., "--json", help="Write the JSON report here."),
    png: Path = typer.Option(
        None, "--png", help="Write the PNG of the timeline here [the JSON's path, .png]."
    ),
    no_png: bool = typer.Option(False, "--no-png", help="Write no PNG."),
    workers: int = typer.Option(None, "--workers", help="Worker processes [1, or 2 from 1,000]."),
    origin_metrics: str = typer.Option(
        None, "--origin-metrics", help="Origin Prometheus URL [SERVER/metrics]."
    ),
    uvloop: bool = typer.Option(True, "--uvloop/--no-uvloop", help="Use uvloop if installed."),
    mode: str = typer.Option(
        "ll-hls",
        "--mode",
        help="ll-hls (blocking reloads + parts, like hls.js), hls (whole segments of the "
        "LL-HLS playlist) or std (the standard variant std.m3u8, 4 s segments).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress display."),
) -> None:
    """Simulate LL-HLS listeners (hls.js cadence) from many 127.x addresses; JSON + PNG report."""
    from ..loadgen import report
    from ..loadgen.runner import LoadSettings, run

    settings = LoadSettings(
        space=space,
        server=server,
        edge=edge or None,
        listeners=listeners,
        ramp=ramp,
        duration=duration,
        sources=sources or None,
        workers=workers,
        origin_metrics=origin_metrics,
        use_uvloop=uvloop,
        mode=mode,
    )
    try:
        if quiet:
            raw = run(settings)
        else:
            with Live(console=console, refresh_per_second=4, transient=False) as live:

                def show(t: list[dict[str, Any]], o: list[Any], e: float, n: int) -> None:
                    live.update(_table(t, o, e, n))

                raw = run(settings, show)
    except ValueError as exc:
        fail(str(exc))
    doc = report.build(raw)
    report.write_json(doc, json_out)
    if not no_png:
        png = png or json_out.with_suffix(".png")
        report.write_png(doc, png)
    s = doc["summary"]
    st = s["steady"]
    console.print(
        f"listeners {s['listeners_joined']}/{s['listeners_requested']} joined, "
        f"{s['distinct_listeners']} distinct (server says {s['server_listeners_current']}); "
        f"steady {st['edge_rps']:.0f} req/s, origin {_num(st['origin_rps'])} req/s; "
        f"errors {s['errors_total']}, stalls {s['stalls']} (+{s['warmup_stalls']} at start); "
        f"generator {_num(s['generator_cpu_cores'], 2)} cores → {json_out}"
        + ("" if no_png else f", {png}")
    )


def _num(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def simulate(
    listeners: int = typer.Option(10_000_000, "--listeners", help="Listeners in the space."),
    edges: int = typer.Option(500, "--edges", help="Edge caches (0 = straight to the origin)."),
    join_window: float = typer.Option(120.0, "--join-window", help="Seconds the joins span."),
    part: float = typer.Option(None, "--part", help="Part duration [PackagingConfig]."),
    segment: float = typer.Option(None, "--segment", help="Segment duration [PackagingConfig]."),
    admit_rate: float = typer.Option(
        None,
        "--admit-rate",
        help="Admissions/s per space through the waiting room [the gate's default, "
        "townhall.config.Config.admit_rate]; 0 = no limit.",
    ),
    tier: str = typer.Option(
        "ll-hls",
        "--tier",
        help="Delivery tier: ll-hls (parts and blocking reloads, Varnish edges) or std (the "
        "standard-HLS variant, nginx edges).",
    ),
    json_out: Path = typer.Option(None, "--json", help="Write the prediction as JSON here."),
) -> None:
    """Fluid model of a space at internet scale: origin and edge load, bandwidth, join waits."""
    from ..config import Config
    from ..loadgen.model import Scenario, predict

    if admit_rate is None:
        admit_rate = Config().admit_rate  # what a node's gate admits unless told otherwise
    try:
        scenario = Scenario.with_defaults(
            listeners=listeners,
            edges=edges,
            join_window=join_window,
            part=part,
            segment=segment,
            admit_rate=admit_rate if admit_rate != 0 else None,
            tier=tier,
        )
        prediction = predict(scenario)
    except ValueError as exc:
        fail(str(exc))
    data = prediction.to_dict()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        import json

        json_out.write_text(json.dumps(data, indent=2) + "\n")
    print_json(data)
