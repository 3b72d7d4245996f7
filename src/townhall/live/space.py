"""One live space on this node: WHIP stage → mixer (20 ms ticks) → N−1 returns and the
LL-HLS programme (encoded, packaged and recorded)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..cluster.takeover import Takeover
from ..mixing import Mixer
from ..packaging import PackagingConfig, ProgrammePackager, ProgrammeStore, RecoveredRecording
from ..stage import RtcSettings, StageRoom

logger = logging.getLogger(__name__)

TICK = 0.020
PUSH_TICKS = 1
"""Mixer ticks per packager push: every tick (20 ms), so a part is published within one tick
of its last sample (batching 5 ticks cost up to 100 ms of mouth-to-ear latency)."""


class LiveSpace:
    """Runs the stage, the mixer clock and the programme of one space."""

    def __init__(
        self,
        space_id: str,
        directory: Path,
        rtc: RtcSettings,
        packaging: PackagingConfig,
        *,
        muted: frozenset[str] = frozenset(),
        resume: RecoveredRecording | None = None,
        jitter_ms: int = 40,
        takeover: Takeover | None = None,
    ) -> None:
        self.space_id = space_id
        self.directory = directory
        self._jitter_s = jitter_ms / 1000
        self.mixer = Mixer(jitter_ms=jitter_ms)
        self._muted = set(muted)
        first_msn = resume.next_msn if resume else 0
        first_decode = resume.next_decode_time if resume else 0
        if takeover is not None:  # failover: continue the previous origin's numbering
            first_msn, first_decode = takeover.next_msn, takeover.next_decode_time
        self.packager = ProgrammePackager(
            packaging, first_msn=first_msn, first_decode_time=first_decode
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.programme = ProgrammeStore(
            directory,
            self.packager.init_segment,
            packaging,
            resume=resume,
            first_msn=first_msn,
            discontinuity_sequence=takeover.discontinuity_sequence if takeover else None,
            write_behind=True,
        )
        self.stage = StageRoom(
            space_id, rtc, on_audio=self._on_audio, on_join=self._on_join, on_leave=self._on_leave
        )
        self.levels: dict[str, float] = {}
        self.speaking: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._pending: list[npt.NDArray[np.int16]] = []
        self._pending_wall: float | None = None
        self.started_wall = time.time()

    # -- stage callbacks --------------------------------------------------------------

    def _on_audio(self, speaker_id: str, pcm: npt.NDArray[np.int16], timestamp: int) -> None:
        self.mixer.push(speaker_id, pcm, timestamp, time.monotonic())

    def _on_join(self, speaker_id: str) -> None:
        self.mixer.add_speaker(speaker_id, muted=speaker_id in self._muted)
        logger.info("space %s: %s joined the stage", self.space_id, speaker_id)

    def _on_leave(self, speaker_id: str) -> None:
        self.mixer.remove_speaker(speaker_id)
        self.levels.pop(speaker_id, None)
        logger.info("space %s: %s left the stage", self.space_id, speaker_id)

    # -- control ------------------------------------------------------------------------

    def set_muted(self, speaker_id: str, muted: bool) -> None:
        if muted:
            self._muted.add(speaker_id)
        else:
            self._muted.discard(speaker_id)
        if speaker_id in self.mixer.speakers:
            self.mixer.set_muted(speaker_id, muted)

    async def disconnect(self, speaker_id: str) -> None:
        self.mixer.remove_speaker(speaker_id)
        await self.stage.disconnect(speaker_id)

    def start(self) -> None:
        self.mixer.start(time.monotonic())
        self._task = asyncio.create_task(self._run_clock(), name=f"mix-{self.space_id}")

    async def stop(self) -> None:
        """End the space: close the stage, flush the programme, write the replay."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.stage.close()
        await self._flush(final=True)
        await self.programme.finish()

    async def abandon(self) -> None:
        """Node shutting down while the space is live: keep what is recorded, no replay yet."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.stage.close()

    # -- the clock ------------------------------------------------------------------------

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = time.monotonic()
                due = self.mixer.ticks_due(now)
                for _ in range(due):
                    self._tick_once()
                if len(self._pending) >= PUSH_TICKS:
                    await self._flush()
                wait = TICK - (time.monotonic() - now) if due else TICK / 4
                await asyncio.sleep(max(0.002, wait))
                del loop
                loop = asyncio.get_running_loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("space %s: mixer clock failed", self.space_id)
            raise

    def _tick_once(self) -> None:
        out = self.mixer.tick()
        for speaker_id, pcm in out.returns.items():
            self.stage.send_return(speaker_id, pcm)
        self.levels = dict(out.levels)
        self.speaking = out.speaking
        if self._pending_wall is None:
            # the audio of this tick left the speakers' mouths about a jitter delay ago
            self._pending_wall = time.time() - self._jitter_s
        self._pending.append(out.programme)

    async def _flush(self, final: bool = False) -> None:
        if not self._pending:
            if final:
                await self.programme.publish(self.packager.finish())
            return
        pcm = np.concatenate(self._pending)
        wall = self._pending_wall or time.time()
        self._pending = []
        self._pending_wall = None
        events = self.packager.push(pcm, wall)
        if final:
            events = [*events, *self.packager.finish()]
        if events:
            await self.programme.publish(events)
