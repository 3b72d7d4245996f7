"""Example tests for the spaces state machine: every action, success and refusal."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import pytest

from townhall.spaces import (
    MAX_PENDING_REQUESTS,
    REACTIONS,
    TRANSITIONS,
    AcceptInvite,
    AcceptRequest,
    Action,
    AddCohost,
    Block,
    CancelRequest,
    CohostAdded,
    CohostRemoved,
    DeclineInvite,
    DenyRequest,
    End,
    ErrorCode,
    Event,
    IdentityBlocked,
    InvitationDeclined,
    Invite,
    LeaveStage,
    Mute,
    React,
    ReactionAdded,
    RemoveCohost,
    RemoveFromStage,
    RequestToSpeak,
    Reschedule,
    Space,
    SpaceCreated,
    SpaceEnded,
    SpaceError,
    SpaceRescheduled,
    SpaceStarted,
    SpaceState,
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
    StageRole,
    Start,
    Unmute,
    Visibility,
    apply,
    create_space,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOST = "user:host"
C1, C2, C3 = "user:co1", "user:co2", "user:co3"
LISTENER = "anon:8f3a"
SPEAKERS = [f"user:s{i}" for i in range(11)]


def live() -> Space:
    space, _ = create_space("sp1", "Town hall", HOST, T0)
    return space


def scheduled() -> Space:
    space, _ = create_space("sp1", "Town hall", HOST, T0, scheduled_start=T0 + timedelta(hours=1))
    return space


def run(space: Space, *actions: Action) -> tuple[Space, list[Event]]:
    events: list[Event] = []
    for action in actions:
        space, new_events = apply(space, action, T0 + timedelta(minutes=1))
        events.extend(new_events)
    return space, events


def refused(space: Space, action: Action, code: str, detail: str | None = None) -> SpaceError:
    with pytest.raises(SpaceError) as info:
        apply(space, action, T0 + timedelta(minutes=1))
    assert info.value.code == code, info.value.detail
    if detail is not None:
        assert info.value.detail == detail
    return info.value


def with_speakers(space: Space, count: int) -> Space:
    for who in SPEAKERS[:count]:
        space, _ = run(space, Invite(HOST, who), AcceptInvite(who))
    return space


def with_cohosts(space: Space, *cohosts: str) -> Space:
    for who in cohosts:
        space, _ = run(space, AddCohost(HOST, who))
    return space


def full_stage() -> Space:
    return with_speakers(with_cohosts(live(), C1, C2), 10)


# -- create ---------------------------------------------------------------------------------


def test_create_without_schedule_goes_live_at_once() -> None:
    space, events = create_space("sp1", "  Town hall  ", HOST, T0, description="  ")
    assert space.state is SpaceState.LIVE
    assert space.started_at == T0 and space.created_at == T0
    assert space.title == "Town hall" and space.description is None
    assert space.stage_members() == (HOST,)
    assert space.role_of(HOST) is StageRole.HOST and not space.is_muted(HOST)
    assert [type(e) for e in events] == [SpaceCreated, SpaceStarted]
    assert events[0] == SpaceCreated(
        space_id="sp1",
        at=T0,
        host=HOST,
        title="Town hall",
        description=None,
        visibility=Visibility.PUBLIC,
        scheduled_start=None,
    )


def test_create_scheduled_and_ticketed() -> None:
    start = T0 + timedelta(days=1)
    space, events = create_space(
        "sp1", "AMA", HOST, T0, "Ask me", scheduled_start=start, visibility=Visibility.TICKETED
    )
    assert space.state is SpaceState.SCHEDULED
    assert space.scheduled_start == start and space.started_at is None
    assert space.visibility is Visibility.TICKETED and space.description == "Ask me"
    assert [type(e) for e in events] == [SpaceCreated]


def test_create_normalises_aware_datetimes_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    space, _ = create_space(
        "sp1", "t", HOST, T0, scheduled_start=datetime(2030, 1, 1, 16, 0, tzinfo=plus2)
    )
    assert space.scheduled_start == T0 + timedelta(hours=2)
    assert space.scheduled_start.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"title": "   "}, "title must be 1 to 120 characters after stripping, got 0"),
        ({"title": "x" * 121}, "title must be 1 to 120 characters after stripping, got 121"),
        ({"description": "d" * 1001}, "description must be at most 1000 characters, got 1001"),
        ({"host": ""}, "host must be a non-empty identity, got ''"),
        ({"space_id": " "}, "space_id must be a non-empty identity, got ' '"),
        (
            {"scheduled_start": datetime(2030, 1, 2)},
            "scheduled_start must be a timezone-aware datetime, got naive 2030-01-02 00:00:00",
        ),
        (
            {"scheduled_start": T0 - timedelta(seconds=61)},
            "scheduled_start 2030-01-01T11:58:59+00:00 is in the past "
            "(now is 2030-01-01T12:00:00+00:00)",
        ),
        ({"now": datetime(2030, 1, 1)}, None),
    ],
)
def test_create_refuses_bad_input(kwargs: dict[str, object], detail: str | None) -> None:
    args: dict[str, object] = {"space_id": "sp1", "title": "Town hall", "host": HOST, "now": T0}
    args.update(kwargs)
    with pytest.raises(SpaceError) as info:
        create_space(**args)  # type: ignore[arg-type]
    assert info.value.code == "invalid"
    assert info.value.http_status == 422
    if detail is not None:
        assert info.value.detail == detail


def test_create_accepts_boundaries() -> None:
    space, _ = create_space(
        "sp1", "x" * 120, HOST, T0, "d" * 1000, scheduled_start=T0 - timedelta(seconds=60)
    )
    assert space.state is SpaceState.SCHEDULED and len(space.title) == 120


# -- reschedule / start / end ---------------------------------------------------------------


def test_reschedule() -> None:
    space = scheduled()
    new_start = T0 + timedelta(hours=5)
    space2, events = run(space, Reschedule(HOST, new_start))
    assert space2.scheduled_start == new_start
    assert events == [
        SpaceRescheduled(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            by=HOST,
            previous_start=T0 + timedelta(hours=1),
            scheduled_start=new_start,
        )
    ]


def test_reschedule_refusals() -> None:
    refused(
        live(),
        Reschedule(HOST, T0 + timedelta(hours=1)),
        "wrong_state",
        "cannot reschedule a space: the space is live (possible only while scheduled)",
    )
    space = with_cohosts(scheduled(), C1)
    refused(
        space,
        Reschedule(C1, T0 + timedelta(hours=2)),
        "not_allowed",
        f"only the host can reschedule a space; {C1} is a co-host",
    )
    refused(space, Reschedule(HOST, datetime(2030, 1, 2)), "invalid")
    refused(space, Reschedule(HOST, T0 - timedelta(hours=1)), "invalid")


def test_start_early_by_cohost_and_refusals() -> None:
    space = with_speakers(with_cohosts(scheduled(), C1), 1)
    refused(
        space,
        Start(SPEAKERS[0]),
        "not_allowed",
        f"only the host or a co-host can start a space; {SPEAKERS[0]} is a speaker",
    )
    refused(space, Start(LISTENER), "not_allowed")
    started, events = run(space, Start(C1))  # an hour early
    assert started.state is SpaceState.LIVE
    assert started.started_at == T0 + timedelta(minutes=1)
    assert events == [
        SpaceStarted(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            by=C1,
            scheduled_start=T0 + timedelta(hours=1),
        )
    ]
    assert started.stage_members() == (HOST, C1, SPEAKERS[0])
    refused(started, Start(HOST), "wrong_state")


def test_start_late() -> None:
    space, events = apply(scheduled(), Start(HOST), T0 + timedelta(days=3))
    assert space.started_at == T0 + timedelta(days=3)
    assert isinstance(events[0], SpaceStarted)


def test_end_live_space() -> None:
    space, _ = run(live(), RequestToSpeak(LISTENER), Invite(HOST, C3))
    ended, events = run(space, End(HOST))
    assert ended.state is SpaceState.ENDED and ended.ended_at == T0 + timedelta(minutes=1)
    assert ended.requests == () and ended.invited == ()
    assert events == [
        SpaceEnded(space_id="sp1", at=T0 + timedelta(minutes=1), by=HOST, started_at=T0)
    ]


def test_end_cancels_scheduled_space() -> None:
    ended, events = run(scheduled(), End(HOST))
    assert ended.state is SpaceState.ENDED and ended.started_at is None
    assert isinstance(events[0], SpaceEnded) and events[0].started_at is None


def test_cohost_cannot_end() -> None:
    error = refused(
        with_cohosts(live(), C1),
        End(C1),
        "not_allowed",
        f"only the host can end a space; {C1} is a co-host",
    )
    assert error.http_status == 403


EVERY_ACTION: list[Action] = [
    Reschedule(HOST, T0 + timedelta(hours=9)),
    Start(HOST),
    End(HOST),
    Invite(HOST, LISTENER),
    AcceptInvite(C3),
    DeclineInvite(C3),
    RequestToSpeak(LISTENER),
    CancelRequest(LISTENER),
    AcceptRequest(HOST, LISTENER),
    DenyRequest(HOST, LISTENER),
    LeaveStage(SPEAKERS[0]),
    Mute(HOST, HOST),
    Unmute(SPEAKERS[0], SPEAKERS[0]),
    RemoveFromStage(HOST, SPEAKERS[0]),
    Block(HOST, LISTENER),
    AddCohost(HOST, LISTENER),
    RemoveCohost(HOST, C1),
    React(LISTENER, "🔥"),
]


def test_every_action_type_is_in_the_table_and_in_this_list() -> None:
    assert set(TRANSITIONS) == set(get_args(Action)) == {type(a) for a in EVERY_ACTION}


@pytest.mark.parametrize("action", EVERY_ACTION, ids=lambda a: type(a).__name__)
def test_nothing_changes_after_end(action: Action) -> None:
    space = with_speakers(with_cohosts(live(), C1), 1)
    space, _ = run(space, Invite(HOST, C3), RequestToSpeak(LISTENER), End(HOST))
    before = space.to_dict()
    error = refused(space, action, "wrong_state", "space has ended: no further changes")
    assert error.http_status == 409
    assert space.to_dict() == before


# -- invitations ----------------------------------------------------------------------------


def test_invite_accept_and_decline() -> None:
    space, events = run(live(), Invite(HOST, "user:a"), Invite(HOST, "user:b"))
    assert space.invited == ("user:a", "user:b")
    assert events[0] == SpeakerInvited(
        space_id="sp1", at=T0 + timedelta(minutes=1), by=HOST, identity="user:a"
    )
    space, events = run(space, AcceptInvite("user:a"))
    assert space.role_of("user:a") is StageRole.SPEAKER and space.is_muted("user:a")
    assert space.invited == ("user:b",)
    assert events == [
        SpeakerJoined(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            identity="user:a",
            role=StageRole.SPEAKER,
            via="invitation",
            muted=True,
        )
    ]
    space, events = run(space, DeclineInvite("user:b"))
    assert space.invited == () and space.role_of("user:b") is None
    assert events == [
        InvitationDeclined(space_id="sp1", at=T0 + timedelta(minutes=1), identity="user:b")
    ]


def test_invite_while_scheduled_prepares_the_stage() -> None:
    space, _ = run(scheduled(), Invite(HOST, "user:a"), AcceptInvite("user:a"))
    assert space.state is SpaceState.SCHEDULED and space.seats_taken == 2


def test_invite_refusals() -> None:
    space = with_speakers(with_cohosts(live(), C1), 1)
    space, _ = run(space, RequestToSpeak(LISTENER), Invite(C1, "user:x"))
    refused(
        space,
        Invite(SPEAKERS[0], "user:y"),
        "not_allowed",
        f"only the host or a co-host can invite speakers; {SPEAKERS[0]} is a speaker",
    )
    refused(
        space,
        Invite("user:nobody", "user:y"),
        "not_allowed",
        "only the host or a co-host can invite speakers; user:nobody is a listener",
    )
    refused(
        space,
        Invite(HOST, SPEAKERS[0]),
        "conflict",
        f"{SPEAKERS[0]} is already on stage as a speaker",
    )
    refused(space, Invite(HOST, "user:x"), "conflict", "user:x is already invited to speak")
    refused(
        space,
        Invite(HOST, LISTENER),
        "conflict",
        f"{LISTENER} has a pending request to speak; accept the request instead",
    )
    refused(space, Invite(HOST, ""), "invalid")


def test_accept_or_decline_without_invitation() -> None:
    refused(
        live(),
        AcceptInvite(LISTENER),
        "no_such_invite",
        f"{LISTENER} has no pending invitation to speak",
    )
    error = refused(live(), DeclineInvite(LISTENER), "no_such_invite")
    assert error.http_status == 404


def test_invite_and_accept_refused_when_stage_full() -> None:
    space = with_cohosts(live(), C1, C2)
    space = with_speakers(space, 9)
    space, _ = run(space, Invite(HOST, "user:late"), Invite(HOST, SPEAKERS[9]))
    space, _ = run(space, AcceptInvite(SPEAKERS[9]))
    assert space.seats_taken == 13
    refused(space, Invite(HOST, "user:more"), "stage_full", "stage is full: 13 of 13 seats taken")
    error = refused(
        space, AcceptInvite("user:late"), "stage_full", "stage is full: 13 of 13 seats taken"
    )
    assert error.http_status == 409
    assert "user:late" in space.invited  # the invitation survives; a seat may free up
    space, _ = run(space, LeaveStage(SPEAKERS[0]), AcceptInvite("user:late"))
    assert space.seats_taken == 13 and space.role_of("user:late") is StageRole.SPEAKER


# -- speak requests -------------------------------------------------------------------------


def test_request_cancel_accept_deny() -> None:
    space, events = run(live(), RequestToSpeak("user:a"), RequestToSpeak("user:b"))
    assert space.requests == ("user:a", "user:b")
    assert events[1] == SpeakRequested(
        space_id="sp1", at=T0 + timedelta(minutes=1), identity="user:b", position=2
    )
    space, events = run(space, AcceptRequest(HOST, "user:b"))
    assert space.requests == ("user:a",) and space.speakers == ("user:b",)
    assert space.is_muted("user:b")
    assert [type(e) for e in events] == [SpeakRequestAccepted, SpeakerJoined]
    assert isinstance(events[1], SpeakerJoined) and events[1].via == "request"
    space, events = run(space, RequestToSpeak("user:c"), DenyRequest(HOST, "user:c"))
    assert events[1] == SpeakRequestDenied(
        space_id="sp1", at=T0 + timedelta(minutes=1), by=HOST, identity="user:c"
    )
    space, events = run(space, CancelRequest("user:a"))
    assert space.requests == ()
    assert events == [
        SpeakRequestCancelled(space_id="sp1", at=T0 + timedelta(minutes=1), identity="user:a")
    ]


def test_request_refusals() -> None:
    refused(
        scheduled(),
        RequestToSpeak(LISTENER),
        "wrong_state",
        "cannot request to speak: the space is scheduled (possible only while live)",
    )
    space, _ = run(with_speakers(live(), 1), RequestToSpeak("user:a"), Invite(HOST, "user:i"))
    refused(
        space,
        RequestToSpeak("user:a"),
        "conflict",
        "user:a has already requested to speak (position 1 in the queue)",
    )
    refused(
        space,
        RequestToSpeak(SPEAKERS[0]),
        "conflict",
        f"only listeners can request to speak; {SPEAKERS[0]} is already on stage as a speaker",
    )
    refused(
        space,
        RequestToSpeak("user:i"),
        "conflict",
        "user:i is already invited to speak; accept the invitation instead",
    )
    refused(
        space, CancelRequest("user:b"), "no_such_request", "user:b has no pending request to speak"
    )
    refused(space, AcceptRequest(HOST, "user:b"), "no_such_request")
    refused(space, DenyRequest(HOST, "user:b"), "no_such_request")
    refused(
        space,
        AcceptRequest(SPEAKERS[0], "user:a"),
        "not_allowed",
        f"only the host or a co-host can accept speak requests; {SPEAKERS[0]} is a speaker",
    )
    refused(space, DenyRequest("user:a", "user:a"), "not_allowed")


def test_request_queue_limit() -> None:
    space = replace(live(), requests=tuple(f"anon:{i}" for i in range(MAX_PENDING_REQUESTS)))
    refused(
        space,
        RequestToSpeak(LISTENER),
        "queue_full",
        "the speak request queue is full: 1000 of 1000 pending",
    )


def test_accept_request_stage_full_messages() -> None:
    space = with_speakers(with_cohosts(live(), C1), 10)
    space, _ = run(space, RequestToSpeak(LISTENER))
    refused(
        space,
        AcceptRequest(C1, LISTENER),
        "stage_full",
        "all 10 speaker seats are taken (12 of 13 stage seats in use; "
        "the rest are reserved for co-hosts)",
    )
    space = with_cohosts(space, C2)
    refused(
        space, AcceptRequest(HOST, LISTENER), "stage_full", "stage is full: 13 of 13 seats taken"
    )
    assert space.requests == (LISTENER,)


# -- leaving, muting, removing ----------------------------------------------------------------


def test_leave_stage() -> None:
    space = with_speakers(with_cohosts(live(), C1), 1)
    space, events = run(space, LeaveStage(SPEAKERS[0]), LeaveStage(C1))
    assert space.stage_members() == (HOST,) and space.muted == frozenset()
    assert events == [
        SpeakerLeft(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            identity=SPEAKERS[0],
            role=StageRole.SPEAKER,
        ),
        SpeakerLeft(
            space_id="sp1", at=T0 + timedelta(minutes=1), identity=C1, role=StageRole.COHOST
        ),
    ]
    refused(
        space,
        LeaveStage(HOST),
        "not_allowed",
        "the host cannot leave the stage; end the space instead",
    )
    refused(
        space,
        LeaveStage(LISTENER),
        "not_on_stage",
        f"{LISTENER} is not on the stage and cannot leave the stage",
    )


def test_mute_rules() -> None:
    space = with_speakers(with_cohosts(live(), C1, C2), 2)
    s0, s1 = SPEAKERS[0], SPEAKERS[1]
    space, _ = run(space, Unmute(s0, s0), Unmute(s1, s1), Unmute(C1, C1), Unmute(C2, C2))
    assert space.muted == frozenset()
    # self-mute works for everyone on stage
    muted, events = run(space, Mute(HOST, HOST), Mute(s0, s0))
    assert muted.muted == {HOST, s0}
    assert events[1] == SpeakerMuted(
        space_id="sp1", at=T0 + timedelta(minutes=1), by=s0, identity=s0
    )
    # host and co-hosts mute those below them
    muted, _ = run(space, Mute(HOST, C1), Mute(C2, s0), Mute(HOST, s1))
    assert muted.muted == {C1, s0, s1}
    refused(
        space,
        Mute(C1, C2),
        "not_allowed",
        f"{C1} is a co-host and cannot mute {C2}, who is a co-host; only the host can",
    )
    refused(
        space,
        Mute(C1, HOST),
        "not_allowed",
        f"{C1} is a co-host and cannot mute {HOST}, who is the host; nobody else can",
    )
    refused(
        space,
        Mute(s0, s1),
        "not_allowed",
        f"{s0} is a speaker and cannot mute {s1}, who is a speaker; only the host or a co-host can",
    )
    refused(space, Mute(HOST, LISTENER), "not_on_stage", f"{LISTENER} is not on the stage")
    refused(space, Mute(LISTENER, s0), "not_on_stage")
    refused(muted, Mute(HOST, s0), "conflict", f"{s0} is already muted")


def test_unmute_only_self() -> None:
    space = with_speakers(live(), 1)
    s0 = SPEAKERS[0]
    assert space.is_muted(s0)  # people join the stage muted
    refused(
        space,
        Unmute(HOST, s0),
        "not_allowed",
        f"only {s0} can unmute themselves; others may mute but never unmute them",
    )
    space, events = run(space, Unmute(s0, s0))
    assert not space.is_muted(s0)
    assert events == [SpeakerUnmuted(space_id="sp1", at=T0 + timedelta(minutes=1), identity=s0)]
    refused(space, Unmute(s0, s0), "conflict", f"{s0} is not muted")
    refused(space, Unmute(LISTENER, LISTENER), "not_on_stage")


def test_remove_from_stage() -> None:
    space = with_speakers(with_cohosts(live(), C1, C2), 2)
    s0, s1 = SPEAKERS[0], SPEAKERS[1]
    removed, events = run(space, RemoveFromStage(C1, s0), RemoveFromStage(HOST, C2))
    assert removed.stage_members() == (HOST, C1, s1)
    assert not removed.is_muted(s0) and not removed.is_blocked(s0)
    assert events == [
        SpeakerRemoved(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            by=C1,
            identity=s0,
            role=StageRole.SPEAKER,
            reason="removed",
        ),
        SpeakerRemoved(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            by=HOST,
            identity=C2,
            role=StageRole.COHOST,
            reason="removed",
        ),
    ]
    # a removed speaker may ask again
    again, _ = run(removed, RequestToSpeak(s0))
    assert again.requests == (s0,)
    refused(
        space,
        RemoveFromStage(C1, C2),
        "not_allowed",
        f"{C1} is a co-host and cannot remove {C2}, who is a co-host; only the host can",
    )
    refused(
        space, RemoveFromStage(C1, HOST), "not_allowed", "the host cannot be removed from the stage"
    )
    refused(
        space,
        RemoveFromStage(C1, C1),
        "not_allowed",
        f"{C1} cannot remove themselves from the stage; leave the stage instead",
    )
    refused(space, RemoveFromStage(s0, s1), "not_allowed")
    refused(space, RemoveFromStage(HOST, LISTENER), "not_on_stage")


# -- blocking -------------------------------------------------------------------------------


def test_block_speaker_removes_and_bars_forever() -> None:
    space = with_speakers(with_cohosts(live(), C1), 1)
    s0 = SPEAKERS[0]
    space, events = run(space, Block(C1, s0))
    assert space.is_blocked(s0) and space.role_of(s0) is None and not space.is_muted(s0)
    assert [type(e) for e in events] == [SpeakerRemoved, IdentityBlocked]
    assert isinstance(events[0], SpeakerRemoved) and events[0].reason == "blocked"
    assert events[1] == IdentityBlocked(
        space_id="sp1",
        at=T0 + timedelta(minutes=1),
        by=C1,
        identity=s0,
        removed_from_stage=True,
        request_dropped=False,
        invitation_dropped=False,
    )
    blocked_detail = f"{s0} is blocked from this space"
    for action in (RequestToSpeak(s0), React(s0, "👏"), AcceptInvite(s0), LeaveStage(s0)):
        error = refused(space, action, "blocked", blocked_detail)
        assert error.http_status == 403
    refused(space, Invite(HOST, s0), "blocked", blocked_detail)
    refused(space, AddCohost(HOST, s0), "blocked", blocked_detail)
    refused(space, Block(HOST, s0), "conflict", f"{s0} is already blocked")


def test_block_drops_request_and_invitation() -> None:
    space, _ = run(live(), RequestToSpeak("user:r"), Invite(HOST, "user:i"))
    space, events = run(space, Block(HOST, "user:r"), Block(HOST, "user:i"), Block(HOST, LISTENER))
    assert space.requests == () and space.invited == ()
    assert space.blocked == {"user:r", "user:i", LISTENER}
    assert [
        (e.request_dropped, e.invitation_dropped, e.removed_from_stage)
        for e in events
        if isinstance(e, IdentityBlocked)
    ] == [
        (True, False, False),
        (False, True, False),
        (False, False, False),
    ]


def test_blocked_invitee_cannot_accept() -> None:
    space, _ = run(live(), Invite(HOST, "user:i"), Block(HOST, "user:i"))
    refused(space, AcceptInvite("user:i"), "blocked", "user:i is blocked from this space")


def test_block_refusals() -> None:
    space = with_speakers(with_cohosts(live(), C1, C2), 1)
    refused(space, Block(C1, HOST), "not_allowed", "the host cannot be blocked")
    refused(space, Block(HOST, HOST), "not_allowed", "the host cannot be blocked")
    refused(space, Block(C1, C1), "not_allowed", f"{C1} cannot block themselves")
    refused(
        space,
        Block(C1, C2),
        "not_allowed",
        f"{C1} is a co-host and cannot block {C2}, who is a co-host; only the host can",
    )
    refused(
        space,
        Block(SPEAKERS[0], LISTENER),
        "not_allowed",
        f"only the host or a co-host can block people; {SPEAKERS[0]} is a speaker",
    )
    space, events = run(space, Block(HOST, C2))
    assert space.cohosts == (C1,) and space.is_blocked(C2)
    assert isinstance(events[0], SpeakerRemoved) and events[0].role is StageRole.COHOST


# -- co-hosts -------------------------------------------------------------------------------


def test_add_cohost_from_speaker_and_from_audience() -> None:
    space = with_speakers(live(), 1)
    s0 = SPEAKERS[0]
    space, _ = run(space, Unmute(s0, s0), RequestToSpeak(LISTENER))
    space, events = run(space, AddCohost(HOST, s0))
    assert space.cohosts == (s0,) and space.speakers == () and not space.is_muted(s0)
    assert events == [
        CohostAdded(
            space_id="sp1",
            at=T0 + timedelta(minutes=1),
            by=HOST,
            identity=s0,
            previous_role=StageRole.SPEAKER,
        )
    ]
    space, events = run(space, AddCohost(HOST, LISTENER))
    assert space.cohosts == (s0, LISTENER) and space.requests == ()
    assert space.is_muted(LISTENER)
    assert [type(e) for e in events] == [SpeakerJoined, CohostAdded]
    assert isinstance(events[0], SpeakerJoined)
    assert events[0].role is StageRole.COHOST and events[0].via == "cohost"
    assert space.seats_taken == 3


def test_third_cohost_refused() -> None:
    space = with_cohosts(live(), C1, C2)
    error = refused(
        space, AddCohost(HOST, C3), "cohosts_full", "co-host seats are full: 2 of 2 taken"
    )
    assert error.http_status == 409


def test_add_cohost_refusals() -> None:
    space = with_speakers(with_cohosts(live(), C1), 1)
    refused(
        space,
        AddCohost(C1, SPEAKERS[0]),
        "not_allowed",
        f"only the host can add co-hosts; {C1} is a co-host",
    )
    refused(
        space,
        AddCohost(LISTENER, LISTENER),
        "not_allowed",
        f"only the host can add co-hosts; {LISTENER} is a listener",
    )
    refused(
        space, AddCohost(HOST, HOST), "conflict", f"{HOST} is the host and cannot also be a co-host"
    )
    refused(space, AddCohost(HOST, C1), "conflict", f"{C1} is already a co-host")


def test_remove_cohost_demotes_to_speaker() -> None:
    space = with_cohosts(live(), C1, C2)
    space, events = run(space, RemoveCohost(HOST, C1))
    assert space.cohosts == (C2,) and space.speakers == (C1,)
    assert events == [
        CohostRemoved(space_id="sp1", at=T0 + timedelta(minutes=1), by=HOST, identity=C1)
    ]
    refused(
        space, RemoveCohost(HOST, C1), "not_cohost", f"{C1} is not a co-host (they are a speaker)"
    )
    refused(
        space,
        RemoveCohost(C2, C2),
        "not_allowed",
        f"only the host can remove co-hosts; {C2} is a co-host",
    )


def test_remove_cohost_when_speaker_seats_full() -> None:
    space = full_stage()
    refused(
        space,
        RemoveCohost(HOST, C1),
        "stage_full",
        f"cannot make {C1} a speaker again: all 10 speaker seats are taken; "
        "remove them from the stage instead",
    )


# -- reactions ------------------------------------------------------------------------------


def test_react() -> None:
    space = live()
    assert REACTIONS == {"👏", "❤️", "😂", "🔥", "💯", "🙏"}
    for emoji in sorted(REACTIONS):
        same, events = run(space, React(LISTENER, emoji))
        assert same is space
        assert events == [
            ReactionAdded(
                space_id="sp1", at=T0 + timedelta(minutes=1), identity=LISTENER, emoji=emoji
            )
        ]
    _, events = run(space, React(LISTENER, "\u2764"))  # bare heart without variation selector
    assert isinstance(events[0], ReactionAdded) and events[0].emoji == "\u2764\ufe0f"
    refused(space, React(LISTENER, "💩"), "invalid")
    refused(
        scheduled(),
        React(LISTENER, "👏"),
        "wrong_state",
        "cannot react: the space is scheduled (possible only while live)",
    )


# -- input checks ---------------------------------------------------------------------------


def test_apply_input_checks() -> None:
    space = live()
    refused(space, Start(""), "invalid", "actor must be a non-empty identity, got ''")
    with pytest.raises(SpaceError) as info:
        apply(space, React(LISTENER, "👏"), datetime(2030, 1, 1, 12, 5))
    assert info.value.code == "invalid" and "now must be a timezone-aware" in info.value.detail
    with pytest.raises(SpaceError) as info:
        apply(space, object(), T0)  # type: ignore[arg-type]
    assert info.value.detail == "unknown action object"


def test_listener_trying_host_actions() -> None:
    space, _ = run(with_speakers(live(), 1), RequestToSpeak("user:r"))
    for action in (
        End(LISTENER),
        AddCohost(LISTENER, "user:r"),
        RemoveCohost(LISTENER, "user:r"),
        AcceptRequest(LISTENER, "user:r"),
        RemoveFromStage(LISTENER, SPEAKERS[0]),
        Block(LISTENER, "user:r"),
        Invite(LISTENER, "user:r"),
    ):
        error = refused(space, action, "not_allowed")
        assert error.detail.endswith(f"; {LISTENER} is a listener")


def test_error_http_status_mapping() -> None:
    expected = {
        "not_allowed": 403,
        "blocked": 403,
        "wrong_state": 409,
        "stage_full": 409,
        "cohosts_full": 409,
        "queue_full": 409,
        "conflict": 409,
        "not_on_stage": 404,
        "not_cohost": 404,
        "no_such_request": 404,
        "no_such_invite": 404,
        "invalid": 422,
    }
    assert {code.value for code in ErrorCode} == set(expected)
    for code, status in expected.items():
        assert SpaceError(code, "x").http_status == status
    error = SpaceError("stage_full", "stage is full: 13 of 13 seats taken")
    assert str(error) == "stage_full: stage is full: 13 of 13 seats taken"


# -- serialisation --------------------------------------------------------------------------


def test_space_round_trip_through_json() -> None:
    space = full_stage()
    space, _ = run(
        space,
        Mute(HOST, HOST),
        RequestToSpeak("user:r1"),
        RequestToSpeak("user:r2"),
        Block(HOST, "user:bad"),
        LeaveStage(SPEAKERS[3]),
        Invite(HOST, "user:i"),
    )
    data = json.loads(json.dumps(space.to_dict()))
    assert data["created_at"] == "2030-01-01T12:00:00+00:00"
    assert data["muted"] == sorted(data["muted"])
    again = Space.from_dict(data)
    assert again == space
    assert again.requests == ("user:r1", "user:r2")
    ended, _ = run(space, End(HOST))
    assert Space.from_dict(json.loads(json.dumps(ended.to_dict()))) == ended
    sched = scheduled()
    assert Space.from_dict(sched.to_dict()) == sched


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("host"), "lacks the key 'host'"),
        (lambda d: d.update(state="paused"), "'paused' is not a valid SpaceState"),
        (
            lambda d: d.update(created_at="2030-01-01T12:00:00"),
            "created_at must be a timezone-aware",
        ),
        (lambda d: d.update(speakers=[f"u{i}" for i in range(11)]), "11 speakers (at most 10)"),
        (lambda d: d.update(blocked=[HOST]), "a blocked identity is on stage"),
        (lambda d: d.update(muted=["user:nobody"]), "only stage members can be muted"),
        (lambda d: d.update(started_at=None), "a live space has started_at"),
        (lambda d: d.update(cohosts="user:x"), "cohosts must be a list of strings"),
    ],
)
def test_from_dict_refuses_bad_data(mutate: object, fragment: str) -> None:
    data = live().to_dict()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(SpaceError) as info:
        Space.from_dict(data)
    assert info.value.code == "invalid"
    assert fragment in info.value.detail


def test_events_to_dict_are_json_safe_and_kinds_unique() -> None:
    space = with_cohosts(live(), C1)
    events: list[Event] = []
    _, created = create_space("sp1", "Town hall", HOST, T0)
    events.extend(created)
    space, more = run(
        space,
        Invite(HOST, "user:a"),
        AcceptInvite("user:a"),
        Invite(HOST, "user:b"),
        DeclineInvite("user:b"),
        RequestToSpeak("user:c"),
        CancelRequest("user:c"),
        RequestToSpeak("user:d"),
        AcceptRequest(C1, "user:d"),
        RequestToSpeak("user:e"),
        DenyRequest(C1, "user:e"),
        Unmute("user:a", "user:a"),
        Mute(C1, "user:a"),
        LeaveStage("user:a"),
        RemoveFromStage(HOST, "user:d"),
        Block(HOST, "user:e"),
        AddCohost(HOST, "user:f"),
        RemoveCohost(HOST, "user:f"),
        React("user:g", "💯"),
        End(HOST),
    )
    events.extend(more)
    _, rescheduled = run(scheduled(), Reschedule(HOST, T0 + timedelta(hours=3)))
    events.extend(rescheduled)
    kinds = {type(e): e.kind for e in events}
    assert len(kinds) == 19 == len(set(kinds.values()))
    muted = next(e for e in events if isinstance(e, SpeakerMuted))
    assert muted.to_dict() == {
        "kind": "speaker_muted",
        "space_id": "sp1",
        "at": "2030-01-01T12:01:00+00:00",
        "by": C1,
        "identity": "user:a",
    }
    for event in events:
        data = json.loads(json.dumps(event.to_dict()))
        assert data["kind"] == event.kind and data["space_id"] == "sp1"
