"""The spaces state machine: ``apply(space, action, now) -> (space, events)``.

Pure and table-driven: :data:`TRANSITIONS` maps each action type to the states it is allowed
in, who may perform it, and a small handler. Everything that changes a ``Space`` lives in that
table; nothing else builds a modified ``Space``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from .actions import (
    REACTIONS,
    AcceptInvite,
    AcceptRequest,
    Action,
    AddCohost,
    Block,
    CancelRequest,
    DeclineInvite,
    DenyRequest,
    End,
    Invite,
    LeaveStage,
    Mute,
    React,
    RemoveCohost,
    RemoveFromStage,
    RequestToSpeak,
    Reschedule,
    Start,
    Unmute,
    check_schedule,
    require_identity,
)
from .errors import ErrorCode, SpaceError
from .events import (
    CohostAdded,
    CohostRemoved,
    Event,
    IdentityBlocked,
    InvitationDeclined,
    ReactionAdded,
    SpaceEnded,
    SpaceRescheduled,
    SpaceStarted,
    SpeakerInvited,
    SpeakerJoined,
    SpeakerLeft,
    SpeakerMuted,
    SpeakerRemoved,
    SpeakerUnmuted,
    SpeakRequestAccepted,
    SpeakRequestCancelled,
    SpeakRequestDenied,
    SpeakRequested,
)
from .model import (
    MAX_COHOSTS,
    MAX_PENDING_REQUESTS,
    MAX_SPEAKERS,
    MAX_STAGE_SEATS,
    ROLE_RANK,
    Space,
    SpaceState,
    StageRole,
    describe_role,
    ensure_utc,
)

Outcome = tuple[Space, list[Event]]
A = TypeVar("A")


class Who(Enum):
    """Rules over the actor's role, checked before the handler runs."""

    HOST = "the host"
    MODERATOR = "the host or a co-host"
    STAGE = "stage members"
    LISTENER = "listeners"
    ANYONE = "anyone"


@dataclass(frozen=True)
class Transition(Generic[A]):
    """One row of the table."""

    states: frozenset[SpaceState]
    who: Who
    verb: str
    """Used in error details: "only the host can <verb>"."""
    handler: Callable[[Space, A, datetime], Outcome]


# -- helpers --------------------------------------------------------------------------------


def _without(items: tuple[str, ...], identity: str) -> tuple[str, ...]:
    return tuple(item for item in items if item != identity)


def _require_speaker_seat(space: Space) -> None:
    if len(space.speakers) < MAX_SPEAKERS:
        return
    if space.seats_taken >= MAX_STAGE_SEATS:
        detail = f"stage is full: {space.seats_taken} of {MAX_STAGE_SEATS} seats taken"
    else:
        detail = (
            f"all {MAX_SPEAKERS} speaker seats are taken ({space.seats_taken} of "
            f"{MAX_STAGE_SEATS} stage seats in use; the rest are reserved for co-hosts)"
        )
    raise SpaceError(ErrorCode.STAGE_FULL, detail)


def _require_on_stage(space: Space, target: str) -> StageRole:
    role = space.role_of(target)
    if role is None:
        raise SpaceError(ErrorCode.NOT_ON_STAGE, f"{target} is not on the stage")
    return role


def _require_outranks(space: Space, actor: str, target: str, verb: str) -> None:
    actor_role, target_role = space.role_of(actor), space.role_of(target)
    if ROLE_RANK[actor_role] > ROLE_RANK[target_role]:
        return
    if target_role is StageRole.HOST:
        only = "nobody else can"
    elif target_role is StageRole.COHOST:
        only = "only the host can"
    else:
        only = "only the host or a co-host can"
    raise SpaceError(
        ErrorCode.NOT_ALLOWED,
        f"{actor} is {describe_role(actor_role)} and cannot {verb} {target}, who is "
        f"{describe_role(target_role)}; {only}",
    )


# -- handlers (pure; the table has already checked state, blocked actor and role) -------------


