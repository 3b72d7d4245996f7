"""Two hours of real-time mixing with sender clocks 0.1 % fast and 0.1 % slow (real API)."""

import math

import numpy as np

from townhall.mixing import FRAME_SAMPLES, SAMPLE_RATE, TICK_SECONDS, Mixer

HOURS = 2.0
TICKS = int(HOURS * 3600 / TICK_SECONDS)  # 360,000
DRIFT = {"fast": 1.001, "slow": 0.999}
NET_DELAY = 0.005


def test_two_hours_of_drifting_sender_clocks_stay_bounded() -> None:
    m = Mixer(jitter_ms=60, max_buffer_ms=200)
    start = 5_000.0
    ts0 = {"fast": 2**32 - 10_000_000, "slow": 123}  # the fast one wraps after ~3.5 min
    rng = np.random.default_rng(11)
    # one frame of audio per speaker is enough: content does not matter here, timing does
    frame = {sid: (rng.standard_normal(FRAME_SAMPLES) * 3000).astype(np.int16) for sid in DRIFT}
    for sid in DRIFT:
        m.add_speaker(sid)
    m.start(start)
    # a sender's k-th frame is captured by its own clock: it leaves at k*20ms/rate wall time
    period = {sid: TICK_SECONDS / rate for sid, rate in DRIFT.items()}
    next_k = dict.fromkeys(DRIFT, 0)
    jitter_ms = 60
    lat_min = dict.fromkeys(DRIFT, math.inf)
    lat_max = dict.fromkeys(DRIFT, -math.inf)
    depth_max = 0
    produced = 0
    for j in range(TICKS):
        now = start + j * TICK_SECONDS
        for sid in DRIFT:
            k = next_k[sid]
            while (arrival := start + k * period[sid] + NET_DELAY) <= now:
                m.push(sid, frame[sid], (ts0[sid] + k * FRAME_SAMPLES) % 2**32, arrival)
                k += 1
            next_k[sid] = k
        due = m.ticks_due(now)
        assert due == 1  # on a perfect clock: exactly one tick due every 20 ms, for 2 hours
        m.tick()
        produced += 1
        if j % 10 == 0 and j > 100:
            for sid in DRIFT:
                st = m.speaker_state(sid)
                depth_max = max(depth_max, st.depth_samples)
                # latency = what the sender is capturing now minus what we play next
                captured = ts0[sid] + (now + TICK_SECONDS - start) * SAMPLE_RATE * DRIFT[sid]
                lat = (captured - st.cursor) / SAMPLE_RATE * 1000
                lat_min[sid] = min(lat_min[sid], lat)
                lat_max[sid] = max(lat_max[sid], lat)
    assert produced == TICKS
    assert m.ticks_due(start + TICKS * TICK_SECONDS) == 1  # no cumulative clock error
    s = m.stats
    # 0.1 % of 2 h is 7.2 s: absorbed by ~5 ms splices, no losses
    assert s.frames_late == 0 and s.frames_concealed == 0 and s.frames_dropped == 0
    assert s.reanchors == 2 and s.overflow_trims == 0 and s.underrun_resyncs == 0
    assert 1300 < s.drift_trims < 1600 and 1300 < s.drift_stretches < 1600
    assert depth_max <= 200 * SAMPLE_RATE // 1000
    for sid in DRIFT:
        # latency never leaves [jitter/2, jitter + 30 ms + a frame + splice step]
        assert lat_min[sid] >= jitter_ms / 2 - 1, (sid, lat_min[sid])
        assert lat_max[sid] <= jitter_ms + 30 + 20 + 5 + NET_DELAY * 1000, (sid, lat_max[sid])
