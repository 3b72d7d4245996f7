"""Mixer core: jitter buffer, N-1 returns, mute/remove, limiter, levels (synthesised audio)."""

import math

import numpy as np
import numpy.typing as npt
import pytest

from townhall.mixing import FRAME_SAMPLES, SAMPLE_RATE, TICK_SECONDS, Mixer, MixOutput
from townhall.mixing.jitter import LATE_RUN_RESYNC
from townhall.mixing.mixer import MAX_BACKLOG_TICKS

I16 = npt.NDArray[np.int16]
DELAY_TICKS = 3  # jitter_ms=60 with frames pushed exactly on tick boundaries


def tone(freq: float, amp: float, start: int, n: int) -> I16:
    t = (start + np.arange(n)) / SAMPLE_RATE
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames_of(signal: I16) -> list[I16]:
    return [signal[i : i + FRAME_SAMPLES] for i in range(0, len(signal), FRAME_SAMPLES)]


Push = tuple[float, str, I16, int]


def drive(mixer: Mixer, ticks: int, pushes: list[Push], start: float = 0.0) -> list[MixOutput]:
    """Tick at start + k*20 ms, delivering each push (now, sid, pcm, ts) whose now <= tick time."""
    pushes = sorted(pushes, key=lambda p: p[0])
    mixer.start(start)
    outs: list[MixOutput] = []
    i = 0
    for k in range(ticks):
        now = start + k * TICK_SECONDS
        while i < len(pushes) and pushes[i][0] <= now + 1e-12:
            at, sid, pcm, ts = pushes[i]
            mixer.push(sid, pcm, ts, at)
            i += 1
        assert mixer.ticks_due(now) == 1
        outs.append(mixer.tick())
    return outs


def stream(sid: str, signal: I16, first_tick: int = 0, ts0: int = 0) -> list[Push]:
    """Frames of ``signal`` sent one per tick, arriving exactly at tick time."""
    return [
        ((first_tick + k) * TICK_SECONDS, sid, f, (ts0 + k * FRAME_SAMPLES) % 2**32)
        for k, f in enumerate(frames_of(signal))
    ]


def programme(outs: list[MixOutput]) -> I16:
    return np.concatenate([o.programme for o in outs])


def delayed(signal: I16, ticks: int, total_ticks: int) -> I16:
    out = np.zeros(total_ticks * FRAME_SAMPLES, dtype=np.int16)
    start = ticks * FRAME_SAMPLES
    n = min(len(signal), len(out) - start)
    out[start : start + n] = signal[:n]
    return out


def peak_bins(x: I16) -> npt.NDArray[np.float64]:
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    return spec / len(x)


def bin_of(freq: float, n: int) -> int:
    return round(freq * n / SAMPLE_RATE)


# -- mixing and returns ----------------------------------------------------------------


def test_two_tones_programme_holds_both_and_returns_hold_the_other() -> None:
    m = Mixer()
    m.add_speaker("a")
    m.add_speaker("b")
    n_ticks = 40
    a = tone(440, 6000, 0, n_ticks * FRAME_SAMPLES)
    b = tone(660, 6000, 0, n_ticks * FRAME_SAMPLES)
    outs = drive(m, n_ticks, stream("a", a) + stream("b", b))
    steady = outs[10:30]  # 20 ticks = 19200 samples: 440 and 660 Hz fall on exact bins
    prog = np.concatenate([o.programme for o in steady])
    ret_a = np.concatenate([o.returns["a"] for o in steady])
    ret_b = np.concatenate([o.returns["b"] for o in steady])
    n = len(prog)
    s440, s660 = bin_of(440, n), bin_of(660, n)
    p, ra, rb = peak_bins(prog), peak_bins(ret_a), peak_bins(ret_b)
    assert p[s440] > 2500 and p[s660] > 2500
    assert ra[s660] > 2500 and ra[s440] < 1.0
    assert rb[s440] > 2500 and rb[s660] < 1.0
    # no limiting at these levels, so the N-1 return is bit-exact the other speaker
    lo, hi = 10 * FRAME_SAMPLES, 30 * FRAME_SAMPLES
    shift = DELAY_TICKS * FRAME_SAMPLES
    assert np.array_equal(ret_a, b[lo - shift : hi - shift])
    assert np.array_equal(ret_b, a[lo - shift : hi - shift])
    assert set(outs[-1].returns) == {"a", "b"}
    assert all(o.programme.dtype == np.int16 and o.programme.shape == (960,) for o in outs)


