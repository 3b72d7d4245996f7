"""Standby origins: a second node follows each live space and takes it over when its origin dies.

Election: every heartbeat, a node that runs no copy of a live space claims
``th:standby:{space}`` (SET NX with the origin lease TTL, renewed each beat). The holder is
alive by construction: a dead node stops renewing and its claim expires.

Following: the standby reads the origin's live playlist like an edge does (blocking reloads,
straight to the origin with ``x-townhall-forwarded-by`` so it is neither forwarded nor counted
as a listener), writes every complete segment it sees into ``spaces/{id}/standby/`` (same layout
and ``index.jsonl`` as a recording, so :func:`townhall.packaging.recover` reads it) and keeps
the newest position it saw.

Takeover: when the origin lease is gone (expired: not renewed for ``origin_lease_ms``) *and*
the origin has not answered for ``stale_after`` seconds, the standby claims the origin and the
media hub starts the space here, continuing from :func:`townhall.cluster.takeover.plan_takeover`.
Both conditions are needed: after a Redis restart without persistence the lease is missing for
a moment while the origin is fine (it re-asserts its lease on its next beat).

Orphans: a live space whose origin died before any standby followed it (within its first beat,
or while the only other node was down) has no copy to continue from; nor has a standby that
started following it after it died (it saw nothing). The latter takes over like any standby,
at the orphan's position (below). Otherwise, when its lease is gone,
the node that recorded it (``th:home``) has no liveness key, and both still hold one beat later,
a node claims the standby key and takes it over at a number past anything the dead origin can
have published (:func:`townhall.cluster.takeover.plan_orphan_takeover`, from the wall clock).
A wiped Redis never looks like an orphan: the home key is gone too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from redis.asyncio import Redis

from ..listen.playlist import MediaPlaylist, PlaylistError, parse_media_playlist
from ..packaging.fmp4 import fragment_infos
from ..packaging.playlist import INIT_URI
from ..packaging.recorder import RecordedSegment, Recorder, read_timescale
from ..tasks import stop_task
from .forward import FORWARDED_BY
from .health import node_key
from .registry import NodeInfo, RedisRegistry
from .takeover import Takeover, plan_orphan_takeover, plan_takeover

logger = logging.getLogger(__name__)

STALE_AFTER = 1.5
"""Seconds without an answer from the origin before the standby believes it is gone."""
WATCH_INTERVAL = 0.25
"""How often a standby checks the lease of a space it follows whose origin went quiet."""

_DSN = re.compile(r"^#EXT-X-DISCONTINUITY-SEQUENCE:([0-9]+)$", re.MULTILINE)
_DISCONTINUITY = re.compile(r"^#EXT-X-DISCONTINUITY$", re.MULTILINE)
_HINT = re.compile(r"part([0-9]+)\.([0-9]+)\.m4s$")

# KEYS: standby key. ARGV: node json, ttl ms. 1 = ours (kept or re-created), 0 = another's.
_KEEP = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def standby_key(space_id: str) -> str:
    return f"th:standby:{space_id}"


@dataclass(frozen=True)
class StandbyHooks:
    """What the media hub lends the standby manager."""

    live_spaces: Callable[[], Awaitable[list[str]]]
    """Ids of the spaces that are live (from the store)."""
    runs: Callable[[str], bool]
    """Whether this node runs the space's media."""
    directory: Callable[[str], Path]
    """Where this node keeps its standby copy of a space."""
    ticket: Callable[[str], str]
    """A listen ticket for the space (its media may be ticketed)."""
    take_over: Callable[[str, Takeover], Awaitable[bool]]
    """Claim the origin and start the space here from the standby copy; False if another
    node got it first."""
    started_at: Callable[[str], Awaitable[float | None]]
    """When the live space started (Unix time), or None."""


