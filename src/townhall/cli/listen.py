"""``townhall listen``: follow a live LL-HLS playlist (or a replay) like a low-latency player,
optionally record it to WAV, and report mouth-to-ear latency and stalls."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from townhall.listen import ListenError, ListenReport, PartReceived, follow

from .common import JsonOpt, console, fail, out, print_json

logger = logging.getLogger(__name__)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


class _LiveLine:
    """One status line on stderr, updated per part."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.parts = 0
        self.bytes = 0
        self.seconds = 0.0
        self.latency: float | None = None
        self.playout: float | None = None

    def __call__(self, event: PartReceived) -> None:
        self.parts += 1
        self.bytes += event.size
        self.seconds += event.duration
        if event.latency is not None:
            self.latency = event.latency
        if event.playout_latency is not None:
            self.playout = event.playout_latency
        self.live.update(
            Text(
                f"{self.seconds:7.1f} s  latency {_ms(self.latency)}  playout "
                f"{_ms(self.playout)}  buffer {event.buffered:.2f} s  parts {self.parts}  "
                f"stalls {event.stalls}  {self.bytes / 1e6:.2f} MB"
            )
        )


def _summary(report: ListenReport) -> Table:
    table = Table(title="replay" if not report.live else "live", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("playlist", report.url),
        ("audio", f"{report.seconds:.2f} s in {report.wall_seconds:.2f} s"),
        ("fetched", f"{report.parts} ({report.segments} whole segments), {report.bytes} bytes"),
    ]
    if report.live:
        rows += [
            (
                "arrival latency",
                f"p50 {_ms(report.latency_p50)}  p95 {_ms(report.latency_p95)}  "
                f"max {_ms(report.latency_max)}",
            ),
            (
                "playout latency",
                f"p50 {_ms(report.playout_latency_p50)}  p95 {_ms(report.playout_latency_p95)}  "
                f"max {_ms(report.playout_latency_max)}",
            ),
            ("startup", _ms(report.startup_seconds)),
            ("stalls", f"{report.stalls} ({report.stall_seconds:.2f} s)"),
        ]
    rows += [
        ("errors", str(report.errors)),
        ("skipped", str(report.skipped)),
        ("ended", "yes (EXT-X-ENDLIST)" if report.ended else f"no (stopped: {report.stopped})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


async def _run(url: str, seconds: float | None, wav: Path | None, as_json: bool) -> ListenReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # not the main thread / platform
        pass
    if as_json:
        return await follow(url, seconds=seconds, out=wav, stop=stop)
    with Live(Text("connecting…"), console=console, transient=True, refresh_per_second=4) as live:
        return await follow(url, seconds=seconds, out=wav, stop=stop, on_part=_LiveLine(live))


def listen(
    playlist_url: str = typer.Argument(
        ..., help="Playlist URL: /hls/SPACE/live.m3u8 (ticketed: /hls/SPACE/t/TICKET/live.m3u8)."
    ),
    seconds: float = typer.Option(
        None, "--seconds", help="Stop after this many seconds of audio (default: until the end)."
    ),
    wav: Path = typer.Option(None, "--out", help="Write the audio to a WAV file (mono 48 kHz)."),
    as_json: bool = JsonOpt,
) -> None:
    """Follow a live space (or a replay) like a low-latency player; report latency and stalls."""
    # Arrival latency: age of a part's newest sample (PROGRAM-DATE-TIME + offset + duration) when
    # its last byte arrived. Playout latency: when a player that keeps PART-HOLD-BACK buffered
    # plays a sample, minus when it was captured. Both need the server's and this machine's
    # clocks in sync (NTP). See townhall.listen.stats.
    if seconds is not None and seconds <= 0:
        fail("--seconds must be positive")
    try:
        report = asyncio.run(_run(playlist_url, seconds, wav, as_json))
    except ListenError as exc:
        if as_json:
            data = exc.report.to_dict() if exc.report is not None else {"url": playlist_url}
            print_json({**data, "error": exc.message})
        fail(exc.message)
    except Exception as exc:  # never a traceback for the listener
        logger.debug("listen failed", exc_info=True)
        fail(f"unexpected error: {type(exc).__name__}: {exc}")
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(_summary(report))
        if wav is not None:
            out.print(f"wrote {wav}")