def test_output_arrays_are_read_only() -> None:
    m = Mixer()
    m.add_speaker("a")
    out = m.tick()
    with pytest.raises(ValueError):
        out.programme[0] = 1
    with pytest.raises(ValueError):
        out.returns["a"][0] = 1


def test_empty_mixer_produces_silence() -> None:
    m = Mixer()
    out = m.tick()
    assert out.tick == 0 and out.returns == {} and out.levels == {} and not out.speaking
    assert not out.programme.any() and out.programme.shape == (FRAME_SAMPLES,)


# -- jitter buffer -----------------------------------------------------------------------


def test_single_speaker_is_bit_exact_after_the_jitter_delay() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(1000, 9000, 0, 30 * FRAME_SAMPLES)
    outs = drive(m, 40, stream("a", sig))
    assert np.array_equal(programme(outs), delayed(sig, DELAY_TICKS, 40))
    assert m.stats.frames_concealed == 0 and m.stats.frames_late == 0
    assert [o.tick for o in outs] == list(range(40))


def test_reordered_frames_are_placed_correctly() -> None:
    rng = np.random.default_rng(1)
    m = Mixer()
    m.add_speaker("a")
    sig = tone(523, 9000, 0, 100 * FRAME_SAMPLES)
    pushes = stream("a", sig)
    # frame 0 arrives on time (anchors); the rest up to 28 ms late (within the jitter/2
    # budget, so no adaptation kicks in), hence often overtaking each other
    jittered = [pushes[0]] + [
        (at + float(rng.uniform(0, 0.028)), sid, f, ts) for at, sid, f, ts in pushes[1:]
    ]
    order = [p[3] for p in sorted(jittered, key=lambda p: p[0])]
    assert order != sorted(order)  # really reordered
    outs = drive(m, 110, jittered)
    assert np.array_equal(programme(outs), delayed(sig, DELAY_TICKS, 110))
    assert m.stats.frames_late == 0 and m.stats.frames_concealed == 0
    assert m.stats.frames_pushed == 100 and m.stats.drift_stretches == 0


def test_lost_frames_become_silence_and_are_counted() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(700, 9000, 0, 30 * FRAME_SAMPLES)
    lost = {5, 6, 12}
    pushes = [p for k, p in enumerate(stream("a", sig)) if k not in lost]
    outs = drive(m, 40, pushes)
    expected = sig.copy()
    for k in lost:
        expected[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] = 0
    assert np.array_equal(programme(outs), delayed(expected, DELAY_TICKS, 40))
    assert m.stats.frames_concealed == len(lost)


def test_gap_then_resume_keeps_the_timeline() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(300, 9000, 0, 40 * FRAME_SAMPLES)
    # sender pauses 300 ms (< idle re-anchor), timestamps keep running (DTX-like)
    pushes = [p for k, p in enumerate(stream("a", sig)) if not 10 <= k < 25]
    outs = drive(m, 50, pushes)
    expected = sig.copy()
    expected[10 * FRAME_SAMPLES : 25 * FRAME_SAMPLES] = 0
    assert np.array_equal(programme(outs), delayed(expected, DELAY_TICKS, 50))
    assert m.stats.reanchors == 1


def test_late_frames_are_dropped_and_counted() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(900, 9000, 0, 30 * FRAME_SAMPLES)
    pushes = stream("a", sig)
    at, sid, f, ts = pushes[10]
    pushes[10] = ((10 + DELAY_TICKS) * TICK_SECONDS + 0.001, sid, f, ts)  # just missed its slot
    at, sid, f, ts = pushes[11]
    pushes[11] = ((11 + DELAY_TICKS) * TICK_SECONDS - 0.001, sid, f, ts)  # just made it
    outs = drive(m, 40, pushes)
    expected = sig.copy()
    expected[10 * FRAME_SAMPLES : 11 * FRAME_SAMPLES] = 0
    assert np.array_equal(programme(outs), delayed(expected, DELAY_TICKS, 40))
    assert m.stats.frames_late == 1
    assert m.stats.frames_concealed == 1


