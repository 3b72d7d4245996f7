"""Counters the mixer keeps for observability."""

from dataclasses import dataclass


@dataclass(slots=True)
class MixerStats:
    """Monotonic counters since the mixer was created (mutated in place by the mixer)."""

    ticks: int = 0
    """Ticks produced by :meth:`Mixer.tick`."""
    skipped_ticks: int = 0
    """Ticks skipped by :meth:`Mixer.ticks_due` because the caller stalled past the backlog."""
    frames_pushed: int = 0
    """Frames accepted into a jitter buffer (after late/duplicate filtering)."""
    frames_late: int = 0
    """Frames dropped because their slot had already been mixed."""
    frames_duplicate: int = 0
    """Frames ignored because every sample of them was already buffered."""
    frames_dropped: int = 0
    """Frames dropped for other reasons (unknown speaker, implausible timestamp jump)."""
    frames_concealed: int = 0
    """Speaker-ticks with samples missing (filled with silence) while the speaker was live."""
    overflow_trims: int = 0
    """Buffer got deeper than ``max_buffer``: playout jumped forward to the target depth."""
    underrun_resyncs: int = 0
    """Several packets in a row missed their slots: playout stepped back to the target."""
    drift_trims: int = 0
    """5 ms forward splices: slack stayed above jitter + 20 ms (fast sender clock)."""
    drift_stretches: int = 0
    """5 ms backward splices: slack fell below jitter/2 (slow sender clock, more jitter)."""
    reanchors: int = 0
    """Speaker media clocks (re-)anchored to the tick clock (first packet, resume, clock jump)."""
    limited_ticks: int = 0
    """Ticks in which the programme limiter reduced gain."""