class SpaceFollower:
    """Follows one space's programme on its origin and records its complete segments."""

    def __init__(
        self,
        space_id: str,
        directory: Path,
        origin: NodeInfo,
        me: NodeInfo,
        ticket: Callable[[str], str],
        *,
        parts_per_segment: int,
        segment_samples: int,
        fsync: bool = True,
        registry: RedisRegistry | None = None,
    ) -> None:
        self.space_id = space_id
        self.directory = directory
        self.origin = origin
        self._me = me
        self._ticket = ticket
        self._parts_per_segment = parts_per_segment
        self._segment_samples = segment_samples
        self._fsync = fsync
        self._registry = registry
        self.last_seen: tuple[int, int] | None = None
        """Newest (msn, part) seen in the origin's playlist."""
        self.last_recorded: tuple[int, int] | None = None
        """(msn, end decode time) of the newest segment recorded here."""
        self.discontinuity_sequence = 0
        """Discontinuity sequence number of the newest segment seen."""
        self.last_answer = time.monotonic()
        """Monotonic time of the origin's last playlist answer."""
        self.ended = False
        """The origin's playlist ended (EXT-X-ENDLIST)."""
        self._recorder: Recorder | None = None
        self._timescale = 0

    def stale(self, now: float, after: float = STALE_AFTER) -> bool:
        """The origin has not answered for ``after`` seconds."""
        return now - self.last_answer > after

    def plan(self) -> Takeover | None:
        return plan_takeover(
            last_seen=self.last_seen,
            last_recorded=self.last_recorded,
            parts_per_segment=self._parts_per_segment,
            segment_samples=self._segment_samples,
            discontinuity_sequence=self.discontinuity_sequence,
        )

    async def run(self) -> None:
        """Follow until the playlist ends or the task is cancelled; errors are retried."""
        timeout = httpx.Timeout(connect=1.0, read=10.0, write=5.0, pool=5.0)
        headers = {FORWARDED_BY: self._me.node_id}
        ticket = self._ticket(self.space_id)
        delay = 0.1
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, headers=headers) as http:
            params: dict[str, int] = {}
            while not self.ended:
                base = f"{self.origin.url}/hls/{self.space_id}/t/{ticket}/"
                try:
                    if self._recorder is None:
                        await self._fetch_init(http, base)
                    r = await http.get(base + "live.m3u8", params=params)
                    if r.status_code in (401, 403):
                        ticket = self._ticket(self.space_id)
                    if r.status_code != 200:
                        raise httpx.HTTPStatusError("not 200", request=r.request, response=r)
                    pl = parse_media_playlist(r.text)
                    self.last_answer = time.monotonic()
                    self._observe(pl, r.text)
                    await self._record_new(http, base, pl)
                    params = self._next_request(pl)
                    delay = 0.1
                except (httpx.HTTPError, PlaylistError, ValueError) as exc:
                    logger.debug(
                        "standby of %s: origin %s: %r", self.space_id, self.origin.url, exc
                    )
                    params = {}
                    await asyncio.sleep(delay)
                    delay = min(1.0, delay * 2)
                    await self._refresh_origin()

    async def _refresh_origin(self) -> None:
        if self._registry is None:
            return
        with contextlib.suppress(Exception):  # Redis away: keep the origin we know
            owner = await self._registry.owner_of(self.space_id)
            if owner is not None and owner != self._me:
                self.origin = owner

    async def _fetch_init(self, http: httpx.AsyncClient, base: str) -> None:
        r = await http.get(base + INIT_URI)
        r.raise_for_status()
        recorder = Recorder(self.directory, fsync=self._fsync)
        await asyncio.to_thread(recorder.write_init, r.content)
        self._timescale = read_timescale(self.directory)
        self._recorder = recorder

    def _observe(self, pl: MediaPlaylist, text: str) -> None:
        parts = pl.parts()
        if parts:
            seen = parts[-1].position
        elif pl.segments:
            seen = (pl.segments[-1].msn, self._parts_per_segment - 1)
        else:
            return
        if self.last_seen is None or seen > self.last_seen:
            self.last_seen = seen
        m = _DSN.search(text)
        self.discontinuity_sequence = (int(m.group(1)) if m else 0) + len(
            _DISCONTINUITY.findall(text)
        )
        self.ended = pl.ended

    async def _record_new(self, http: httpx.AsyncClient, base: str, pl: MediaPlaylist) -> None:
        assert self._recorder is not None
        done = self.last_recorded[0] if self.last_recorded is not None else -1
        for seg in pl.segments:
            if seg.msn <= done or seg.uri is None:
                continue
            r = await http.get(base + seg.uri)
            if r.status_code == 404:
                continue  # slid out of the origin's memory and disk: nothing to keep
            r.raise_for_status()
            infos = fragment_infos(r.content)
            if not infos:
                continue
            ticks = sum(i.duration for i in infos)
            pdt = datetime.fromtimestamp(seg.pdt or time.time(), UTC)
            rec = RecordedSegment(
                seg.msn, pdt, infos[0].base_decode_time, ticks, self._timescale, len(r.content)
            )
            try:
                await asyncio.to_thread(self._recorder.write_segment, rec, r.content)
            except FileExistsError:
                pass
            self.last_recorded = (rec.msn, rec.end_decode_time)
            done = rec.msn

    def _next_request(self, pl: MediaPlaylist) -> dict[str, int]:
        if pl.preload_hint is not None and (m := _HINT.search(pl.preload_hint)):
            return {"_HLS_msn": int(m.group(1)), "_HLS_part": int(m.group(2))}
        return {}


