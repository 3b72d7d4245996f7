"""All live spaces of this node, driven by the control plane's events."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..api.services import Services
from ..auth import Grant
from ..cluster.events import RemoteEvent
from ..cluster.registry import RedisRegistry
from ..cluster.standby import StandbyHooks, StandbyManager
from ..cluster.takeover import Takeover
from ..delivery.names import MediaName
from ..packaging import PackagingConfig, ProgrammeStore, RecoveredRecording, recover
from ..packaging.config import AAC_FRAME_SAMPLES
from ..packaging.playlist import VOD_PLAYLIST, segment_uri
from ..packaging.recorder import Recorder, scan_recording
from ..spaces import Space, SpaceState
from ..stage import RtcSettings
from .space import LiveSpace

logger = logging.getLogger(__name__)

_DISCONNECT_KINDS = {"speaker_removed", "speaker_left", "identity_blocked"}
_REMOTE_KINDS = {
    "speaker_muted",
    "speaker_unmuted",
    "speaker_joined",
    "space_ended",
    *_DISCONNECT_KINDS,
}
"""Events from other nodes that change what this origin's stage and mixer do."""


FINISHED_GRACE_S = 60.0
"""How long an ended programme's last state is still served from memory (longer than any
player's buffer: standard HLS starts ≈ 12 s behind live)."""