def test_duplicates_are_ignored() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(800, 9000, 0, 20 * FRAME_SAMPLES)
    pushes = stream("a", sig)
    dups = [(at + 0.005, sid, f.copy(), ts) for at, sid, f, ts in pushes]
    outs = drive(m, 30, pushes + dups)
    assert np.array_equal(programme(outs), delayed(sig, DELAY_TICKS, 30))
    assert m.stats.frames_duplicate == 20 and m.stats.frames_pushed == 20


def test_odd_packet_sizes_are_stitched_sample_exactly() -> None:
    rng = np.random.default_rng(7)
    m = Mixer()
    m.add_speaker("a")
    sig = tone(440, 9000, 0, 30 * FRAME_SAMPLES)
    cuts = [0, 100, 101]
    while cuts[-1] < len(sig):
        cuts.append(min(len(sig), cuts[-1] + int(rng.integers(1, 2000))))
    # each chunk is sent as soon as its last sample was captured
    pushes: list[Push] = [
        (cuts[i + 1] / SAMPLE_RATE, "a", sig[c : cuts[i + 1]], c) for i, c in enumerate(cuts[:-1])
    ]
    outs = drive(m, 40, pushes)
    out = programme(outs)
    # anchored so that the first chunk plays one jitter delay (60 ms) after its arrival
    start = 100 + 60 * SAMPLE_RATE // 1000
    assert np.array_equal(out[start : start + len(sig)], sig)
    assert not out[:start].any() and not out[start + len(sig) :].any()
    assert m.stats.frames_late == 0
    # the stream's last, partial tick: an end of stream looks like a missing packet
    assert m.stats.frames_concealed == 1


def test_rtp_timestamp_wraparound() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(440, 9000, 0, 30 * FRAME_SAMPLES)
    ts0 = 2**32 - 7 * FRAME_SAMPLES - 123
    pushes = stream("a", sig, ts0=ts0)
    assert any(p[3] < ts0 for p in pushes)  # really wrapped
    outs = drive(m, 40, pushes)
    assert np.array_equal(programme(outs), delayed(sig, DELAY_TICKS, 40))
    assert m.stats.frames_late == 0 and m.stats.frames_dropped == 0
    assert m.stats.reanchors == 1


def test_long_pause_then_far_timestamp_reanchors() -> None:
    m = Mixer()
    m.add_speaker("a")
    first = tone(440, 9000, 0, 10 * FRAME_SAMPLES)
    second = tone(660, 9000, 0, 10 * FRAME_SAMPLES)
    pushes = stream("a", first, ts0=1000) + stream("a", second, first_tick=260, ts0=3_000_000_000)
    outs = drive(m, 280, pushes)
    assert m.stats.reanchors == 2 and m.stats.frames_dropped == 0
    assert np.array_equal(programme(outs[3:13]), first)
    assert np.array_equal(programme(outs[263:273]), second)
    assert not programme(outs[13:263]).any()


def test_single_wild_timestamp_is_dropped_not_followed() -> None:
    m = Mixer()
    m.add_speaker("a")
    sig = tone(440, 9000, 0, 30 * FRAME_SAMPLES)
    pushes = stream("a", sig)
    at, sid, f, ts = pushes[15]
    pushes[15] = (at, sid, f, ts + 10 * SAMPLE_RATE)  # corrupt timestamp, once
    outs = drive(m, 40, pushes)
    expected = sig.copy()
    expected[15 * FRAME_SAMPLES : 16 * FRAME_SAMPLES] = 0
    assert np.array_equal(programme(outs), delayed(expected, DELAY_TICKS, 40))
    assert m.stats.frames_dropped == 1 and m.stats.reanchors == 1


def test_deep_buffer_is_trimmed_back_to_target() -> None:
    m = Mixer(jitter_ms=60, max_buffer_ms=200)
    m.add_speaker("a")
    sig = tone(440, 9000, 0, 60 * FRAME_SAMPLES)
    pushes = stream("a", sig)
    # from frame 20 on the sender's timestamps jump 250 ms ahead (e.g. a clock step)
    pushes = [
        (at, sid, f, ts + (12_000 if k >= 20 else 0)) for k, (at, sid, f, ts) in enumerate(pushes)
    ]
    drive(m, 70, pushes[:40])
    assert m.stats.overflow_trims == 1
    assert m.stats.frames_late == 0
    state = m.speaker_state("a")
    assert state.anchored


