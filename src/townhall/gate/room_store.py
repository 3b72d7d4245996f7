"""Waiting-room state per space: in memory (embedded node) or in Redis (several nodes).

Both run the semantics of :class:`~townhall.gate.waiting_room.WaitingRoom`: the memory
store holds one core per space; the Redis store keeps the same numbers (``started_at``,
``prequeue``, ``arrivals``, ``frontier``, ``updated``, plus an operator's ``rate`` and
``capacity`` overrides) in one hash and applies each step in one Lua script, so every node
hands out sequence numbers from the same counter and sees the same frontier. The room
banks at most one second of admissions (``burst = max(1, ⌊rate⌋)``).

An arrival is decided *inside* the store: if the room has started it gets a sequence
number, otherwise a place in the pre-queue. A node whose cached view still says
"scheduled" can therefore never add to a pre-queue that was already shuffled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from .waiting_room import Place, WaitingRoom

PREFIX = "th:gate:room:"
ROOM_TTL = 2 * 24 * 3600
DRAW_SCALE = 1_000_000


def burst_for(rate: float) -> int:
    return max(1, math.floor(rate))


@dataclass(frozen=True)
class Entry:
    """Where a new arrival was put."""

    seq: int | None
    """Sequence number when the room had started; None for a pre-queue arrival."""
    place: Place
    """Where they stand now."""


@dataclass(frozen=True)
class Settings:
    """A room's admission settings."""

    rate: float
    """New listeners admitted per second."""
    capacity: int | None
    """Active listeners above which admission pauses; None for no cap."""


class RoomStore(Protocol):
    """Waiting rooms of every space."""

    async def enter(
        self, space_id: str, now: float, *, live: bool, draw: int, active: int
    ) -> Entry: ...

    async def place(
        self, space_id: str, now: float, *, seq: int | None, draw: int | None, live: bool,
        active: int,
    ) -> Place: ...  # fmt: skip

    async def configure(self, space_id: str, *, rate: float, capacity: int | None) -> None: ...

    async def settings(self, space_id: str) -> Settings: ...


def _pre_place(prequeue: int, draw: int, rate: float) -> Place:
    """Indicative place of a pre-queue draw before the start."""
    position = draw * prequeue // DRAW_SCALE + 1
    return Place(False, position, position / rate)


class MemoryRooms:
    """One :class:`WaitingRoom` core per space."""

    def __init__(self, rate: float, capacity: int | None) -> None:
        self.rate = rate
        self.capacity = capacity
        self._rooms: dict[str, WaitingRoom] = {}

    def room(self, space_id: str) -> WaitingRoom:
        room = self._rooms.get(space_id)
        if room is None:
            if len(self._rooms) > 100_000:
                self._rooms.clear()
            room = self._rooms[space_id] = WaitingRoom(
                self.rate, burst_for(self.rate), self.capacity
            )
        return room

    def enter_now(self, space_id: str, now: float, *, live: bool, draw: int, active: int) -> Entry:
        room = self.room(space_id)
        if live:
            room.start(now)
        if room.state.started_at is None:
            room.arrive_early(draw / DRAW_SCALE)
            return Entry(None, _pre_place(room.state.prequeue, draw, room.rate))
        seq = room.arrive(now, active)
        return Entry(seq, room.place(seq, now, active))

    async def enter(
        self, space_id: str, now: float, *, live: bool, draw: int, active: int
    ) -> Entry:
        return self.enter_now(space_id, now, live=live, draw=draw, active=active)

    async def place(
        self, space_id: str, now: float, *, seq: int | None, draw: int | None, live: bool,
        active: int,
    ) -> Place:  # fmt: skip
        room = self.room(space_id)
        if live:
            room.start(now)
        if room.state.started_at is None:
            if seq is not None:  # a room that lost its state (restart): indicative only
                return Place(False, seq + 1, (seq + 1) / room.rate)
            assert draw is not None
            return _pre_place(room.state.prequeue, draw, room.rate)
        if seq is None:
            assert draw is not None
            seq = room.prequeue_seq(draw / DRAW_SCALE)
        return room.place(seq, now, active)

    async def configure(self, space_id: str, *, rate: float, capacity: int | None) -> None:
        room = self.room(space_id)
        room.rate, room.burst, room.capacity = rate, burst_for(rate), capacity

    async def settings(self, space_id: str) -> Settings:
        room = self.room(space_id)
        return Settings(room.rate, room.capacity)