class MediaHub:
    """Starts a :class:`LiveSpace` when a space goes live, ends it with the space, and keeps
    the stage in step with mutes, removals and blocks."""

    def __init__(self, services: Services) -> None:
        self.services = services
        cfg = services.config
        self.rtc = RtcSettings(announced_address=cfg.rtc_address, ice_servers=cfg.ice_servers)
        self.packaging = PackagingConfig(
            part_frames=cfg.part_frames,
            parts_per_segment=cfg.parts_per_segment,
            bitrate=cfg.bitrate,
        )
        self._live: dict[str, LiveSpace] = {}
        self._finished: dict[str, tuple[float, ProgrammeStore]] = {}
        """Programmes that ended here lately (monotonic end time, finished store): listeners
        still behind the live edge get the rest and the ENDLIST (:data:`FINISHED_GRACE_S`)."""
        self._cluster = services.cluster
        self._elsewhere: set[str] = set()
        """Spaces with a local recording that another node runs now (after a failover)."""
        self.standby: StandbyManager | None = None
        """Follows spaces run elsewhere and takes them over (cluster nodes only)."""

    def directory(self, space_id: str) -> Path:
        return self.services.config.data / "spaces" / space_id / "hls"

    def standby_directory(self, space_id: str) -> Path:
        """Where this node keeps its standby copy of a space another node runs."""
        return self.services.config.data / "spaces" / space_id / "standby"

    # -- lifecycle --------------------------------------------------------------------

    async def startup(self) -> None:
        """Resume spaces that were live when this node stopped (their recording continues)."""
        for space in await self.services.store.list_spaces({SpaceState.LIVE}, limit=10_000):
            if self._cluster.registry.shared and not self.directory(space.id).exists():
                continue  # another node's space (taking over is failover's job)
            try:
                await self._go_live(space)
            except Exception:
                logger.exception("could not resume live space %s", space.id)
        registry = self._cluster.registry
        if isinstance(registry, RedisRegistry):
            registry.on_lost = self._lost
            cfg = self.services.config
            self.standby = StandbyManager(
                registry.redis,
                registry,
                self._cluster.node,
                StandbyHooks(
                    live_spaces=self._live_ids,
                    runs=lambda space_id: space_id in self._live,
                    directory=self.standby_directory,
                    ticket=self._ticket,
                    take_over=self.take_over,
                    started_at=self._started_at,
                ),
                lease_ms=cfg.origin_lease_ms,
                heartbeat_ms=cfg.heartbeat_ms,
                parts_per_segment=self.packaging.parts_per_segment,
                segment_samples=self.packaging.segment_frames * AAC_FRAME_SAMPLES,
                sample_rate=self.packaging.sample_rate,
                fsync=self.packaging.fsync,
            )
            await self.standby.start()

    async def shutdown(self) -> None:
        if self.standby is not None:
            await self.standby.close()
        for space_id, live in list(self._live.items()):
            await live.abandon()
            await self._let_go(space_id)
        self._live.clear()

    async def space_changed(self, space: Space, events: Sequence[Any]) -> None:
        kinds = [e.kind for e in events]
        if "space_started" in kinds:
            await self._go_live(space)
        live = self._live.get(space.id)
        if live is not None:
            for event in events:
                await self._apply(live, space, event)
        if "space_ended" in kinds:
            await self._end(space.id)

    async def _remote_event(self, space_id: str, event: dict[str, Any]) -> None:
        """An event another node published for a space this node runs (e.g. a mute made
        through another API node): re-read the space and apply it like a local one."""
        if event.get("kind") not in _REMOTE_KINDS or space_id not in self._live:
            return
        stored = await self.services.store.get_space(space_id)
        if stored is not None:
            await self.space_changed(stored.space, [RemoteEvent(event)])

    async def _apply(self, live: LiveSpace, space: Space, event: Any) -> None:
        if event.kind in ("speaker_muted", "speaker_unmuted"):
            live.set_muted(event.identity, event.kind == "speaker_muted")
        elif event.kind == "speaker_joined":
            live.set_muted(event.identity, space.is_muted(event.identity))
        elif event.kind in _DISCONNECT_KINDS:
            who = getattr(event, "identity", None)
            if who and not space.is_on_stage(who):
                await live.disconnect(who)

    # -- failover ---------------------------------------------------------------------------

    async def _live_ids(self) -> list[str]:
        spaces = await self.services.store.list_spaces({SpaceState.LIVE}, limit=10_000)
        return [s.id for s in spaces]

    async def _started_at(self, space_id: str) -> float | None:
        stored = await self.services.store.get_space(space_id)
        started = stored.space.started_at if stored is not None else None
        return started.timestamp() if started is not None else None

    def _ticket(self, space_id: str) -> str:
        return self.services.issuer.issue(
            subject=f"node:{self._cluster.node.node_id}",
            space_id=space_id,
            grants={Grant.LISTEN},
            ttl=self.services.config.ticket_ttl,
            now=time.time(),
        )

    async def take_over(self, space_id: str, plan: Takeover) -> bool:
        """The standby's move: claim the dead origin's space and run it here, continuing
        from the standby copy at ``plan``. False if the space ended or another node won."""
        stored = await self.services.store.get_space(space_id)
        if stored is None or stored.space.state is not SpaceState.LIVE:
            return False
        await self._go_live(stored.space, takeover=plan)
        return space_id in self._live

    def _adopt_standby_copy(self, space_id: str) -> None:
        """Make the standby copy this node's recording of the space (sync file work)."""
        copy, target = self.standby_directory(space_id), self.directory(space_id)
        if not copy.exists():
            return
        if not any(target.glob("seg*.m4s")):
            shutil.rmtree(target, ignore_errors=True)
            copy.rename(target)
            return
        recorder = Recorder(target, fsync=self.packaging.fsync)  # an older copy of our own
        for seg in scan_recording(copy):
            if not (target / seg.uri).exists():
                recorder.write_segment(seg, (copy / seg.uri).read_bytes())
        shutil.rmtree(copy, ignore_errors=True)

    async def _lost(self, space_id: str) -> None:
        """Another node holds this space's origin lease now: stop running it here."""
        live = self._live.pop(space_id, None)
        if live is None:
            return
        logger.error("space %s: another node took the origin over; stopping it here", space_id)
        self._elsewhere.add(space_id)
        await live.abandon()
        await self.services.bus.unwatch(space_id)

    async def _go_live(self, space: Space, takeover: Takeover | None = None) -> None:
        if space.id in self._live:
            return
        me = self._cluster.node
        owner = await self._cluster.registry.claim_origin(space.id, me)
        if owner != me:
            logger.info("space %s runs on node %s (%s)", space.id, owner.node_id, owner.url)
            if self.directory(space.id).exists():
                self._elsewhere.add(space.id)
            return
        self._elsewhere.discard(space.id)
        directory = self.directory(space.id)
        if takeover is not None:
            await asyncio.to_thread(self._adopt_standby_copy, space.id)
        resume: RecoveredRecording | None = None
        if any(directory.glob("seg*.m4s")):
            resume = ProgrammeStore.recover(directory, self.packaging)
        live = LiveSpace(
            space.id,
            directory,
            self.rtc,
            self.packaging,
            muted=space.muted,
            resume=resume,
            takeover=takeover,
        )
        live.start()
        self._live[space.id] = live
        await self.services.bus.watch(space.id, self._remote_event)
        logger.info(
            "space %s is live on this node (resume=%s, takeover=%s)",
            space.id,
            resume is not None,
            takeover,
        )

    async def _end(self, space_id: str) -> None:
        live = self._live.pop(space_id, None)
        if live is not None:
            await live.stop()
            now = time.monotonic()
            for sid, (ended_at, _) in list(self._finished.items()):
                if now - ended_at >= FINISHED_GRACE_S:
                    del self._finished[sid]
            self._finished[space_id] = (now, live.programme)
            await self._let_go(space_id)

    async def _let_go(self, space_id: str) -> None:
        await self.services.bus.unwatch(space_id)
        try:
            await self._cluster.registry.release(space_id, self._cluster.node)
        except Exception:  # the lease expires by itself
            logger.exception("could not release the origin of space %s", space_id)

    # -- queries for the routes ----------------------------------------------------------

    def has_media(self, space_id: str) -> bool:
        """True if this node runs the space or holds its recording (and the space did not
        move to another node since)."""
        if space_id in self._live:
            return True
        return space_id not in self._elsewhere and self.directory(space_id).exists()

    def live_space(self, space_id: str) -> LiveSpace | None:
        return self._live.get(space_id)

    def programme(self, space_id: str) -> ProgrammeStore | None:
        """The space's programme while it runs here, and for :data:`FINISHED_GRACE_S` after
        it ended here (finished: its playlists carry EXT-X-ENDLIST, so a standard-HLS
        listener ≈ 12 s behind still gets the last segments and a clean end, not a 404)."""
        live = self._live.get(space_id)
        if live is not None:
            return live.programme
        kept = self._finished.get(space_id)
        if kept is not None and time.monotonic() - kept[0] < FINISHED_GRACE_S:
            return kept[1]
        return None

    def levels(self, space_id: str) -> tuple[dict[str, float], frozenset[str]]:
        live = self._live.get(space_id)
        if live is None:
            return {}, frozenset()
        return dict(live.levels), live.speaking

    def replay_text(self, space_id: str) -> str | None:
        directory = self.directory(space_id)
        path = directory / VOD_PLAYLIST
        if path.exists():
            return path.read_text()
        if any(directory.glob("seg*.m4s")):  # ended by a crash: rebuild from the files
            recover(directory, nominal_duration=self.packaging.segment_duration)
            return path.read_text() if path.exists() else None
        return None

    def recorded_file(self, space_id: str, name: MediaName) -> bytes | None:
        directory = self.directory(space_id)
        if name.kind == "init":
            path = directory / "init.mp4"
        elif name.kind == "segment":
            path = directory / segment_uri(name.msn)
        else:
            return None
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
