"""Progressive-HTTP listeners (Icecast/SHOUTcast style): one long GET per listener whose body is
the stream itself, read against a playout clock at the stream's bit rate.

Used to load a classic one-to-many audio server with the same client machinery and stall
accounting as the LL-HLS generator: each listener has one connection bound to its own 127.x
source address (:func:`townhall.loadgen.runner.source_addresses`), connects at
``ramp * i / N`` and reads until the run ends. Nothing is decoded: :class:`ByteClock` (pure)
starts playback once ``prebuffer`` seconds of audio have arrived, then consumes
``bitrate / 8`` bytes per second; when the playhead reaches the end of what was received the
listener stalls, and re-buffers ``prebuffer`` seconds before playing on (like a player).

``python -m townhall.loadgen.progressive --url http://127.0.0.1:8000/live --listeners 1000
--ramp 10 --duration 40 [--sources 127.2.0.0/16] [--bitrate 64000] --json out.json``
prints (or writes) one JSON summary; caps: 20,000 listeners, 900 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from . import stats
from .client import Origin
from .runner import MAX_DURATION, MAX_LISTENERS, check_bindable, source_addresses

logger = logging.getLogger(__name__)

MAX_HEADER = 16 * 1024


@dataclass(frozen=True)
class ByteStall:
    """The playout buffer ran dry (a rebuffering event)."""

    at: float
    """When the playhead reached the end of the received bytes."""
    during_warmup: bool
    """Whether it began within the warm-up after playback first started."""


class ByteClock:
    """Playout of a constant-bit-rate byte stream (pure: ``now`` in, no I/O).

    Call :meth:`received` with each chunk's size and arrival time; it returns the stall that
    began before this arrival, if any. While (re)buffering nothing is consumed; playback
    (re)starts at the arrival that brings the buffer to ``prebuffer`` seconds.
    """

    def __init__(self, bitrate: int, prebuffer: float = 1.0, warmup: float = 2.0) -> None:
        if bitrate <= 0 or prebuffer < 0:
            raise ValueError("bitrate must be positive and prebuffer >= 0")
        self.rate = bitrate / 8.0
        """Bytes consumed per second of playback."""
        self.prebuffer_bytes = prebuffer * self.rate
        self.warmup = warmup
        self.bytes = 0
        """Bytes received."""
        self.started_at: float | None = None
        """When playback first started."""
        self.stalls = 0
        """Stalls after the warm-up."""
        self.warmup_stalls = 0
        """Stalls within the warm-up."""
        self.stalled_seconds = 0.0
        """Time spent re-buffering after playback first started."""
        self._playing = False
        self._anchor_time = 0.0
        self._anchor_bytes = 0.0  # bytes consumed at _anchor_time
        self._stalled_since: float | None = None

    def dry_at(self) -> float | None:
        """When the playhead reaches the end of the received bytes (None while buffering)."""
        if not self._playing:
            return None
        return self._anchor_time + (self.bytes - self._anchor_bytes) / self.rate

    def received(self, size: int, now: float) -> ByteStall | None:
        stall: ByteStall | None = None
        dry = self.dry_at()
        if dry is not None and now > dry:
            stall = self._stall(dry)
            self._anchor_bytes = float(self.bytes)  # consumed everything received so far
        self.bytes += size
        if not self._playing and self.bytes - self._anchor_bytes >= self.prebuffer_bytes:
            self._playing = True
            self._anchor_time = now
            if self.started_at is None:
                self.started_at = now
            if self._stalled_since is not None:
                self.stalled_seconds += now - self._stalled_since
                self._stalled_since = None
        return stall

    def finish(self, now: float) -> ByteStall | None:
        """The run ends at ``now``: a stall in progress counts (its duration so far)."""
        dry = self.dry_at()
        stall = self._stall(dry) if dry is not None and now > dry else None
        if self._stalled_since is not None:
            self.stalled_seconds += now - self._stalled_since
            self._stalled_since = now
        return stall

    def _stall(self, at: float) -> ByteStall:
        assert self.started_at is not None
        warm = at - self.started_at < self.warmup
        if warm:
            self.warmup_stalls += 1
        else:
            self.stalls += 1
        self._playing = False
        self._stalled_since = at
        return ByteStall(at, warm)


@dataclass(frozen=True)
class ProgressiveSettings:
    """One progressive-HTTP load run."""

    url: str
    """Stream URL (``http://host:port/mount``)."""
    listeners: int
    """Listeners to start."""
    ramp: float
    """Seconds over which they connect, evenly spaced."""
    duration: float
    """Seconds from the start to the end of the run."""
    sources: str | None = "127.2.0.0/16"
    """Source address range (one address per listener); None: unbound."""
    bitrate: int = 64_000
    """The stream's bit rate (bit/s): the playout clock's speed."""
    prebuffer: float = 1.0
    """Seconds of audio a listener buffers before playing (and after a stall)."""
    warmup: float = 2.0
    """Stalls that begin within this long after playback starts are counted apart."""
    connect_timeout: float = 30.0
    """Seconds a listener waits for its connection and response headers."""
    use_uvloop: bool = True
    """Run on uvloop if it is installed."""


@dataclass
class _State:
    """Per-listener facts for the summary."""

    started: float
    connected: float | None = None
    first_byte: float | None = None
    error: str | None = None
    clock: ByteClock | None = None


class StreamListener(asyncio.Protocol):
    """Reads one progressive HTTP response: headers, then bytes into a :class:`ByteClock`."""

    def __init__(self, state: _State, clock: ByteClock) -> None:
        self.state = state
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._in_body = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_HEADER:
                    self._fail("protocol")
                return
            status = bytes(self._head[:16]).split(b" ")
            if len(status) < 2 or status[1] != b"200":
                code = status[1].decode(errors="replace") if len(status) > 1 else "?"
                self._fail(f"status {code}")
                return
            self._in_body = True
            self.state.clock = self.clock
            data = bytes(self._head[end + 4 :])
            self._head = bytearray()
            if not data:
                return
        if self.state.first_byte is None:
            self.state.first_byte = now
        self.clock.received(len(data), now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state.error is None:
            self.state.error = "closed"
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, error: str) -> None:
        self.state.error = error
        if self.transport is not None:
            self.transport.close()


async def _listener(
    s: ProgressiveSettings, origin: Origin, path: str, source: str | None, state: _State, end: float
) -> None:
    loop = asyncio.get_running_loop()
    clock = ByteClock(s.bitrate, s.prebuffer, s.warmup)
    try:
        transport, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: StreamListener(state, clock),
                origin.host,
                origin.port,
                local_addr=(source, 0) if source else None,
            ),
            min(s.connect_timeout, max(0.1, end - time.time())),
        )
    except TimeoutError:
        state.error = "connect_timeout"
        return
    except OSError as exc:
        state.error = f"connect:{exc.errno}"
        return
    state.connected = time.time()
    transport.write(
        f"GET {path} HTTP/1.0\r\nHost: {origin.authority}\r\n"
        "User-Agent: townhall-loadgen/progressive\r\nIcy-MetaData: 0\r\n\r\n".encode()
    )
    try:
        await asyncio.wait_for(asyncio.shield(proto.closed), max(0.0, end - time.time()))
    except TimeoutError:
        pass
    finally:
        transport.close()


