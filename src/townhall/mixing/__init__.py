"""townhall.mixing: the stage mixer core (pure numpy, sans-IO).

The mixer runs on 20 ms ticks at 48 kHz. Speakers' decoded audio goes in through
:meth:`Mixer.push`; each :meth:`Mixer.tick` produces the programme mix, one N-1 return
per speaker, per-speaker levels and the set of speakers currently speaking.
"""

from townhall.mixing.jitter import JitterBuffer, SpeakerBufferState
from townhall.mixing.levels import SpeakingDetector, energy_dbfs, rms_dbfs
from townhall.mixing.limiter import Limiter
from townhall.mixing.mixer import FRAME_SAMPLES, SAMPLE_RATE, TICK_SECONDS, Mixer, MixOutput
from townhall.mixing.stats import MixerStats

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "TICK_SECONDS",
    "JitterBuffer",
    "Limiter",
    "MixOutput",
    "Mixer",
    "MixerStats",
    "SpeakerBufferState",
    "SpeakingDetector",
    "energy_dbfs",
    "rms_dbfs",
]
