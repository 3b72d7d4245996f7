"""Commands on a space (one frozen dataclass each) and the ``create_space`` constructor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import ErrorCode, SpaceError
from .events import Event, SpaceCreated, SpaceStarted
from .model import (
    DESCRIPTION_MAX_CHARS,
    TITLE_MAX_CHARS,
    Space,
    SpaceState,
    Visibility,
    ensure_utc,
)

REACTIONS: frozenset[str] = frozenset({"👏", "❤️", "😂", "🔥", "💯", "🙏"})
"""The emoji a listener may react with."""

SCHEDULE_TOLERANCE = timedelta(seconds=60)
"""How far in the past a scheduled start may be (clock skew between client and server)."""


@dataclass(frozen=True)
class Reschedule:
    """Host moves the planned start (only while scheduled)."""

    actor: str
    at: datetime


@dataclass(frozen=True)
class Start:
    """Host or co-host takes a scheduled space live (early or late)."""

    actor: str


@dataclass(frozen=True)
class End:
    """Host ends a live space, or cancels a scheduled one."""

    actor: str


@dataclass(frozen=True)
class Invite:
    """Host or co-host invites ``target`` to speak."""

    actor: str
    target: str


@dataclass(frozen=True)
class AcceptInvite:
    """The invitee accepts and takes a speaker seat."""

    actor: str


@dataclass(frozen=True)
class DeclineInvite:
    """The invitee declines."""

    actor: str


@dataclass(frozen=True)
class RequestToSpeak:
    """A listener asks to speak (only while live)."""

    actor: str


@dataclass(frozen=True)
class CancelRequest:
    """A listener withdraws their speak request."""

    actor: str


@dataclass(frozen=True)
class AcceptRequest:
    """Host or co-host brings a requester on stage as speaker."""

    actor: str
    target: str


@dataclass(frozen=True)
class DenyRequest:
    """Host or co-host turns a request down."""

    actor: str
    target: str


@dataclass(frozen=True)
class LeaveStage:
    """A speaker or co-host steps down to the audience (the host ends the space instead)."""

    actor: str


@dataclass(frozen=True)
class Mute:
    """A stage member mutes themselves, or a host/co-host mutes someone of lower rank."""

    actor: str
    target: str


@dataclass(frozen=True)
class Unmute:
    """A stage member unmutes themselves (``target`` must be ``actor``)."""

    actor: str
    target: str


@dataclass(frozen=True)
class RemoveFromStage:
    """Host or co-host sends someone of lower rank back to the audience."""

    actor: str
    target: str


@dataclass(frozen=True)
class Block:
    """Host or co-host bars ``target`` (of lower rank) from the space forever."""

    actor: str
    target: str


@dataclass(frozen=True)
class AddCohost:
    """Host makes ``target`` a co-host (promoted from speaker or brought up from the audience)."""

    actor: str
    target: str


@dataclass(frozen=True)
class RemoveCohost:
    """Host demotes a co-host to speaker."""

    actor: str
    target: str


@dataclass(frozen=True)
class React:
    """Anyone not blocked sends one of ``REACTIONS`` while live."""

    actor: str
    emoji: str


Action = (
    Reschedule
    | Start
    | End
    | Invite
    | AcceptInvite
    | DeclineInvite
    | RequestToSpeak
    | CancelRequest
    | AcceptRequest
    | DenyRequest
    | LeaveStage
    | Mute
    | Unmute
    | RemoveFromStage
    | Block
    | AddCohost
    | RemoveCohost
    | React
)
"""Any command :func:`townhall.spaces.machine.apply` accepts."""


def require_identity(value: str, what: str) -> str:
    """Refuse empty or blank identities with ``invalid``; identities are otherwise opaque."""
    if not isinstance(value, str) or not value.strip():
        raise SpaceError(ErrorCode.INVALID, f"{what} must be a non-empty identity, got {value!r}")
    return value


def check_schedule(at: datetime, now: datetime, what: str = "scheduled_start") -> datetime:
    """UTC ``at``; refuse naive datetimes and times more than 60 s before ``now``."""
    at = ensure_utc(at, what)
    if at < now - SCHEDULE_TOLERANCE:
        raise SpaceError(
            ErrorCode.INVALID,
            f"{what} {at.isoformat()} is in the past (now is {now.isoformat()})",
        )
    return at


def create_space(
    space_id: str,
    title: str,
    host: str,
    now: datetime,
    description: str | None = None,
    scheduled_start: datetime | None = None,
    visibility: Visibility = Visibility.PUBLIC,
) -> tuple[Space, list[Event]]:
    """Create a space hosted by ``host``.

    With ``scheduled_start`` the space is ``scheduled``; without it the space starts at once
    (``live``, events ``SpaceCreated`` then ``SpaceStarted``). The host starts unmuted.
    """
    now = ensure_utc(now, "now")
    require_identity(space_id, "space_id")
    require_identity(host, "host")
    clean_title = title.strip()
    if not 1 <= len(clean_title) <= TITLE_MAX_CHARS:
        raise SpaceError(
            ErrorCode.INVALID,
            f"title must be 1 to {TITLE_MAX_CHARS} characters after stripping, "
            f"got {len(clean_title)}",
        )
    clean_description = description.strip() if description is not None else None
    if clean_description is not None and len(clean_description) > DESCRIPTION_MAX_CHARS:
        raise SpaceError(
            ErrorCode.INVALID,
            f"description must be at most {DESCRIPTION_MAX_CHARS} characters, "
            f"got {len(clean_description)}",
        )
    if not clean_description:
        clean_description = None
    start = None if scheduled_start is None else check_schedule(scheduled_start, now)
    visibility = Visibility(visibility)
    space = Space(
        id=space_id,
        title=clean_title,
        host=host,
        state=SpaceState.SCHEDULED if start is not None else SpaceState.LIVE,
        visibility=visibility,
        created_at=now,
        description=clean_description,
        scheduled_start=start,
        started_at=None if start is not None else now,
    )
    events: list[Event] = [
        SpaceCreated(
            space_id=space_id,
            at=now,
            host=host,
            title=clean_title,
            description=clean_description,
            visibility=visibility,
            scheduled_start=start,
        )
    ]
    if start is None:
        events.append(SpaceStarted(space_id=space_id, at=now, by=host, scheduled_start=None))
    return space, events