def _reschedule(space: Space, action: Reschedule, now: datetime) -> Outcome:
    at = check_schedule(action.at, now, "at")
    new = replace(space, scheduled_start=at)
    return new, [
        SpaceRescheduled(
            space_id=space.id,
            at=now,
            by=action.actor,
            previous_start=space.scheduled_start,
            scheduled_start=at,
        )
    ]


def _start(space: Space, action: Start, now: datetime) -> Outcome:
    new = replace(space, state=SpaceState.LIVE, started_at=now)
    return new, [
        SpaceStarted(
            space_id=space.id, at=now, by=action.actor, scheduled_start=space.scheduled_start
        )
    ]


def _end(space: Space, action: End, now: datetime) -> Outcome:
    # Pending requests and invitations are moot once ended; the stage is kept as a record.
    new = replace(space, state=SpaceState.ENDED, ended_at=now, requests=(), invited=())
    return new, [
        SpaceEnded(space_id=space.id, at=now, by=action.actor, started_at=space.started_at)
    ]


def _invite(space: Space, action: Invite, now: datetime) -> Outcome:
    target = action.target
    if space.is_blocked(target):
        raise SpaceError(ErrorCode.BLOCKED, f"{target} is blocked from this space")
    role = space.role_of(target)
    if role is not None:
        raise SpaceError(
            ErrorCode.CONFLICT, f"{target} is already on stage as {describe_role(role)}"
        )
    if target in space.invited:
        raise SpaceError(ErrorCode.CONFLICT, f"{target} is already invited to speak")
    if target in space.requests:
        raise SpaceError(
            ErrorCode.CONFLICT,
            f"{target} has a pending request to speak; accept the request instead",
        )
    _require_speaker_seat(space)
    new = replace(space, invited=(*space.invited, target))
    return new, [SpeakerInvited(space_id=space.id, at=now, by=action.actor, identity=target)]


def _require_invited(space: Space, identity: str) -> None:
    if identity not in space.invited:
        raise SpaceError(ErrorCode.NO_SUCH_INVITE, f"{identity} has no pending invitation to speak")


def _accept_invite(space: Space, action: AcceptInvite, now: datetime) -> Outcome:
    actor = action.actor
    _require_invited(space, actor)
    _require_speaker_seat(space)
    new = replace(
        space,
        invited=_without(space.invited, actor),
        speakers=(*space.speakers, actor),
        muted=space.muted | {actor},
    )
    joined = SpeakerJoined(
        space_id=space.id,
        at=now,
        identity=actor,
        role=StageRole.SPEAKER,
        via="invitation",
        muted=True,
    )
    return new, [joined]


def _decline_invite(space: Space, action: DeclineInvite, now: datetime) -> Outcome:
    _require_invited(space, action.actor)
    new = replace(space, invited=_without(space.invited, action.actor))
    return new, [InvitationDeclined(space_id=space.id, at=now, identity=action.actor)]


def _request_to_speak(space: Space, action: RequestToSpeak, now: datetime) -> Outcome:
    actor = action.actor
    if actor in space.requests:
        position = space.requests.index(actor) + 1
        raise SpaceError(
            ErrorCode.CONFLICT,
            f"{actor} has already requested to speak (position {position} in the queue)",
        )
    if actor in space.invited:
        raise SpaceError(
            ErrorCode.CONFLICT,
            f"{actor} is already invited to speak; accept the invitation instead",
        )
    if len(space.requests) >= MAX_PENDING_REQUESTS:
        raise SpaceError(
            ErrorCode.QUEUE_FULL,
            f"the speak request queue is full: {len(space.requests)} of "
            f"{MAX_PENDING_REQUESTS} pending",
        )
    new = replace(space, requests=(*space.requests, actor))
    return new, [
        SpeakRequested(space_id=space.id, at=now, identity=actor, position=len(new.requests))
    ]


def _require_request(space: Space, identity: str) -> None:
    if identity not in space.requests:
        raise SpaceError(ErrorCode.NO_SUCH_REQUEST, f"{identity} has no pending request to speak")