def test_persistently_late_packets_trigger_an_underrun_resync() -> None:
    m = Mixer(jitter_ms=60, max_buffer_ms=200)
    m.add_speaker("a")
    sig = tone(440, 9000, 0, 60 * FRAME_SAMPLES)
    pushes = stream("a", sig)
    # from frame 20 on the network path is 80 ms longer: frames miss their slots by 20 ms
    pushes = [
        (at + (0.08 if k >= 20 else 0.0), s, f, ts) for k, (at, s, f, ts) in enumerate(pushes)
    ]
    outs = drive(m, 80, pushes)
    assert m.stats.underrun_resyncs == 1
    assert m.stats.frames_late == LATE_RUN_RESYNC  # frames 20..23; 23 is replayed
    prog = programme(outs)
    # frames 0..19 on time; silence; frame 23 on plays a jitter delay after it arrived
    assert np.array_equal(prog[: 23 * FRAME_SAMPLES], delayed(sig[: 20 * FRAME_SAMPLES], 3, 23))
    assert not prog[23 * FRAME_SAMPLES : 30 * FRAME_SAMPLES].any()
    assert np.array_equal(prog[30 * FRAME_SAMPLES : 67 * FRAME_SAMPLES], sig[23 * FRAME_SAMPLES :])


def test_stalled_caller_skips_ticks_and_stays_in_sync() -> None:
    m = Mixer()
    m.add_speaker("a")
    m.start(100.0)
    sig = tone(440, 9000, 0, 200 * FRAME_SAMPLES)
    frames = frames_of(sig)
    produced = 0
    for k in range(20):
        m.push("a", frames[k], k * FRAME_SAMPLES, 100.0 + k * TICK_SECONDS)
        for _ in range(m.ticks_due(100.0 + k * TICK_SECONDS)):
            m.tick()
            produced += 1
    # the event loop stalls for one second; packets pile up and are delivered late
    now = 100.0 + 70 * TICK_SECONDS
    for k in range(20, 70):
        m.push("a", frames[k], k * FRAME_SAMPLES, now)
    due = m.ticks_due(now)
    assert due == MAX_BACKLOG_TICKS
    assert m.stats.skipped_ticks == 71 - 20 - MAX_BACKLOG_TICKS
    ticks = [m.tick().tick for _ in range(due)]
    assert ticks == list(range(61, 71))
    assert m.ticks_due(now) == 0
    late_before = m.stats.frames_late
    for k in range(70, 150):
        at = 100.0 + k * TICK_SECONDS
        m.push("a", frames[k], k * FRAME_SAMPLES, at)
        for _ in range(m.ticks_due(at)):
            last = m.tick()
    assert last.tick == 149
    assert m.stats.frames_late == late_before  # back in sync: nothing late after the stall
    assert last.programme.any()


def test_ticks_due_follows_the_wall_clock_without_accumulated_error() -> None:
    rng = np.random.default_rng(3)
    m = Mixer()
    start = 987_654.321  # a realistic monotonic clock value
    m.start(start)
    produced = 0
    t = now = start
    # 10 minutes of an event loop waking up irregularly (0..35 ms late, 5..25 ms apart)
    while t < start + 600.0:
        t += float(rng.uniform(0.005, 0.025))
        now = max(now, t + float(rng.uniform(0.0, 0.035)))
        for _ in range(m.ticks_due(now)):
            m.tick()
            produced += 1
        assert produced == math.floor((now - start) / TICK_SECONDS + 1e-9) + 1
    assert m.stats.skipped_ticks == 0
    # two hours later (caller asleep): it skips ahead to exactly the wall clock, no drift
    two_hours = start + 7200.0
    assert m.ticks_due(two_hours) == MAX_BACKLOG_TICKS
    assert m.stats.skipped_ticks == 360_001 - produced - MAX_BACKLOG_TICKS
    last = [m.tick() for _ in range(MAX_BACKLOG_TICKS)][-1]
    assert last.tick == 360_000
    assert m.ticks_due(two_hours + 0.0199) == 0 and m.ticks_due(two_hours + 0.02) == 1


# -- membership, mute ----------------------------------------------------------------------


