"""The stage mixer: jitter buffers in, programme + N-1 returns + levels out, one tick at a time.

Pure and sans-IO: the caller passes ``now`` (monotonic seconds) to :meth:`Mixer.push` and
:meth:`Mixer.ticks_due`, then calls :meth:`Mixer.tick` that many times. All methods must be
called from one thread (or be serialised by the caller).
"""

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from townhall.mixing.constants import FRAME_SAMPLES, SAMPLE_RATE, TICK_SECONDS
from townhall.mixing.jitter import JitterBuffer, SpeakerBufferState
from townhall.mixing.levels import SpeakingDetector, energy_dbfs
from townhall.mixing.limiter import Limiter
from townhall.mixing.stats import MixerStats

__all__ = ["FRAME_SAMPLES", "SAMPLE_RATE", "TICK_SECONDS", "MixOutput", "Mixer"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I16 = npt.NDArray[np.int16]

MAX_BACKLOG_TICKS = 10
""":meth:`Mixer.ticks_due` never reports more than this; older ticks are skipped."""


@dataclass(frozen=True)
class MixOutput:
    """One 20 ms tick of mixer output. Arrays are read-only views; copy before mutating."""

    tick: int
    """Index of this tick since the mixer started (jumps forward over skipped ticks)."""
    programme: I16
    """int16 mono programme mix, FRAME_SAMPLES long, limited to the ceiling."""
    returns: dict[str, I16]
    """speaker_id -> int16 mono mix of every other speaker (N-1), FRAME_SAMPLES long."""
    levels: dict[str, float]
    """speaker_id -> RMS level of what they contributed this tick, dBFS; muted -> -inf."""
    speaking: frozenset[str]
    """Speakers judged speaking: level above threshold now or within the hangover."""


class _Speaker:
    __slots__ = ("buffer", "muted", "detector", "gain")

    def __init__(self, buffer: JitterBuffer, detector: SpeakingDetector, muted: bool) -> None:
        self.buffer = buffer
        self.muted = muted
        self.detector = detector
        self.gain = 0.0  # limiter state of this speaker's return, dB


class Mixer:
    """Server-side stage mixer for up to a dozen or so speakers."""

    def __init__(
        self,
        *,
        jitter_ms: int = 60,
        max_buffer_ms: int = 200,
        ceiling_dbfs: float = -1.0,
        speaking_threshold_dbfs: float = -45.0,
        hangover_ms: int = 300,
    ) -> None:
        if jitter_ms < 0 or max_buffer_ms < jitter_ms + 40:
            raise ValueError("need jitter_ms >= 0 and max_buffer_ms >= jitter_ms + 40")
        self._jitter = jitter_ms * SAMPLE_RATE // 1000
        self._max_buffer = max_buffer_ms * SAMPLE_RATE // 1000
        self._threshold = speaking_threshold_dbfs
        self._hangover_ticks = max(0, round(hangover_ms / 1000 / TICK_SECONDS))
        self._limiter = Limiter(frame_samples=FRAME_SAMPLES, ceiling_dbfs=ceiling_dbfs)
        self._speakers: dict[str, _Speaker] = {}
        self._programme_gain = 0.0
        self._start: float | None = None
        self._tick = 0
        self._contrib = np.zeros((4, FRAME_SAMPLES), dtype=np.float32)
        self._mix = np.zeros((5, FRAME_SAMPLES), dtype=np.float32)
        self.stats = MixerStats()
        """Counters since creation (mutated in place)."""

    # -- membership --------------------------------------------------------------------
    @property
    def speakers(self) -> frozenset[str]:
        """Speakers currently on the mixer."""
        return frozenset(self._speakers)

    @property
    def ceiling(self) -> float:
        """Output ceiling in int16 sample units."""
        return self._limiter.ceiling_lin

    def add_speaker(self, speaker_id: str, *, muted: bool = False) -> None:
        """Add a speaker (no-op if present). They are heard from their first packet on."""
        if speaker_id in self._speakers:
            return
        buffer = JitterBuffer(
            jitter_samples=self._jitter, max_buffer_samples=self._max_buffer, stats=self.stats
        )
        detector = SpeakingDetector(
            threshold_dbfs=self._threshold, hangover_ticks=self._hangover_ticks
        )
        self._speakers[speaker_id] = _Speaker(buffer, detector, muted)
        logger.debug("speaker %s added (muted=%s)", speaker_id, muted)

    def remove_speaker(self, speaker_id: str) -> None:
        """Remove a speaker (no-op if absent); the next tick no longer contains them."""
        if self._speakers.pop(speaker_id, None) is not None:
            logger.debug("speaker %s removed", speaker_id)

    def set_muted(self, speaker_id: str, muted: bool) -> None:
        """Server-side mute; effective from the next tick. Raises KeyError if unknown."""
        speaker = self._speakers[speaker_id]
        speaker.muted = muted
        if muted:
            speaker.detector.reset()

    def is_muted(self, speaker_id: str) -> bool:
        """Whether ``speaker_id`` is muted. Raises KeyError if unknown."""
        return self._speakers[speaker_id].muted

    def speaker_state(self, speaker_id: str) -> SpeakerBufferState:
        """Jitter-buffer snapshot of ``speaker_id``. Raises KeyError if unknown."""
        return self._speakers[speaker_id].buffer.state()

    # -- input -------------------------------------------------------------------------
    def push(self, speaker_id: str, pcm: I16, timestamp: int, now: float) -> None:
        """Queue decoded audio of ``speaker_id``.

        ``pcm`` is int16 mono of any length; ``timestamp`` is the sender media clock of its
        first sample (48 kHz, may wrap at 2**32); ``now`` is the monotonic arrival time.
        Audio of unknown (e.g. just removed) speakers is dropped and counted.
        """
        speaker = self._speakers.get(speaker_id)
        if speaker is None:
            self.stats.frames_dropped += 1
            return
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(f"pcm must be 1-D int16, got {pcm.dtype} with shape {pcm.shape}")
        speaker.buffer.push(pcm.astype(np.float32), int(timestamp), now, self._lead(now))

    def _lead(self, now: float) -> float:
        if self._start is None:
            return 0.0
        self._catch_up(now)  # a stalled caller must not make fresh packets look early
        return (now - self._start) * SAMPLE_RATE - self._tick * FRAME_SAMPLES

    # -- clock -------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Start the tick clock: tick 0 (or the next unproduced tick) is due at ``now``."""
        if self._start is not None:
            raise RuntimeError("mixer already started")
        self._start = now - self._tick * TICK_SECONDS

    def ticks_due(self, now: float) -> int:
        """Ticks due at ``now`` (0 before :meth:`start`), at most MAX_BACKLOG_TICKS.

        Computed from the start time and the tick count, so it never accumulates error. If
        the caller fell further behind, the excess ticks are skipped (counted in ``stats``).
        """
        if self._start is None:
            return 0
        return max(self._catch_up(now), 0)

    def _catch_up(self, now: float) -> int:
        """Skip ticks beyond the backlog limit; return the number due (may be <= 0)."""
        assert self._start is not None
        due = math.floor((now - self._start) / TICK_SECONDS + 1e-6) + 1 - self._tick
        if due > MAX_BACKLOG_TICKS:
            skip = due - MAX_BACKLOG_TICKS
            self._tick += skip
            self.stats.skipped_ticks += skip
            for speaker in self._speakers.values():
                speaker.buffer.skip(skip)
            logger.warning("mixer fell %d ticks behind; skipped them", skip)
            due = MAX_BACKLOG_TICKS
        return due

    # -- mixing ------------------------------------------------------------------------
    def tick(self) -> MixOutput:
        """Mix the next 20 ms."""
        tick = self._tick
        self._tick += 1
        self.stats.ticks += 1
        ids = list(self._speakers)
        n = len(ids)
        if self._contrib.shape[0] < n:
            self._contrib = np.zeros((n, FRAME_SAMPLES), dtype=np.float32)
            self._mix = np.zeros((n + 1, FRAME_SAMPLES), dtype=np.float32)
        contrib = self._contrib[:n]
        speakers = [self._speakers[sid] for sid in ids]
        for i, speaker in enumerate(speakers):
            row = contrib[i]
            speaker.buffer.read(row)  # always consume, so muting keeps the timeline
            if speaker.muted:
                row.fill(0.0)
        mix = self._mix[: n + 1]
        np.add.reduce(contrib, axis=0, out=mix[0])
        np.subtract(mix[0], contrib, out=mix[1:])

        gains = np.array([self._programme_gain, *[sp.gain for sp in speakers]])
        if self._limiter.process(mix, gains):
            self._programme_gain = float(gains[0])
            if self._programme_gain < 0.0:
                self.stats.limited_ticks += 1
            for speaker, gain in zip(speakers, gains[1:].tolist(), strict=True):
                speaker.gain = gain
        np.rint(mix, out=mix)
        np.minimum(mix, 32767.0, out=mix)  # no-op after the limiter; belt and braces
        np.maximum(mix, -32768.0, out=mix)
        out = mix.astype(np.int16)
        out.flags.writeable = False

        energies = np.einsum("ij,ij->i", contrib, contrib, dtype=np.float64).tolist()
        levels: dict[str, float] = {}
        speaking: list[str] = []
        returns: dict[str, I16] = {}
        for i, (sid, speaker) in enumerate(zip(ids, speakers, strict=True)):
            level = -math.inf if speaker.muted else energy_dbfs(energies[i], FRAME_SAMPLES)
            levels[sid] = level
            if not speaker.muted and speaker.detector.update(tick, level):
                speaking.append(sid)
            returns[sid] = out[i + 1]
        return MixOutput(
            tick=tick,
            programme=out[0],
            returns=returns,
            levels=levels,
            speaking=frozenset(speaking),
        )
