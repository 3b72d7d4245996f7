"""The immutable ``Space`` value and its enums; transitions live in :mod:`.machine`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .errors import ErrorCode, SpaceError

MAX_COHOSTS = 2
"""Co-host seats on the stage (besides the host)."""
MAX_SPEAKERS = 10
"""Speaker seats on the stage (besides host and co-hosts)."""
MAX_STAGE_SEATS = 1 + MAX_COHOSTS + MAX_SPEAKERS
"""Everyone on stage: the host, the co-hosts and the speakers (13)."""
MAX_PENDING_REQUESTS = 1000
"""Pending speak requests kept per space; more are refused with ``queue_full``."""
TITLE_MAX_CHARS = 120
DESCRIPTION_MAX_CHARS = 1000


class SpaceState(StrEnum):
    """Lifecycle of a space; it only ever moves forward."""

    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


STATE_ORDER: Mapping[SpaceState, int] = {
    SpaceState.SCHEDULED: 0,
    SpaceState.LIVE: 1,
    SpaceState.ENDED: 2,
}


class Visibility(StrEnum):
    """Who may find and listen to a space (listening grants are enforced by the gate)."""

    PUBLIC = "public"
    UNLISTED = "unlisted"
    TICKETED = "ticketed"


class StageRole(StrEnum):
    """Seat kinds on the stage. Listeners have no role (``None``)."""

    HOST = "host"
    COHOST = "cohost"
    SPEAKER = "speaker"


ROLE_RANK: Mapping[StageRole | None, int] = {
    None: 0,
    StageRole.SPEAKER: 1,
    StageRole.COHOST: 2,
    StageRole.HOST: 3,
}


def describe_role(role: StageRole | None) -> str:
    """``"the host"``, ``"a co-host"``, ``"a speaker"`` or ``"a listener"`` (for error details)."""
    match role:
        case StageRole.HOST:
            return "the host"
        case StageRole.COHOST:
            return "a co-host"
        case StageRole.SPEAKER:
            return "a speaker"
        case None:
            return "a listener"


def ensure_utc(value: datetime, what: str) -> datetime:
    """Return ``value`` converted to UTC; refuse naive datetimes with ``invalid``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise SpaceError(
            ErrorCode.INVALID, f"{what} must be a timezone-aware datetime, got naive {value}"
        )
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Space:
    """One audio space. Immutable: every transition returns a new ``Space``.

    Construction checks the structural invariants (stage limits, disjoint sets, state vs.
    timestamps) and raises ``ValueError`` if one is broken (``from_dict`` reports it as
    ``SpaceError("invalid", ...)``).
    """

    id: str
    """Opaque space id."""
    title: str
    """Stripped title, 1..120 characters."""
    host: str
    """Identity of the one and only host; always on stage, never blocked."""
    state: SpaceState
    """Lifecycle state."""
    visibility: Visibility
    """Public, unlisted or ticketed."""
    created_at: datetime
    """When the space was created (UTC)."""
    description: str | None = None
    """Optional stripped description, at most 1000 characters."""
    scheduled_start: datetime | None = None
    """Planned start (UTC); always set while scheduled, ``None`` for spaces started at once."""
    started_at: datetime | None = None
    """When the space went live; ``None`` if it never did."""
    ended_at: datetime | None = None
    """When the space ended."""
    cohosts: tuple[str, ...] = ()
    """Co-hosts on stage, in the order they were added (at most 2)."""
    speakers: tuple[str, ...] = ()
    """Speakers on stage, in joining order (at most 10)."""
    requests: tuple[str, ...] = ()
    """Pending speak requests, oldest first."""
    invited: tuple[str, ...] = ()
    """Identities invited to speak that have neither accepted nor declined, oldest first."""
    blocked: frozenset[str] = field(default_factory=frozenset)
    """Identities barred from the space forever."""
    muted: frozenset[str] = field(default_factory=frozenset)
    """Stage members whose microphone is muted."""

    def __post_init__(self) -> None:
        problem = self._find_inconsistency()
        if problem is not None:  # a bug in the caller; from_dict turns it into SpaceError
            raise ValueError(f"inconsistent space {self.id!r}: {problem}")

    # -- queries -------------------------------------------------------------------------

    def role_of(self, identity: str) -> StageRole | None:
        """The identity's seat on stage, or ``None`` for a listener."""
        if identity == self.host:
            return StageRole.HOST
        if identity in self.cohosts:
            return StageRole.COHOST
        if identity in self.speakers:
            return StageRole.SPEAKER
        return None

    def stage_members(self) -> tuple[str, ...]:
        """Everyone on stage: host first, then co-hosts, then speakers."""
        return (self.host, *self.cohosts, *self.speakers)

    def is_on_stage(self, identity: str) -> bool:
        return self.role_of(identity) is not None

    def is_blocked(self, identity: str) -> bool:
        return identity in self.blocked

    def is_muted(self, identity: str) -> bool:
        return identity in self.muted

    @property
    def seats_taken(self) -> int:
        """Number of people on stage, host included (1..13)."""
        return 1 + len(self.cohosts) + len(self.speakers)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (datetimes as ISO 8601, sets as sorted lists)."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "host": self.host,
            "state": self.state.value,
            "visibility": self.visibility.value,
            "created_at": self.created_at.isoformat(),
            "scheduled_start": _iso(self.scheduled_start),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "cohosts": list(self.cohosts),
            "speakers": list(self.speakers),
            "requests": list(self.requests),
            "invited": list(self.invited),
            "blocked": sorted(self.blocked),
            "muted": sorted(self.muted),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Space:
        """Inverse of :meth:`to_dict`; raises ``SpaceError("invalid", ...)`` on bad input."""
        try:
            return cls(
                id=_str(data["id"], "id"),
                title=_str(data["title"], "title"),
                description=_opt_str(data.get("description"), "description"),
                host=_str(data["host"], "host"),
                state=SpaceState(data["state"]),
                visibility=Visibility(data["visibility"]),
                created_at=_parse_dt(data["created_at"], "created_at"),
                scheduled_start=_opt_dt(data.get("scheduled_start"), "scheduled_start"),
                started_at=_opt_dt(data.get("started_at"), "started_at"),
                ended_at=_opt_dt(data.get("ended_at"), "ended_at"),
                cohosts=_str_tuple(data.get("cohosts", ()), "cohosts"),
                speakers=_str_tuple(data.get("speakers", ()), "speakers"),
                requests=_str_tuple(data.get("requests", ()), "requests"),
                invited=_str_tuple(data.get("invited", ()), "invited"),
                blocked=frozenset(_str_tuple(data.get("blocked", ()), "blocked")),
                muted=frozenset(_str_tuple(data.get("muted", ()), "muted")),
            )
        except KeyError as exc:
            raise SpaceError(
                ErrorCode.INVALID, f"space dict lacks the key {exc.args[0]!r}"
            ) from exc
        except ValueError as exc:  # unknown enum value, broken invariant
            raise SpaceError(ErrorCode.INVALID, f"bad space dict: {exc}") from exc

    # -- invariants ------------------------------------------------------------------------

    def _find_inconsistency(self) -> str | None:
        if not self.id or not self.host:
            return "id and host must be non-empty"
        for name in ("created_at", "scheduled_start", "started_at", "ended_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                return f"{name} must be timezone-aware"
        if self.state is SpaceState.SCHEDULED and (
            self.scheduled_start is None or self.started_at is not None or self.ended_at is not None
        ):
            return "a scheduled space has a scheduled_start and no started_at/ended_at"
        if self.state is SpaceState.LIVE and (self.started_at is None or self.ended_at is not None):
            return "a live space has started_at and no ended_at"
        if self.state is SpaceState.ENDED and self.ended_at is None:
            return "an ended space has ended_at"
        if len(self.cohosts) > MAX_COHOSTS:
            return f"{len(self.cohosts)} co-hosts (at most {MAX_COHOSTS})"
        if len(self.speakers) > MAX_SPEAKERS:
            return f"{len(self.speakers)} speakers (at most {MAX_SPEAKERS})"
        stage = self.stage_members()
        if len(set(stage)) != len(stage) or any(not s for s in stage):
            return "stage members must be distinct non-empty identities"
        for name, seq in (("requests", self.requests), ("invited", self.invited)):
            if len(set(seq)) != len(seq):
                return f"duplicate identities in {name}"
        on_stage = set(stage)
        requests, invited = set(self.requests), set(self.invited)
        if self.blocked & (on_stage | requests | invited):
            return "a blocked identity is on stage, requesting or invited"
        if requests & (on_stage | invited) or invited & on_stage:
            return "requests, invitations and the stage must be disjoint"
        if not self.muted <= on_stage:
            return "only stage members can be muted"
        return None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SpaceError(ErrorCode.INVALID, f"{what} must be a string, got {type(value).__name__}")
    return value


def _opt_str(value: object, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _str_tuple(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise SpaceError(ErrorCode.INVALID, f"{what} must be a list of strings")
    return tuple(_str(item, what) for item in value)


def _parse_dt(value: object, what: str) -> datetime:
    text = _str(value, what)
    return ensure_utc(datetime.fromisoformat(text), what)


def _opt_dt(value: object, what: str) -> datetime | None:
    return None if value is None else _parse_dt(value, what)
