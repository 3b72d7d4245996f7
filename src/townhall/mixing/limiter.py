"""Look-ahead-free soft-knee peak limiter, vectorised over several signals at once.

Gain computer (per sample, in dB): below ``ceiling - knee`` the gain is 0 dB; above it the
output level follows ``T + K * (1 - exp(-(L - T) / K))`` which has slope 1 at the knee and
approaches the ceiling asymptotically, so the output never exceeds the ceiling.

Envelope: instant attack, linear-in-dB release. The recursion
``G[n] = min(R[n], G[n-1] + r, 0)`` has the closed form
``G[n] = min(0, n*r + min(G[-1] + r, cummin_k(R[k] - k*r)))``, so a whole 20 ms block of
every row is computed with ``np.minimum.accumulate``; no per-sample Python loop.
"""

import numpy as np
import numpy.typing as npt

from townhall.mixing.constants import FULL_SCALE, SAMPLE_RATE

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class Limiter:
    """Stateless processor; the caller keeps one gain state (dB, <= 0) per signal row."""

    def __init__(
        self,
        *,
        frame_samples: int,
        ceiling_dbfs: float = -1.0,
        knee_db: float = 6.0,
        release_db_per_s: float = 60.0,
    ) -> None:
        if ceiling_dbfs > 0.0 or knee_db <= 0.0 or release_db_per_s <= 0.0:
            raise ValueError("need ceiling_dbfs <= 0, knee_db > 0, release_db_per_s > 0")
        self.ceiling_dbfs = ceiling_dbfs
        self.knee_db = knee_db
        self._threshold_db = ceiling_dbfs - knee_db
        self._db_full_scale = float(20.0 * np.log10(FULL_SCALE))
        self._threshold_lin = float(FULL_SCALE * 10.0 ** (self._threshold_db / 20.0))
        self.ceiling_lin = float(FULL_SCALE * 10.0 ** (ceiling_dbfs / 20.0))
        """Ceiling in int16 sample units."""
        self._release = release_db_per_s / SAMPLE_RATE
        self._ramp = (np.arange(frame_samples, dtype=np.float64) * self._release).astype(np.float32)

    def process(self, block: F32, gain_db: F64) -> bool:
        """Limit ``block`` (rows x frame, int16 sample units) in place.

        ``gain_db`` holds each row's gain at the end of the previous block and is updated.
        Returns True if any row was processed (gain reduction present or releasing).
        """
        peaks = np.maximum.reduce(np.abs(block), axis=1)
        need = (peaks > self._threshold_lin) | (gain_db < 0.0)
        if not need.any():
            return False
        rows = np.flatnonzero(need)
        sub = block[rows]
        level = np.abs(sub)
        np.maximum(level, 1e-3, out=level)
        np.log10(level, out=level)
        level *= 20.0
        level -= self._db_full_scale + self._threshold_db  # dB above the knee start
        np.maximum(level, 0.0, out=level)
        knee = self.knee_db
        # required gain R = K * (1 - exp(-over / K)) - over  (<= 0)
        req = np.exp(level * (-1.0 / knee))
        np.subtract(1.0, req, out=req)
        req *= knee
        req -= level
        req -= self._ramp
        np.minimum.accumulate(req, axis=1, out=req)
        start = (gain_db[rows] + self._release).astype(np.float32)
        np.minimum(req, start[:, None], out=req)
        req += self._ramp
        np.minimum(req, 0.0, out=req)
        gain_db[rows] = req[:, -1]
        req *= np.float32(1.0 / 20.0)
        np.power(np.float32(10.0), req, out=req)
        sub *= req
        block[rows] = sub
        # tiny float error must not push a sample past the ceiling
        np.clip(block[rows], -self.ceiling_lin, self.ceiling_lin, out=sub)
        block[rows] = sub
        gain_db[gain_db > -1e-4] = 0.0
        return True