def test_join_and_leave_mid_stream() -> None:
    m = Mixer()
    m.add_speaker("a")
    n = 80
    a = tone(440, 6000, 0, n * FRAME_SAMPLES)
    b = tone(660, 6000, 0, 40 * FRAME_SAMPLES)
    a_frames, b_frames = frames_of(a), frames_of(b)
    m.start(0.0)
    outs: list[MixOutput] = []
    for k in range(n):
        now = k * TICK_SECONDS
        if k == 20:
            m.add_speaker("b")
        if 20 <= k < 60:
            m.push("b", b_frames[k - 20], 5000 + (k - 20) * FRAME_SAMPLES, now)
        m.push("a", a_frames[k], k * FRAME_SAMPLES, now)
        if k == 50:
            m.remove_speaker("b")
            assert m.speakers == frozenset({"a"})
        assert m.ticks_due(now) == 1
        outs.append(m.tick())
    assert set(outs[19].returns) == {"a"} and set(outs[20].returns) == {"a", "b"}
    # b is heard from its first frame's slot (tick 23) until removed (before tick 50)
    a_only = delayed(a, DELAY_TICKS, n)
    both = a_only.copy()
    both[23 * FRAME_SAMPLES : 50 * FRAME_SAMPLES] += b[: 27 * FRAME_SAMPLES]
    prog = programme(outs)
    assert np.array_equal(prog, both)
    assert set(outs[49].returns) == {"a", "b"} and set(outs[50].returns) == {"a"}
    assert set(outs[50].levels) == {"a"} and "b" not in outs[50].speaking
    assert not outs[20].returns["a"].any()  # b joined but its audio is not due yet
    assert np.array_equal(outs[30].returns["a"], b[7 * FRAME_SAMPLES : 8 * FRAME_SAMPLES])
    assert m.stats.frames_dropped == 9  # b's packets after removal


def test_mute_is_server_side_and_immediate() -> None:
    m = Mixer()
    m.add_speaker("a")
    m.add_speaker("b")
    n = 60
    a = tone(440, 6000, 0, n * FRAME_SAMPLES)
    b = tone(660, 6000, 0, n * FRAME_SAMPLES)
    af, bf = frames_of(a), frames_of(b)
    m.start(0.0)
    outs: list[MixOutput] = []
    for k in range(n):
        now = k * TICK_SECONDS
        m.push("a", af[k], k * FRAME_SAMPLES, now)  # a's client keeps sending while muted
        m.push("b", bf[k], k * FRAME_SAMPLES, now)
        if k == 20:
            m.set_muted("a", True)
            assert m.is_muted("a")
        if k == 40:
            m.set_muted("a", False)
        assert m.ticks_due(now) == 1
        outs.append(m.tick())
    frame = slice(0, FRAME_SAMPLES)

    def src(sig: I16, tick: int) -> I16:
        k = tick - DELAY_TICKS
        return sig[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]

    assert "a" in outs[19].speaking and outs[19].levels["a"] > -30
    for t in range(20, 40):
        o = outs[t]
        assert np.array_equal(o.programme, src(b, t))
        assert not o.returns["b"][frame].any()
        assert np.array_equal(o.returns["a"], src(b, t))  # a still hears b
        assert o.levels["a"] == -math.inf and "a" not in o.speaking
    o = outs[40]  # unmuted: back immediately, in time (the buffer kept running)
    assert np.array_equal(o.programme, src(a, 40) + src(b, 40))
    assert np.array_equal(o.returns["b"], src(a, 40))
    assert "a" in o.speaking
    with pytest.raises(KeyError):
        m.set_muted("nobody", True)


def test_speaker_can_be_added_muted() -> None:
    m = Mixer()
    m.add_speaker("a", muted=True)
    sig = tone(440, 9000, 0, 10 * FRAME_SAMPLES)
    outs = drive(m, 12, stream("a", sig))
    assert not programme(outs).any()
    assert all(o.levels["a"] == -math.inf for o in outs)


def test_push_validates_pcm() -> None:
    m = Mixer()
    m.add_speaker("a")
    with pytest.raises(TypeError):
        m.push("a", np.zeros(960, dtype=np.float32), 0, 0.0)  # type: ignore[arg-type,unused-ignore]
    with pytest.raises(TypeError):
        m.push("a", np.zeros((960, 2), dtype=np.int16), 0, 0.0)
    with pytest.raises(ValueError):
        Mixer(jitter_ms=60, max_buffer_ms=80)