async def run(s: ProgressiveSettings) -> dict[str, Any]:
    """Run the listeners to the end of ``s.duration``; returns the JSON-able summary."""
    if not 1 <= s.listeners <= MAX_LISTENERS:
        raise ValueError(f"listeners must be 1..{MAX_LISTENERS}")
    if not 0 <= s.ramp < s.duration <= MAX_DURATION:
        raise ValueError(f"need 0 <= ramp < duration <= {MAX_DURATION:.0f}")
    origin = Origin.from_url(s.url)
    path = s.url.split(origin.authority, 1)[1] or "/"
    sources = source_addresses(s.sources, s.listeners)
    if sources:
        check_bindable(sources[0])
    cpu0 = time.process_time()
    t0 = time.time() + 0.2
    end = t0 + s.duration
    states: list[_State] = []
    tasks: list[asyncio.Task[None]] = []
    timeline: list[dict[str, float]] = []
    sampler = asyncio.create_task(_sample(states, t0, end, timeline))
    try:
        for i in range(s.listeners):
            at = t0 + s.ramp * i / s.listeners
            if (delay := at - time.time()) > 0:
                await asyncio.sleep(delay)
            state = _State(started=time.time())
            states.append(state)
            source = sources[i % len(sources)] if sources else None
            tasks.append(asyncio.create_task(_listener(s, origin, path, source, state, end)))
        await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), max(1.0, end - time.time() + 5)
        )
    finally:
        for t in (*tasks, sampler):
            t.cancel()
        await asyncio.gather(*tasks, sampler, return_exceptions=True)
    return summarize(s, states, t0, time.time(), time.process_time() - cpu0, timeline)