# KEYS[1]: the room hash.  ARGV: op ('enter' | 'place' | 'configure' | 'settings'), now,
# live (0/1), active, default rate, default capacity (-1: none), seq (-1: none),
# draw (-1: none).  Returns {admitted, position, eta, seq (-1 for pre-queue)} or settings.
_ROOM = """
local h = KEYS[1]
local op = ARGV[1]
local v = redis.call('HMGET', h, 'started_at', 'prequeue', 'arrivals', 'frontier', 'updated',
                      'rate', 'capacity')
local rate = tonumber(v[6] or ARGV[5])
local cap = tonumber(v[7] or ARGV[6])
if op == 'configure' then
  redis.call('HSET', h, 'rate', ARGV[5], 'capacity', ARGV[6])
  redis.call('EXPIRE', h, tonumber(ARGV[9]))
  return 1
end
if op == 'settings' then return {tostring(rate), tostring(cap)} end
local now = tonumber(ARGV[2])
local live = ARGV[3] == '1'
local active = tonumber(ARGV[4])
local seq = tonumber(ARGV[7])
local draw = tonumber(ARGV[8])
local started = tonumber(v[1])
local prequeue = tonumber(v[2] or 0)
local arrivals = tonumber(v[3] or 0)
local frontier = tonumber(v[4] or 0)
local updated = tonumber(v[5] or 0)
local burst = math.max(1, math.floor(rate))
local full = cap >= 0 and active >= cap
if live and not started then
  started, updated, frontier = now, now, burst
end
local function save()
  redis.call('HSET', h, 'prequeue', prequeue, 'arrivals', arrivals,
             'frontier', string.format('%.17g', frontier),
             'updated', string.format('%.17g', updated))
  if started then redis.call('HSET', h, 'started_at', string.format('%.17g', started)) end
  redis.call('EXPIRE', h, tonumber(ARGV[9]))
end
local function pre_place(d)
  local position = math.floor(d * prequeue / 1000000) + 1
  return {0, position, string.format('%.17g', position / rate), -1}
end
if not started then
  if op == 'enter' then prequeue = prequeue + 1; save() end
  if seq >= 0 then return {0, seq + 1, string.format('%.17g', (seq + 1) / rate), seq} end
  return pre_place(draw)
end
-- advance the frontier
local elapsed = math.max(0, now - updated)
updated = math.max(updated, now)
if not full then
  frontier = math.max(frontier, math.min(frontier + elapsed * rate, prequeue + arrivals + burst))
end
if op == 'enter' then
  seq = prequeue + arrivals
  arrivals = arrivals + 1
elseif seq < 0 then
  seq = math.floor(draw / 1000000 * prequeue)
end
save()
if seq < frontier and not full then return {1, 0, '0', seq} end
if full and seq < frontier then return {0, 1, string.format('%.17g', 1 / rate), seq} end
local position = math.floor(seq - frontier) + 1
return {0, position, string.format('%.17g', position / rate), seq}
"""


class RedisRooms:
    """Waiting rooms in Redis: one hash per space, each step one Lua script."""

    def __init__(self, redis: Redis, rate: float, capacity: int | None) -> None:
        self._script = redis.register_script(_ROOM)
        self.rate = rate
        self.capacity = capacity

    async def _call(
        self, op: str, space_id: str, now: float = 0.0, *, live: bool = False, active: int = 0,
        seq: int | None = None, draw: int | None = None, rate: float | None = None,
        capacity: int | None = None,
    ) -> list[object]:  # fmt: skip
        cap = capacity if rate is not None else self.capacity
        args = [
            op,
            repr(now),
            "1" if live else "0",
            str(active),
            repr(rate if rate is not None else self.rate),
            str(-1 if cap is None else cap),
            str(-1 if seq is None else seq),
            str(-1 if draw is None else draw),
            str(ROOM_TTL),
        ]
        result = await self._script(keys=[PREFIX + space_id], args=args)
        return list(result) if isinstance(result, list) else [result]

    @staticmethod
    def _place(raw: list[object]) -> Place:
        return Place(bool(int(str(raw[0]))), int(str(raw[1])), float(_text(raw[2])))

    async def enter(
        self, space_id: str, now: float, *, live: bool, draw: int, active: int
    ) -> Entry:
        raw = await self._call("enter", space_id, now, live=live, active=active, draw=draw)
        seq = int(str(raw[3]))
        return Entry(None if seq < 0 else seq, self._place(raw))

    async def place(
        self, space_id: str, now: float, *, seq: int | None, draw: int | None, live: bool,
        active: int,
    ) -> Place:  # fmt: skip
        raw = await self._call("place", space_id, now, live=live, active=active, seq=seq, draw=draw)
        return self._place(raw)

    async def configure(self, space_id: str, *, rate: float, capacity: int | None) -> None:
        await self._call("configure", space_id, rate=rate, capacity=capacity)

    async def settings(self, space_id: str) -> Settings:
        raw = await self._call("settings", space_id)
        cap = int(float(_text(raw[1])))
        return Settings(float(_text(raw[0])), None if cap < 0 else cap)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