def _cancel_request(space: Space, action: CancelRequest, now: datetime) -> Outcome:
    _require_request(space, action.actor)
    new = replace(space, requests=_without(space.requests, action.actor))
    return new, [SpeakRequestCancelled(space_id=space.id, at=now, identity=action.actor)]


def _accept_request(space: Space, action: AcceptRequest, now: datetime) -> Outcome:
    target = action.target
    _require_request(space, target)
    _require_speaker_seat(space)
    new = replace(
        space,
        requests=_without(space.requests, target),
        speakers=(*space.speakers, target),
        muted=space.muted | {target},
    )
    return new, [
        SpeakRequestAccepted(space_id=space.id, at=now, by=action.actor, identity=target),
        SpeakerJoined(
            space_id=space.id,
            at=now,
            identity=target,
            role=StageRole.SPEAKER,
            via="request",
            muted=True,
        ),
    ]


def _deny_request(space: Space, action: DenyRequest, now: datetime) -> Outcome:
    _require_request(space, action.target)
    new = replace(space, requests=_without(space.requests, action.target))
    return new, [
        SpeakRequestDenied(space_id=space.id, at=now, by=action.actor, identity=action.target)
    ]


def _off_stage(space: Space, identity: str) -> Space:
    """``space`` with ``identity`` (a co-host or speaker) back in the audience."""
    return replace(
        space,
        cohosts=_without(space.cohosts, identity),
        speakers=_without(space.speakers, identity),
        muted=space.muted - {identity},
    )


def _leave_stage(space: Space, action: LeaveStage, now: datetime) -> Outcome:
    role = _require_on_stage(space, action.actor)
    if role is StageRole.HOST:
        raise SpaceError(
            ErrorCode.NOT_ALLOWED, "the host cannot leave the stage; end the space instead"
        )
    new = _off_stage(space, action.actor)
    return new, [SpeakerLeft(space_id=space.id, at=now, identity=action.actor, role=role)]


def _mute(space: Space, action: Mute, now: datetime) -> Outcome:
    target = action.target
    _require_on_stage(space, target)
    if target != action.actor:
        _require_outranks(space, action.actor, target, "mute")
    if space.is_muted(target):
        raise SpaceError(ErrorCode.CONFLICT, f"{target} is already muted")
    new = replace(space, muted=space.muted | {target})
    return new, [SpeakerMuted(space_id=space.id, at=now, by=action.actor, identity=target)]


def _unmute(space: Space, action: Unmute, now: datetime) -> Outcome:
    target = action.target
    if target != action.actor:
        raise SpaceError(
            ErrorCode.NOT_ALLOWED,
            f"only {target} can unmute themselves; others may mute but never unmute them",
        )
    if not space.is_muted(target):
        raise SpaceError(ErrorCode.CONFLICT, f"{target} is not muted")
    new = replace(space, muted=space.muted - {target})
    return new, [SpeakerUnmuted(space_id=space.id, at=now, identity=target)]


def _remove_from_stage(space: Space, action: RemoveFromStage, now: datetime) -> Outcome:
    target = action.target
    role = _require_on_stage(space, target)
    if role is StageRole.HOST:
        raise SpaceError(ErrorCode.NOT_ALLOWED, "the host cannot be removed from the stage")
    if target == action.actor:
        raise SpaceError(
            ErrorCode.NOT_ALLOWED,
            f"{target} cannot remove themselves from the stage; leave the stage instead",
        )
    _require_outranks(space, action.actor, target, "remove")
    new = _off_stage(space, target)
    return new, [
        SpeakerRemoved(
            space_id=space.id,
            at=now,
            by=action.actor,
            identity=target,
            role=role,
            reason="removed",
        )
    ]