async def _sample(states: list[_State], t0: float, end: float, out: list[dict[str, float]]) -> None:
    last = 0
    while time.time() < end:
        await asyncio.sleep(1.0)
        total = sum(st.clock.bytes for st in states if st.clock is not None)
        out.append(
            {
                "t": round(time.time() - t0, 2),
                "receiving": sum(1 for st in states if st.first_byte is not None and not st.error),
                "bytes": total - last,
            }
        )
        last = total


def summarize(
    s: ProgressiveSettings,
    states: list[_State],
    t0: float,
    now: float,
    cpu: float,
    timeline: list[dict[str, float]],
) -> dict[str, Any]:
    """The run's figures: who got media and how fast, stalls, errors, generator CPU."""
    ttfb = stats.empty()
    connect = stats.empty()
    stalls = warmup_stalls = stalled_listeners = 0
    stalled_seconds = 0.0
    errors: dict[str, int] = {}
    for st in states:
        if st.clock is not None:
            st.clock.finish(now)
            stalls += st.clock.stalls
            warmup_stalls += st.clock.warmup_stalls
            stalled_seconds += st.clock.stalled_seconds
            stalled_listeners += 1 if st.clock.stalls else 0
        if st.connected is not None:
            connect[stats.bucket(st.connected - st.started)] += 1
        if st.first_byte is not None:
            ttfb[stats.bucket(st.first_byte - st.started)] += 1
        if st.error is not None and not (st.error == "closed" and st.first_byte is not None):
            errors[st.error] = errors.get(st.error, 0) + 1
    with_media = [st for st in states if st.first_byte is not None]
    steady_from = s.ramp + 3.0
    rows = [r for r in timeline if r["t"] >= steady_from]
    return {
        "config": asdict(s),
        "started_at": t0,
        "listeners_started": len(states),
        "listeners_connected": sum(1 for st in states if st.connected is not None),
        "listeners_with_media": len(with_media),
        "listeners_never_served": len(states) - len(with_media),
        "listeners_first_byte_after_5s": sum(
            1 for st in with_media if st.first_byte is not None and st.first_byte - st.started > 5
        ),
        "listeners_stalled": stalled_listeners,
        "listeners_held_without_stall": sum(
            1 for st in with_media if st.clock is not None and st.clock.stalls == 0
        ),
        "stalls": stalls,
        "warmup_stalls": warmup_stalls,
        "stalled_seconds": round(stalled_seconds, 3),
        "errors": errors,
        "connect_s": stats.summary(connect),
        "first_byte_s": stats.summary(ttfb),
        "steady_mbit_per_s": (
            sum(r["bytes"] for r in rows) * 8 / len(rows) / 1e6 if rows else None
        ),
        "generator_cpu_cores": cpu / max(1e-9, now - t0),
        "timeline": timeline,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m townhall.loadgen.progressive")
    parser.add_argument("--url", required=True)
    parser.add_argument("--listeners", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--sources", default="127.2.0.0/16", help="'' = unbound")
    parser.add_argument("--bitrate", type=int, default=64_000)
    parser.add_argument("--prebuffer", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None, help="write here (else stdout)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    settings = ProgressiveSettings(
        url=args.url,
        listeners=args.listeners,
        ramp=args.ramp,
        duration=args.duration,
        sources=args.sources or None,
        bitrate=args.bitrate,
        prebuffer=args.prebuffer,
        use_uvloop=not args.no_uvloop,
    )
    _raise_nofile()
    runner: Any = asyncio.run
    if settings.use_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # optional speed-up
            pass
    try:
        result = runner(run(settings))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.json is None:
        print(text)
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


def _raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    sys.exit(main())