# -- limiter ---------------------------------------------------------------------------------


def test_thirteen_full_scale_speakers_do_not_clip_or_wrap() -> None:
    m = Mixer()
    ids = [f"s{i}" for i in range(13)]
    for sid in ids:
        m.add_speaker(sid)
    n = 60
    sine = tone(100, 32767, 0, n * FRAME_SAMPLES)
    square = np.where(tone(50, 1000, 0, n * FRAME_SAMPLES) >= 0, 32767, -32768).astype(np.int16)
    pushes: list[Push] = []
    for i, sid in enumerate(ids):
        pushes += stream(sid, sine if i % 2 else square)
    outs = drive(m, n, pushes)
    ceiling = m.ceiling
    assert 29_000 < ceiling < 29_300  # -1 dBFS
    for o in outs:
        for x in [o.programme, *o.returns.values()]:
            assert int(np.abs(x.astype(np.int32)).max()) <= ceiling
    # no wrap-around: the output has the sign of the (huge) sum wherever the sum is clear
    prog = programme(outs).astype(np.int64)
    total = (
        delayed(sine, DELAY_TICKS, n).astype(np.int64) * 6
        + delayed(square, DELAY_TICKS, n).astype(np.int64) * 7
    )
    clear = np.abs(total) > 20_000
    assert clear.sum() > 40_000
    assert np.all(np.sign(prog[clear]) == np.sign(total[clear]))
    # and it is actually loud (a limiter, not a mute)
    assert np.abs(prog[20 * FRAME_SAMPLES :]).max() > 0.9 * ceiling
    assert m.stats.limited_ticks > 0


def test_limiter_releases_and_leaves_quiet_audio_untouched() -> None:
    m = Mixer()
    m.add_speaker("a")
    m.add_speaker("b")
    n = 150
    loud = tone(200, 30000, 0, n * FRAME_SAMPLES)
    loud[20 * FRAME_SAMPLES :] = 0  # 400 ms burst, 2 x 30000 peaks: gain reduction
    quiet = tone(440, 5000, 0, n * FRAME_SAMPLES)
    outs = drive(m, n, stream("a", loud) + stream("b", quiet))
    assert m.stats.limited_ticks > 0
    burst = programme(outs[5:20])
    assert np.abs(burst.astype(np.int32)).max() <= m.ceiling
    # a's return carries only quiet b: its own limiter never engages (bit-exact)
    assert np.array_equal(_ret(outs, "a"), delayed(quiet, DELAY_TICKS, n))
    # b's return carries only a's 30000-peak burst: limited to the ceiling
    assert int(np.abs(_ret(outs, "b").astype(np.int32)).max()) <= m.ceiling
    # 1.5 s after the burst the programme gain is fully back: bit-exact again
    tail = slice(120, 150)
    assert np.array_equal(programme(outs[tail]), delayed(quiet, DELAY_TICKS, n)[120 * 960 :])


def _ret(outs: list[MixOutput], sid: str) -> I16:
    return np.concatenate([o.returns[sid] for o in outs])


# -- levels and speaking -----------------------------------------------------------------------


def test_levels_and_speaking_with_hangover() -> None:
    m = Mixer()
    m.add_speaker("talk")
    m.add_speaker("hum")
    n = 80
    amp = 32768 * 10 ** (-20 / 20) * math.sqrt(2)  # sine with -20 dBFS RMS
    talk = tone(440, amp, 0, n * FRAME_SAMPLES)
    talk[30 * FRAME_SAMPLES :] = 0  # stops talking after frame 30 (played at tick 33)
    hum = tone(50, 32768 * 10 ** (-60 / 20) * math.sqrt(2), 0, n * FRAME_SAMPLES)
    outs = drive(m, n, stream("talk", talk) + stream("hum", hum))
    assert outs[0].levels["talk"] == -math.inf and not outs[0].speaking
    for o in outs[5:33]:
        assert abs(o.levels["talk"] - (-20.0)) < 0.1
        assert abs(o.levels["hum"] - (-60.0)) < 0.5
        assert o.speaking == frozenset({"talk"})
    assert outs[33].levels["talk"] == -math.inf
    hangover = [("talk" in o.speaking) for o in outs[33:60]]
    assert hangover == [True] * 15 + [False] * 12  # ~300 ms hangover, then silent
