"""In-process cost of the pure parts of a stage: the mixer tick (13 speakers: programme,
13 N−1 returns, levels) and the programme packager (AAC-LC encode + fMP4 parts), timed
with ``perf_counter`` on a simulated clock (no sleeping)."""

from __future__ import annotations

import time

import numpy as np

from townhall.mixing import Mixer
from townhall.packaging import PackagingConfig, ProgrammePackager

from .common import summary

TICK = 0.020
FRAME = 960


def mixer_tick_cost(speakers: int = 13, ticks: int = 1500) -> dict[str, object]:
    """Per-tick seconds of ``Mixer.tick`` (and of the 13 pushes feeding it)."""
    rng = np.random.default_rng(1)
    mixer = Mixer(jitter_ms=60)
    ids = [f"s{i}" for i in range(speakers)]
    for sid in ids:
        mixer.add_speaker(sid)
    t0 = 1000.0
    mixer.start(t0)
    tone = [
        (np.sin(2 * np.pi * (200 + 50 * i) * np.arange(FRAME * 50) / 48_000) * 6000).astype(
            np.int16
        )
        for i in range(speakers)
    ]
    tick_s: list[float] = []
    push_s: list[float] = []
    for k in range(ticks):
        now = t0 + k * TICK + float(rng.uniform(0, 0.004))
        start = time.perf_counter()
        for i, sid in enumerate(ids):
            j = k % 50
            mixer.push(sid, tone[i][j * FRAME : (j + 1) * FRAME], k * FRAME, now)
        push_s.append(time.perf_counter() - start)
        for _ in range(mixer.ticks_due(now)):
            start = time.perf_counter()
            mixer.tick()
            tick_s.append(time.perf_counter() - start)
    tick = summary(tick_s[50:])
    push = summary(push_s[50:])
    mean = float(tick["mean"] or 0.0) + float(push["mean"] or 0.0)
    return {
        "speakers": speakers,
        "tick_s": tick,
        "push_13_s": push,
        "core_share": mean / TICK,
    }


def packager_cost(seconds: float = 20.0) -> dict[str, object]:
    """Seconds of ``ProgrammePackager.push`` per 100 ms of programme (the node pushes 5
    ticks at a time), and the resulting share of a core."""
    packager = ProgrammePackager(PackagingConfig(), first_msn=0, first_decode_time=0)
    chunk = FRAME * 5
    pcm = (np.sin(2 * np.pi * 330 * np.arange(chunk) / 48_000) * 8000).astype(np.int16)
    costs: list[float] = []
    wall = time.time()
    for k in range(int(seconds / 0.1)):
        start = time.perf_counter()
        packager.push(pcm, wall + k * 0.1)
        costs.append(time.perf_counter() - start)
    s = summary(costs)
    return {"push_100ms_s": s, "core_share": float(s["mean"] or 0.0) / 0.1}


def return_encode_cost(frames: int = 500) -> dict[str, object]:
    """Seconds per 20 ms frame of one N−1 return's Opus encode (the stage's own encoder,
    :class:`townhall.stage.return_track.MonoOpusEncoder`); a 13-speaker stage runs 13."""
    from townhall.stage.return_track import RETURN_BITRATE, MonoOpusEncoder

    encoder = MonoOpusEncoder(RETURN_BITRATE)
    pcm = (np.sin(2 * np.pi * 250 * np.arange(FRAME * frames) / 48_000) * 8000).astype(np.int16)
    costs: list[float] = []
    for k in range(frames):
        start = time.perf_counter()
        encoder.encode(pcm[k * FRAME : (k + 1) * FRAME])
        costs.append(time.perf_counter() - start)
    s = summary(costs[20:])
    return {"encode_20ms_s": s, "core_share_per_return": float(s["mean"] or 0.0) / TICK}