class StandbyManager:
    """Claims standby roles for live spaces run elsewhere, follows them, takes them over."""

    def __init__(
        self,
        redis: Redis,
        registry: RedisRegistry,
        me: NodeInfo,
        hooks: StandbyHooks,
        *,
        lease_ms: int,
        heartbeat_ms: int,
        parts_per_segment: int,
        segment_samples: int,
        sample_rate: int = 48_000,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._registry = registry
        self._me = me
        self._hooks = hooks
        self._lease_ms = lease_ms
        self._interval = heartbeat_ms / 1000
        self._parts_per_segment = parts_per_segment
        self._segment_samples = segment_samples
        self._segment_seconds = segment_samples / sample_rate
        self._clock = clock
        self._orphans: set[str] = set()
        """Spaces seen orphaned on the last beat (taken over if they still are)."""
        self._fsync = fsync
        self._keep = redis.register_script(_KEEP)
        self.followers: dict[str, SpaceFollower] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self.takeovers: list[tuple[str, Takeover, float]] = []
        """(space, plan, seconds from the origin's last answer to the new origin running; NaN
        for an orphan, whose origin nobody was watching)."""

    async def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="standby")

    async def close(self) -> None:
        await stop_task(self._loop)
        self._loop = None
        for space_id in list(self._tasks):
            await self._stop(space_id, keep_files=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the store away: try again next beat
                logger.warning("standby round failed: %s", exc)
            await asyncio.sleep(self._interval)

    async def tick(self) -> None:
        """One round: follow new spaces, renew claims, drop ended spaces."""
        live = set(await self._hooks.live_spaces())
        for space_id in list(self._tasks):
            if space_id not in live or self._hooks.runs(space_id):
                await self._stop(space_id, keep_files=False)
        for space_id in list(self._tasks):
            kept = await self._keep(
                keys=[standby_key(space_id)], args=[self._me.to_json(), self._lease_ms]
            )
            if not int(kept):
                logger.info("another node is the standby of space %s now", space_id)
                await self._stop(space_id, keep_files=False)
        orphans: set[str] = set()
        for space_id in sorted(live - set(self._tasks)):
            if self._hooks.runs(space_id):
                continue
            owner = await self._registry.owner_of(space_id)
            if owner is None and await self._orphaned(space_id):
                orphans.add(space_id)
                if space_id in self._orphans:  # still orphaned one beat later
                    await self._adopt_orphan(space_id)
                continue
            if owner is None or owner.node_id == self._me.node_id:
                continue
            claimed = await self._redis.set(
                standby_key(space_id), self._me.to_json(), nx=True, px=self._lease_ms
            )
            if claimed:
                self._follow(space_id, owner)
        self._orphans = orphans

    async def _orphaned(self, space_id: str) -> bool:
        """No origin lease (checked by the caller), and the node that recorded the space is
        not alive: nobody runs it and nobody will re-assert its lease."""
        home = await self._registry.home_node(space_id)
        if home is None or home.node_id == self._me.node_id:
            return False  # not claimed yet (a start in progress), or ours to resume
        return not await self._redis.exists(node_key(home.node_id))

    async def _orphan_plan(self, space_id: str) -> Takeover | None:
        """Where an orphan continues: past every number its origin can have used."""
        started = await self._hooks.started_at(space_id)
        if started is None:
            return None
        return plan_orphan_takeover(
            started_at=started,
            now=self._clock(),
            segment_seconds=self._segment_seconds,
            segment_samples=self._segment_samples,
        )

    async def _adopt_orphan(self, space_id: str) -> None:
        """Take over a space nobody followed."""
        plan = await self._orphan_plan(space_id)
        if plan is None:
            return
        claimed = await self._redis.set(
            standby_key(space_id), self._me.to_json(), nx=True, px=self._lease_ms
        )
        if not claimed:
            return  # another node is adopting it
        logger.warning(
            "space %s is orphaned (its origin died before any standby followed it): taking it "
            "over at msn %d",
            space_id,
            plan.next_msn,
        )
        try:
            if await self._hooks.take_over(space_id, plan):
                self.takeovers.append((space_id, plan, math.nan))  # when it went quiet: unknown
        finally:
            with contextlib.suppress(Exception):
                await self._redis.delete(standby_key(space_id))

    def _follow(self, space_id: str, origin: NodeInfo) -> None:
        follower = SpaceFollower(
            space_id,
            self._hooks.directory(space_id),
            origin,
            self._me,
            self._hooks.ticket,
            parts_per_segment=self._parts_per_segment,
            segment_samples=self._segment_samples,
            fsync=self._fsync,
            registry=self._registry,
        )
        self.followers[space_id] = follower
        self._tasks[space_id] = asyncio.create_task(
            self._guard(follower), name=f"standby-{space_id}"
        )
        logger.info("standby of space %s (origin %s)", space_id, origin.node_id)

    async def _guard(self, follower: SpaceFollower) -> None:
        """Run the follower and watch the origin; take over when it is gone."""
        space_id = follower.space_id
        task = asyncio.create_task(follower.run(), name=f"follow-{space_id}")
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=WATCH_INTERVAL)
                if task.done() or not follower.stale(time.monotonic()):
                    continue
                try:
                    owner = await self._registry.owner_of(space_id)
                except Exception:
                    continue  # Redis away: no takeover without seeing the lease gone
                if owner is not None:
                    continue
                plan = follower.plan()
                if plan is None:  # it died before this standby saw anything: an orphan
                    plan = await self._orphan_plan(space_id)
                    if plan is None:
                        continue
                await stop_task(task)
                quiet = time.monotonic() - follower.last_answer
                logger.warning(
                    "origin %s of space %s is gone (quiet %.1f s, lease expired): taking over "
                    "at msn %d",
                    follower.origin.node_id,
                    space_id,
                    quiet,
                    plan.next_msn,
                )
                if await self._hooks.take_over(space_id, plan):
                    elapsed = time.monotonic() - follower.last_answer
                    self.takeovers.append((space_id, plan, elapsed))
                    with contextlib.suppress(Exception):
                        await self._redis.delete(standby_key(space_id))
                    logger.warning(
                        "took space %s over %.2f s after its origin went quiet", space_id, elapsed
                    )
                return
        finally:
            await stop_task(task)
            self.followers.pop(space_id, None)
            self._tasks.pop(space_id, None)
            if follower.ended:  # the space ended: its recording is the origin's
                await asyncio.to_thread(_remove_copy, follower.directory)

    async def _stop(self, space_id: str, *, keep_files: bool) -> None:
        task = self._tasks.pop(space_id, None)
        follower = self.followers.pop(space_id, None)
        if task is not None:
            await stop_task(task)
        if follower is not None and not keep_files:
            await asyncio.to_thread(_remove_copy, follower.directory)


def _remove_copy(directory: Path) -> None:
    """Delete a standby copy, and the space's folder if nothing else is in it."""
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        directory.parent.rmdir()