def _block(space: Space, action: Block, now: datetime) -> Outcome:
    target = action.target
    if target == space.host:
        raise SpaceError(ErrorCode.NOT_ALLOWED, "the host cannot be blocked")
    if target == action.actor:
        raise SpaceError(ErrorCode.NOT_ALLOWED, f"{target} cannot block themselves")
    if space.is_blocked(target):
        raise SpaceError(ErrorCode.CONFLICT, f"{target} is already blocked")
    _require_outranks(space, action.actor, target, "block")
    role = space.role_of(target)
    events: list[Event] = []
    if role is not None:
        events.append(
            SpeakerRemoved(
                space_id=space.id,
                at=now,
                by=action.actor,
                identity=target,
                role=role,
                reason="blocked",
            )
        )
    new = replace(
        _off_stage(space, target),
        requests=_without(space.requests, target),
        invited=_without(space.invited, target),
        blocked=space.blocked | {target},
    )
    events.append(
        IdentityBlocked(
            space_id=space.id,
            at=now,
            by=action.actor,
            identity=target,
            removed_from_stage=role is not None,
            request_dropped=target in space.requests,
            invitation_dropped=target in space.invited,
        )
    )
    return new, events


def _add_cohost(space: Space, action: AddCohost, now: datetime) -> Outcome:
    target = action.target
    role = space.role_of(target)
    if role is StageRole.HOST:
        raise SpaceError(ErrorCode.CONFLICT, f"{target} is the host and cannot also be a co-host")
    if role is StageRole.COHOST:
        raise SpaceError(ErrorCode.CONFLICT, f"{target} is already a co-host")
    if space.is_blocked(target):
        raise SpaceError(ErrorCode.BLOCKED, f"{target} is blocked from this space")
    if len(space.cohosts) >= MAX_COHOSTS:
        raise SpaceError(
            ErrorCode.COHOSTS_FULL,
            f"co-host seats are full: {len(space.cohosts)} of {MAX_COHOSTS} taken",
        )
    events: list[Event] = []
    if role is None:
        events.append(
            SpeakerJoined(
                space_id=space.id,
                at=now,
                identity=target,
                role=StageRole.COHOST,
                via="cohost",
                muted=True,
            )
        )
        muted = space.muted | {target}
    else:
        muted = space.muted  # a promoted speaker keeps their microphone state
    new = replace(
        space,
        cohosts=(*space.cohosts, target),
        speakers=_without(space.speakers, target),
        requests=_without(space.requests, target),
        invited=_without(space.invited, target),
        muted=muted,
    )
    events.append(
        CohostAdded(space_id=space.id, at=now, by=action.actor, identity=target, previous_role=role)
    )
    return new, events


def _remove_cohost(space: Space, action: RemoveCohost, now: datetime) -> Outcome:
    target = action.target
    role = space.role_of(target)
    if role is not StageRole.COHOST:
        raise SpaceError(
            ErrorCode.NOT_COHOST, f"{target} is not a co-host (they are {describe_role(role)})"
        )
    if len(space.speakers) >= MAX_SPEAKERS:
        raise SpaceError(
            ErrorCode.STAGE_FULL,
            f"cannot make {target} a speaker again: all {MAX_SPEAKERS} speaker seats are "
            "taken; remove them from the stage instead",
        )
    new = replace(
        space,
        cohosts=_without(space.cohosts, target),
        speakers=(*space.speakers, target),
    )
    return new, [CohostRemoved(space_id=space.id, at=now, by=action.actor, identity=target)]


_EMOJI_ALIASES: Mapping[str, str] = {"\u2764": "\u2764\ufe0f"}  # bare heart -> emoji heart


def _react(space: Space, action: React, now: datetime) -> Outcome:
    emoji = _EMOJI_ALIASES.get(action.emoji, action.emoji)
    if emoji not in REACTIONS:
        raise SpaceError(
            ErrorCode.INVALID,
            f"unknown reaction {action.emoji!r}; allowed: {' '.join(sorted(REACTIONS))}",
        )
    return space, [ReactionAdded(space_id=space.id, at=now, identity=action.actor, emoji=emoji)]


# -- the table ---------------------------------------------------------------------------------

_SCHEDULED = frozenset({SpaceState.SCHEDULED})
_LIVE = frozenset({SpaceState.LIVE})
_OPEN = frozenset({SpaceState.SCHEDULED, SpaceState.LIVE})

