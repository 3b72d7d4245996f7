"""Speaker-to-speaker latency on loopback: A's mark leaves A's source track → B's return
track (the N−1 mix B hears) hands over the decoded frame holding the mark's onset."""

from __future__ import annotations

import asyncio
import logging
import time

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from townhall.stage import RtcSettings, ToneTrack, WhipClient

from .common import LOOPBACK, BenchResult, Figure, open_stage, running_node, summary
from .marks import MarkDetector, MarkTrack, match_marks
from .webrtc_leg import one_leg, pcm_of

logger = logging.getLogger(__name__)

NAME = "n_minus_1"
TARGET_P50 = 0.150


def _ms(value: float | int | None) -> float | None:
    return None if value is None else float(value) * 1000


def run(quick: bool) -> BenchResult:
    seconds = 10.0 if quick else 30.0
    result = BenchResult(
        NAME,
        "speaker A publishes coded tone bursts (1/s); speaker B's return track is read "
        "frame by frame; latency = B's receipt of the onset frame − A's send time",
    )
    with running_node(NAME) as node:
        stage = open_stage(node, 2)
        coro = _measure(stage.whip_url, stage.seats[0].token, stage.seats[1].token, seconds, result)
        asyncio.run(asyncio.wait_for(coro, seconds + 60))
    return result


async def _read_return(track: MediaStreamTrack, detector: MarkDetector) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        wall = time.time()
        if isinstance(frame, AudioFrame):
            detector.feed(pcm_of(frame), wall)


async def _measure(
    whip_url: str, token_a: str, token_b: str, seconds: float, result: BenchResult
) -> None:
    detector = MarkDetector()
    readers: list[asyncio.Task[None]] = []
    marks = MarkTrack(period=1.0, lead=1.0)
    a = WhipClient(whip_url, token_a, RtcSettings(announced_address=LOOPBACK))
    b = WhipClient(whip_url, token_b, RtcSettings(announced_address=LOOPBACK))
    b.on_return = lambda track: readers.append(asyncio.create_task(_read_return(track, detector)))
    try:
        await b.publish(ToneTrack(440.0, amplitude=0.0))
        await b.wait_connected(15)
        await a.publish(marks)
        await a.wait_connected(15)
        await asyncio.sleep(seconds)
    finally:
        marks.stop()
        await a.close()
        await b.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    leg = summary(await one_leg(min(seconds, 8.0)))
    pairs = match_marks(marks.sent, detector.found)
    latencies = [f.wall - s.wall for s, f in pairs]
    lat = summary(latencies)
    result.figures += [
        Figure("A→B p50", _ms(lat["p50"]), "ms", TARGET_P50 * 1000),
        Figure("A→B p95", _ms(lat["p95"]), "ms"),
        Figure("A→B max", _ms(lat["max"]), "ms"),
        Figure("one direct aiortc leg p50 (baseline)", _ms(leg["p50"]), "ms"),
    ]
    result.raw = {
        "seconds": seconds,
        "marks_sent": len(marks.sent),
        "marks_found": len(detector.found),
        "marks_matched": len(pairs),
        "latency_s": lat,
        "one_direct_leg_s": leg,
        "samples": [
            {"mark": s.index, "sent": s.wall, "received": f.wall, "latency": f.wall - s.wall}
            for s, f in pairs
        ],
    }
    if len(pairs) < max(1, len(marks.sent) - 3):
        result.notes.append(f"only {len(pairs)} of {len(marks.sent)} marks were found")
    if lat["p50"] is not None and leg["p50"] is not None:
        inside = lat["p50"] - 2 * leg["p50"]
        result.raw["stage_share_p50_s"] = inside
        result.notes.append(
            f"A→B crosses two WebRTC legs; one direct aiortc leg with aiortc's default "
            f"receive jitter buffer (prefetch=4 frames, ~60-80 ms) costs "
            f"{leg['p50'] * 1000:.0f} ms p50; townhall's stage and WHIP client release "
            f"frames after one (townhall.stage.latency), so the whole A→B path is "
            f"{inside * 1000:+.0f} ms against two default legs"
        )
    result.notes.append(
        "includes A's Opus encode, the mixer's jitter buffer (40 ms target) and mix tick, the "
        "return encode and aiortc's receive jitter buffer and decode at B"
    )
