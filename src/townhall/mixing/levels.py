"""Per-speaker level metering (RMS dBFS per tick) and speaking detection with hangover."""

import math

import numpy as np
import numpy.typing as npt

from townhall.mixing.constants import FULL_SCALE

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

_DB_FULL_SCALE = float(20.0 * np.log10(FULL_SCALE))


def rms_dbfs(block: F32) -> F64:
    """RMS level of each row of ``block`` (int16 sample units) in dBFS; silence is -inf.

    0 dBFS is a full-scale square wave; a full-scale sine reads about -3 dBFS.
    """
    energy = np.einsum("ij,ij->i", block, block, dtype=np.float64)
    live = energy > 0.0
    np.maximum(energy, 1e-30, out=energy)
    np.log10(energy, out=energy)
    energy *= 10.0
    energy -= _DB_FULL_SCALE + 10.0 * np.log10(block.shape[1])
    np.minimum(energy, 0.0, out=energy)
    return np.where(live, energy, -np.inf)


def energy_dbfs(energy: float, samples: int) -> float:
    """dBFS of a block whose sum of squares (int16 units) is ``energy``; silence is -inf."""
    if energy <= 0.0:
        return -math.inf
    return min(10.0 * math.log10(energy / samples) - _DB_FULL_SCALE, 0.0)


class SpeakingDetector:
    """Speaking = level above ``threshold_dbfs`` now or within the last ``hangover_ticks``."""

    __slots__ = ("threshold_dbfs", "hangover_ticks", "_last_voiced")

    def __init__(self, *, threshold_dbfs: float, hangover_ticks: int) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.hangover_ticks = hangover_ticks
        self._last_voiced: int | None = None

    def update(self, tick: int, level_dbfs: float) -> bool:
        """Feed this tick's level; return whether the speaker counts as speaking."""
        if level_dbfs > self.threshold_dbfs:
            self._last_voiced = tick
            return True
        return self._last_voiced is not None and tick - self._last_voiced <= self.hangover_ticks

    def reset(self) -> None:
        """Forget voice activity (e.g. on mute)."""
        self._last_voiced = None