# Everything that changes a Space lives in this table (creation aside: see create_space).
TRANSITIONS: Mapping[type[Any], Transition[Any]] = {
    Reschedule: Transition(_SCHEDULED, Who.HOST, "reschedule a space", _reschedule),
    Start: Transition(_SCHEDULED, Who.MODERATOR, "start a space", _start),
    End: Transition(_OPEN, Who.HOST, "end a space", _end),
    Invite: Transition(_OPEN, Who.MODERATOR, "invite speakers", _invite),
    AcceptInvite: Transition(_OPEN, Who.ANYONE, "accept an invitation", _accept_invite),
    DeclineInvite: Transition(_OPEN, Who.ANYONE, "decline an invitation", _decline_invite),
    RequestToSpeak: Transition(_LIVE, Who.LISTENER, "request to speak", _request_to_speak),
    CancelRequest: Transition(_LIVE, Who.ANYONE, "cancel a speak request", _cancel_request),
    AcceptRequest: Transition(_LIVE, Who.MODERATOR, "accept speak requests", _accept_request),
    DenyRequest: Transition(_LIVE, Who.MODERATOR, "deny speak requests", _deny_request),
    LeaveStage: Transition(_OPEN, Who.STAGE, "leave the stage", _leave_stage),
    Mute: Transition(_OPEN, Who.STAGE, "mute", _mute),
    Unmute: Transition(_OPEN, Who.STAGE, "unmute", _unmute),
    RemoveFromStage: Transition(
        _OPEN, Who.MODERATOR, "remove people from the stage", _remove_from_stage
    ),
    Block: Transition(_OPEN, Who.MODERATOR, "block people", _block),
    AddCohost: Transition(_OPEN, Who.HOST, "add co-hosts", _add_cohost),
    RemoveCohost: Transition(_OPEN, Who.HOST, "remove co-hosts", _remove_cohost),
    React: Transition(_LIVE, Who.ANYONE, "react", _react),
}


def _check_who(space: Space, who: Who, actor: str, verb: str) -> None:
    role = space.role_of(actor)
    match who:
        case Who.HOST | Who.MODERATOR:
            allowed = {StageRole.HOST} if who is Who.HOST else {StageRole.HOST, StageRole.COHOST}
            if role not in allowed:
                raise SpaceError(
                    ErrorCode.NOT_ALLOWED,
                    f"only {who.value} can {verb}; {actor} is {describe_role(role)}",
                )
        case Who.STAGE:
            if role is None:
                raise SpaceError(
                    ErrorCode.NOT_ON_STAGE, f"{actor} is not on the stage and cannot {verb}"
                )
        case Who.LISTENER:
            if role is not None:
                raise SpaceError(
                    ErrorCode.CONFLICT,
                    f"only listeners can {verb}; {actor} is already on stage as "
                    f"{describe_role(role)}",
                )
        case Who.ANYONE:
            pass


def apply(space: Space, action: Action, now: datetime) -> Outcome:
    """Apply ``action`` at ``now``; return the new space and the events (never empty).

    Raises :class:`SpaceError` and changes nothing when the action is refused. Checks run in
    this order: input validity, space ended, actor blocked, state, actor's role, then the
    handler's own checks (targets, seats, ...).
    """
    transition = TRANSITIONS.get(type(action))
    if transition is None:
        raise SpaceError(ErrorCode.INVALID, f"unknown action {type(action).__name__}")
    now = ensure_utc(now, "now")
    require_identity(action.actor, "actor")
    target = getattr(action, "target", None)
    if target is not None:
        require_identity(target, "target")
    if space.state is SpaceState.ENDED:
        raise SpaceError(ErrorCode.WRONG_STATE, "space has ended: no further changes")
    if space.is_blocked(action.actor):
        raise SpaceError(ErrorCode.BLOCKED, f"{action.actor} is blocked from this space")
    if space.state not in transition.states:
        allowed = " or ".join(sorted(s.value for s in transition.states))
        raise SpaceError(
            ErrorCode.WRONG_STATE,
            f"cannot {transition.verb}: the space is {space.state.value} "
            f"(possible only while {allowed})",
        )
    _check_who(space, transition.who, action.actor, transition.verb)
    return transition.handler(space, action, now)
