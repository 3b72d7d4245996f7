"""Mouth-to-ear latency through the LL-HLS origin.

The host publishes timing marks over WHIP (send time logged at the source track); a
listener follows the live playlist (blocking reload for the next part, then the part)
and decodes every part. Latency = wall time the part holding a mark's onset arrived
(the mark became available to the player) − the mark's send time. The PDT-based figure
is arrival − PROGRAM-DATE-TIME of the onset (what a player can compute on its own);
the difference between the two is how far the PDT stamps are from the true send time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

from townhall.stage import RtcSettings, WhipClient

from .common import LOOPBACK, BenchResult, Figure, open_stage, running_node, summary
from .hls_follower import RATE, ReceivedPart, follow
from .listen_adapter import run_follow
from .marks import MarkDetector, MarkTrack, match_marks

logger = logging.getLogger(__name__)

NAME = "mouth_to_ear"
TARGET_P50 = 1.5
TARGET_P95 = 2.5


@dataclass
class _Listener:
    detector: MarkDetector
    parts: list[tuple[int, ReceivedPart]]
    """(detector sample index of the part's first sample, part)."""
    part_lags: list[float]
    """Per part: arrival − PDT of the part's end (how far behind live-by-PDT)."""

    def on_part(self, part: ReceivedPart) -> None:
        self.parts.append((self.detector.samples, part))
        if part.entry.pdt is not None:
            self.part_lags.append(part.arrived - (part.entry.pdt + part.entry.duration))
        self.detector.feed(part.pcm, part.arrived)

    def pdt_of(self, sample: int) -> float | None:
        for start, part in reversed(self.parts):
            if start <= sample:
                if part.entry.pdt is None:
                    return None
                return part.entry.pdt + (sample - start) / RATE
        return None


def run(quick: bool) -> BenchResult:
    seconds = 15.0 if quick else 40.0
    result = BenchResult(
        NAME,
        "host publishes coded tone bursts (1/s) over WHIP; an LL-HLS follower (blocking "
        "reload + part GET, PyAV decode) finds them; latency = part arrival − send time",
    )
    with running_node(NAME) as node:
        stage = open_stage(node, 1)
        asyncio.run(
            asyncio.wait_for(
                _measure(stage.whip_url, stage.seats[0].token, stage.playlist_url, seconds, result),
                seconds + 90,
            )
        )
    return result


async def _measure(
    whip_url: str, token: str, playlist_url: str, seconds: float, result: BenchResult
) -> None:
    listener = _Listener(MarkDetector(), [], [])
    track = MarkTrack(period=1.0, lead=1.0)
    client = WhipClient(whip_url, token, RtcSettings(announced_address=LOOPBACK))
    try:
        await client.publish(track)
        await client.wait_connected(15)
        async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
            mine = follow(http, playlist_url, seconds, listener.on_part)
            theirs = run_follow(playlist_url, seconds)
            parts, listen = await asyncio.gather(mine, theirs)
    finally:
        track.stop()
        await client.close()
    pairs = match_marks(track.sent, listener.detector.found)
    latencies = [f.wall - s.wall for s, f in pairs]
    pdt_lat: list[float] = []
    pdt_offset: list[float] = []
    for sent, found in pairs:
        mark_pdt = listener.pdt_of(found.sample)
        if mark_pdt is not None:
            pdt_lat.append(found.wall - mark_pdt)
            pdt_offset.append(mark_pdt - sent.wall)
    lat = summary(latencies)
    pdt = summary(pdt_lat)
    result.figures += [
        Figure("mark latency p50", lat["p50"], "s", TARGET_P50),
        Figure("mark latency p95", lat["p95"], "s", TARGET_P95),
        Figure("PDT-based latency p50", pdt["p50"], "s"),
        Figure("PDT-based latency p95", pdt["p95"], "s"),
        Figure("PDT stamp − true send time (median)", summary(pdt_offset)["p50"], "s"),
        Figure(
            "live-edge lag by PDT (part end → arrival) p50", summary(listener.part_lags)["p50"], "s"
        ),
    ]
    result.raw = {
        "seconds": seconds,
        "marks_sent": len(track.sent),
        "marks_found": len(listener.detector.found),
        "marks_matched": len(pairs),
        "parts_received": parts,
        "mark_latency_s": lat,
        "pdt_latency_s": pdt,
        "pdt_offset_s": summary(pdt_offset),
        "part_lag_by_pdt_s": summary(listener.part_lags),
        "samples": [
            {"mark": s.index, "sent": s.wall, "available": f.wall, "latency": f.wall - s.wall}
            for s, f in pairs
        ],
        "townhall_listen_follow": listen,
    }
    fields = listen.get("latency_fields") or {}
    for key, value in fields.items():
        if isinstance(value, int | float):
            result.figures.append(Figure(f"townhall.listen.follow {key}", float(value), "s"))
        elif isinstance(value, list):
            s = summary([float(v) for v in value])
            result.figures.append(Figure(f"townhall.listen.follow {key} p50", s["p50"], "s"))
    if fields:
        offset = summary(pdt_offset)["p50"]
        result.notes.append(
            "townhall.listen.follow: latency_* = PDT age of a part's newest sample on arrival "
            "(≈ our live-edge lag), playout_latency_* = its simulated player's playout; both "
            "trust the PDT stamps, which are "
            + ("?" if offset is None else f"{offset * 1000:.0f} ms")
            + " later than the true send time, so add that for mouth-to-ear"
        )
    if not listen.get("available"):
        result.notes.append("townhall.listen.follow is not in the tree yet: PDT figure is ours")
    if len(pairs) < max(1, len(track.sent) - 4):
        result.notes.append(f"only {len(pairs)} of {len(track.sent)} marks were found")
    result.notes.append(
        "'available' = last byte of the part holding the onset received; a player adds its "
        "own buffer (PART-HOLD-BACK 1.536 s is the spec's minimum distance from the live edge)"
    )
