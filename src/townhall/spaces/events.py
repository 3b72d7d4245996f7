"""Past-tense facts emitted by the spaces state machine (published on the event stream)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal

from .model import StageRole, Visibility

JoinVia = Literal["invitation", "request", "cohost"]
RemovalReason = Literal["removed", "blocked"]


@dataclass(frozen=True, kw_only=True)
class SpaceEvent:
    """Common base: every event names its space and when it happened."""

    kind: ClassVar[str] = "space_event"

    space_id: str
    """The space this event belongs to."""
    at: datetime
    """When it happened (UTC, the ``now`` given to the machine)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with a ``kind`` key; datetimes as ISO 8601, enums as their values."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            out[f.name] = _json_value(getattr(self, f.name))
        return out


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass(frozen=True, kw_only=True)
class SpaceCreated(SpaceEvent):
    kind: ClassVar[str] = "space_created"

    host: str
    """The creator, who is the host."""
    title: str
    """The (stripped) title."""
    description: str | None
    """The (stripped) description, if any."""
    visibility: Visibility
    """Public, unlisted or ticketed."""
    scheduled_start: datetime | None
    """Planned start; ``None`` when the space starts at once (a SpaceStarted follows)."""


@dataclass(frozen=True, kw_only=True)
class SpaceRescheduled(SpaceEvent):
    kind: ClassVar[str] = "space_rescheduled"

    by: str
    """The host, who rescheduled."""
    previous_start: datetime | None
    """The start time before this change."""
    scheduled_start: datetime
    """The new planned start."""


@dataclass(frozen=True, kw_only=True)
class SpaceStarted(SpaceEvent):
    kind: ClassVar[str] = "space_started"

    by: str
    """Host or co-host who started the space."""
    scheduled_start: datetime | None
    """The planned start, for comparing with ``at`` (early/late); ``None`` if unplanned."""


@dataclass(frozen=True, kw_only=True)
class SpaceEnded(SpaceEvent):
    kind: ClassVar[str] = "space_ended"

    by: str
    """The host, who ended the space."""
    started_at: datetime | None
    """When it went live; ``None`` when a scheduled space was cancelled before starting."""


@dataclass(frozen=True, kw_only=True)
class SpeakerInvited(SpaceEvent):
    kind: ClassVar[str] = "speaker_invited"

    by: str
    """Host or co-host who sent the invitation."""
    identity: str
    """The invitee."""


@dataclass(frozen=True, kw_only=True)
class InvitationDeclined(SpaceEvent):
    kind: ClassVar[str] = "invitation_declined"

    identity: str
    """The invitee who declined."""


@dataclass(frozen=True, kw_only=True)
class SpeakRequested(SpaceEvent):
    kind: ClassVar[str] = "speak_requested"

    identity: str
    """The listener asking to speak."""
    position: int
    """1-based position in the queue of pending requests."""


@dataclass(frozen=True, kw_only=True)
class SpeakRequestCancelled(SpaceEvent):
    kind: ClassVar[str] = "speak_request_cancelled"

    identity: str
    """The listener who withdrew the request."""


@dataclass(frozen=True, kw_only=True)
class SpeakRequestAccepted(SpaceEvent):
    kind: ClassVar[str] = "speak_request_accepted"

    by: str
    """Host or co-host who accepted."""
    identity: str
    """The requester, now a speaker (a SpeakerJoined follows)."""


@dataclass(frozen=True, kw_only=True)
class SpeakRequestDenied(SpaceEvent):
    kind: ClassVar[str] = "speak_request_denied"

    by: str
    """Host or co-host who denied."""
    identity: str
    """The requester, still a listener."""


@dataclass(frozen=True, kw_only=True)
class SpeakerJoined(SpaceEvent):
    kind: ClassVar[str] = "speaker_joined"

    identity: str
    """Who took a seat on stage."""
    role: StageRole
    """The seat taken: speaker, or co-host when a listener was made co-host."""
    via: JoinVia
    """How: an accepted invitation, an accepted request, or being made co-host."""
    muted: bool
    """Whether the microphone starts muted (always true: people join the stage muted)."""


@dataclass(frozen=True, kw_only=True)
class SpeakerLeft(SpaceEvent):
    kind: ClassVar[str] = "speaker_left"

    identity: str
    """Who left the stage of their own accord (now a listener)."""
    role: StageRole
    """The seat they left (speaker or co-host)."""


@dataclass(frozen=True, kw_only=True)
class SpeakerMuted(SpaceEvent):
    kind: ClassVar[str] = "speaker_muted"

    by: str
    """Who muted: the stage member themselves, or a host/co-host."""
    identity: str
    """The stage member now muted."""


@dataclass(frozen=True, kw_only=True)
class SpeakerUnmuted(SpaceEvent):
    kind: ClassVar[str] = "speaker_unmuted"

    identity: str
    """The stage member who unmuted themselves (nobody else can)."""


@dataclass(frozen=True, kw_only=True)
class SpeakerRemoved(SpaceEvent):
    kind: ClassVar[str] = "speaker_removed"

    by: str
    """Host or co-host who removed them."""
    identity: str
    """Who was taken off the stage (now a listener, or blocked)."""
    role: StageRole
    """The seat they had (speaker or co-host)."""
    reason: RemovalReason
    """``"removed"``, or ``"blocked"`` when an IdentityBlocked follows."""


@dataclass(frozen=True, kw_only=True)
class IdentityBlocked(SpaceEvent):
    kind: ClassVar[str] = "identity_blocked"

    by: str
    """Host or co-host who blocked."""
    identity: str
    """Who is now barred from the space forever."""
    removed_from_stage: bool
    """Whether they were taken off the stage (a SpeakerRemoved precedes this event)."""
    request_dropped: bool
    """Whether a pending speak request was dropped."""
    invitation_dropped: bool
    """Whether a pending invitation was withdrawn."""


@dataclass(frozen=True, kw_only=True)
class CohostAdded(SpaceEvent):
    kind: ClassVar[str] = "cohost_added"

    by: str
    """The host."""
    identity: str
    """The new co-host (on stage)."""
    previous_role: StageRole | None
    """``speaker`` when promoted from the stage, ``None`` when brought up from the audience."""


@dataclass(frozen=True, kw_only=True)
class CohostRemoved(SpaceEvent):
    kind: ClassVar[str] = "cohost_removed"

    by: str
    """The host."""
    identity: str
    """The former co-host, who stays on stage as a speaker."""


@dataclass(frozen=True, kw_only=True)
class ReactionAdded(SpaceEvent):
    kind: ClassVar[str] = "reaction_added"

    identity: str
    """Who reacted."""
    emoji: str
    """One of ``REACTIONS``."""


Event = (
    SpaceCreated
    | SpaceRescheduled
    | SpaceStarted
    | SpaceEnded
    | SpeakerInvited
    | InvitationDeclined
    | SpeakRequested
    | SpeakRequestCancelled
    | SpeakRequestAccepted
    | SpeakRequestDenied
    | SpeakerJoined
    | SpeakerLeft
    | SpeakerMuted
    | SpeakerUnmuted
    | SpeakerRemoved
    | IdentityBlocked
    | CohostAdded
    | CohostRemoved
    | ReactionAdded
)
"""Any event the spaces domain emits."""
