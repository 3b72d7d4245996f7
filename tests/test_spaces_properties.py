"""Property tests: random action sequences keep the spaces invariants."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings, target
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from townhall.spaces import (
    MAX_COHOSTS,
    MAX_SPEAKERS,
    MAX_STAGE_SEATS,
    REACTIONS,
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
    Invite,
    LeaveStage,
    Mute,
    React,
    RemoveCohost,
    RemoveFromStage,
    RequestToSpeak,
    Reschedule,
    Space,
    SpaceEnded,
    SpaceError,
    SpaceStarted,
    SpaceState,
    SpeakerJoined,
    SpeakerLeft,
    SpeakerMuted,
    SpeakerRemoved,
    SpeakerUnmuted,
    StageRole,
    Start,
    Unmute,
    apply,
    create_space,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOST = "user:host"
POOL = [HOST, *(f"user:{i:02d}" for i in range(15))]  # 16 identities
ORDER = {SpaceState.SCHEDULED: 0, SpaceState.LIVE: 1, SpaceState.ENDED: 2}
KINDS: list[str] = [
    "reschedule",
    "start",
    "end",
    "invite",
    "accept_invite",
    "decline_invite",
    "request",
    "cancel_request",
    "accept_request",
    "deny_request",
    "leave",
    "mute",
    "unmute",
    "remove",
    "block",
    "add_cohost",
    "remove_cohost",
    "react",
]
EMOJI = [*sorted(REACTIONS), "💩"]


def build(kind: str, actor: str, target: str, emoji: str, at: datetime) -> Action:
    match kind:
        case "reschedule":
            return Reschedule(actor, at)
        case "start":
            return Start(actor)
        case "end":
            return End(actor)
        case "invite":
            return Invite(actor, target)
        case "accept_invite":
            return AcceptInvite(actor)
        case "decline_invite":
            return DeclineInvite(actor)
        case "request":
            return RequestToSpeak(actor)
        case "cancel_request":
            return CancelRequest(actor)
        case "accept_request":
            return AcceptRequest(actor, target)
        case "deny_request":
            return DenyRequest(actor, target)
        case "leave":
            return LeaveStage(actor)
        case "mute":
            return Mute(actor, target)
        case "unmute":
            return Unmute(actor, target)
        case "remove":
            return RemoveFromStage(actor, target)
        case "block":
            return Block(actor, target)
        case "add_cohost":
            return AddCohost(actor, target)
        case "remove_cohost":
            return RemoveCohost(actor, target)
        case "react":
            return React(actor, emoji)
    raise AssertionError(kind)


@dataclass
class Projection:
    """Stage roles and mute flags rebuilt from events alone (what a stream consumer sees)."""

    roles: dict[str, StageRole] = field(default_factory=lambda: {HOST: StageRole.HOST})
    muted: set[str] = field(default_factory=set)

    def feed(self, event: Event) -> None:
        match event:
            case SpeakerJoined(identity=who, role=role, muted=muted):
                assert who not in self.roles
                self.roles[who] = role
                if muted:
                    self.muted.add(who)
            case SpeakerLeft(identity=who, role=role) | SpeakerRemoved(identity=who, role=role):
                assert self.roles.pop(who) is role
                self.muted.discard(who)
            case CohostAdded(identity=who):
                self.roles[who] = StageRole.COHOST
            case CohostRemoved(identity=who):
                assert self.roles[who] is StageRole.COHOST
                self.roles[who] = StageRole.SPEAKER
            case SpeakerMuted(identity=who):
                self.muted.add(who)
            case SpeakerUnmuted(identity=who):
                self.muted.discard(who)
            case _:
                pass


class Tracker:
    """Applies actions to one space and checks every invariant after every step."""

    def __init__(self, scheduled: bool) -> None:
        self.now = T0
        start = T0 + timedelta(minutes=30) if scheduled else None
        self.space, events = create_space("sp", "Prop", HOST, T0, scheduled_start=start)
        self.ever_blocked: set[str] = set()
        self.projection = Projection()
        self.max_seats = 1
        self.max_cohosts = 0
        self.successes = 0
        self.check_events(events, self.space)
        self.check()

    def step(self, action: Action, advance: timedelta) -> SpaceError | None:
        self.now += advance
        before = self.space
        snapshot = before.to_dict()
        try:
            after, events = apply(before, action, self.now)
        except SpaceError as error:
            assert error.code in {code.value for code in ErrorCode}
            assert error.detail
            assert before.to_dict() == snapshot
            if before.state is SpaceState.ENDED:
                assert error.code == "wrong_state"
                assert error.detail == "space has ended: no further changes"
            return error
        assert before.state is not SpaceState.ENDED, "an ended space accepted an action"
        assert events, "success without events"
        assert all(e.space_id == before.id and e.at == self.now for e in events)
        assert ORDER[after.state] >= ORDER[before.state], "state moved backwards"
        if after.state is not before.state:
            expected = SpaceStarted if after.state is SpaceState.LIVE else SpaceEnded
            assert any(isinstance(e, expected) for e in events)
        assert after.host == before.host and after.id == before.id
        assert after.blocked >= before.blocked, "an identity was unblocked"
        self.check_events(events, after)
        self.space = after
        self.successes += 1
        self.check()
        return None

    def check_events(self, events: list[Event], after: Space) -> None:
        for event in events:
            self.projection.feed(event)
            if isinstance(event, IdentityBlocked):
                self.ever_blocked.add(event.identity)
        roles = {who: after.role_of(who) for who in after.stage_members()}
        assert self.projection.roles == roles
        assert self.projection.muted == set(after.muted)

    def check(self) -> None:
        space = self.space
        stage = space.stage_members()
        assert space.seats_taken == len(stage) <= MAX_STAGE_SEATS
        assert len(space.cohosts) <= MAX_COHOSTS
        assert len(space.speakers) <= MAX_SPEAKERS
        assert len(set(stage)) == len(stage)
        assert [who for who in POOL if space.role_of(who) is StageRole.HOST] == [HOST]
        assert stage[0] == HOST and not space.is_blocked(HOST)
        assert space.blocked == self.ever_blocked
        assert not space.blocked & (set(stage) | set(space.requests) | set(space.invited))
        assert not set(space.requests) & set(space.invited)
        assert not (set(space.requests) | set(space.invited)) & set(stage)
        assert space.muted <= set(stage)
        assert Space.from_dict(space.to_dict()) == space
        self.max_seats = max(self.max_seats, space.seats_taken)
        self.max_cohosts = max(self.max_cohosts, len(space.cohosts))


identities = st.sampled_from(POOL)
actors = st.one_of(st.just(HOST), identities)  # the host acts often, so more succeeds


class SpacesStateMachine(RuleBasedStateMachine):
    tracker: Tracker

    @initialize(scheduled=st.booleans())
    def create(self, scheduled: bool) -> None:
        self.tracker = Tracker(scheduled)

    @rule(
        kind=st.sampled_from(KINDS),
        actor=actors,
        other=identities,
        emoji=st.sampled_from(EMOJI),
        offset=st.integers(-120, 7200),
        advance=st.integers(0, 600),
    )
    def random_action(
        self, kind: str, actor: str, other: str, emoji: str, offset: int, advance: int
    ) -> None:
        at = self.tracker.now + timedelta(seconds=advance + offset)
        self.tracker.step(build(kind, actor, other, emoji, at), timedelta(seconds=advance))

    @rule(data=st.data())
    def a_moderator_invites(self, data: st.DataObject) -> None:
        space = self.tracker.space
        actor = data.draw(st.sampled_from((HOST, *space.cohosts)))
        listeners = [who for who in POOL if space.role_of(who) is None]
        who = data.draw(st.sampled_from(listeners or POOL))
        self.tracker.step(Invite(actor, who), timedelta(0))

    @rule(who=identities)
    def a_listener_requests(self, who: str) -> None:
        self.tracker.step(RequestToSpeak(who), timedelta(0))

    @rule(data=st.data())
    def an_invitee_answers(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from(self.tracker.space.invited or POOL))
        accept = data.draw(st.booleans())
        self.tracker.step(AcceptInvite(who) if accept else DeclineInvite(who), timedelta(0))

    @rule(data=st.data())
    def a_moderator_answers_a_request(self, data: st.DataObject) -> None:
        space = self.tracker.space
        actor = data.draw(st.sampled_from((HOST, *space.cohosts)))
        target = data.draw(st.sampled_from(space.requests or POOL))
        accept = data.draw(st.booleans())
        action = AcceptRequest(actor, target) if accept else DenyRequest(actor, target)
        self.tracker.step(action, timedelta(0))

    @invariant()
    def invariants_hold(self) -> None:
        if hasattr(self, "tracker"):
            self.tracker.check()

    def teardown(self) -> None:
        if hasattr(self, "tracker"):  # steer generation towards crowded stages
            target(float(self.tracker.max_seats), label="max seats on stage")
            note_event(f"final state {self.tracker.space.state.value}")
            note_event(f"max seats {self.tracker.max_seats // 4 * 4}+")


SpacesStateMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSpacesStateMachine = SpacesStateMachine.TestCase


# -- a long seeded random walk that provably reaches the edges (full stage, 2 co-hosts) ------


NOISE_KINDS = [kind for kind in KINDS if kind not in ("end", "block")]


def plausible_action(rng: random.Random, space: Space, now: datetime) -> Action:
    """Mostly sensible actions (so the stage fills up), with random noise mixed in."""
    moderators = [HOST, *space.cohosts]
    mod = rng.choice(moderators) if rng.random() < 0.9 else rng.choice(POOL)
    listeners = [who for who in POOL if space.role_of(who) is None]
    anyone = rng.choice(POOL)
    on_stage = list(space.stage_members())
    choices: list[Action] = [
        Invite(mod, rng.choice(listeners or POOL)),
        RequestToSpeak(rng.choice(listeners or POOL)),
        React(anyone, rng.choice(EMOJI)),
        Mute(rng.choice(on_stage), rng.choice(on_stage)),
        Unmute(anyone, anyone),
        build(rng.choice(NOISE_KINDS), rng.choice(POOL), rng.choice(POOL), "🔥", now),
    ]
    if space.invited:
        choices += [AcceptInvite(rng.choice(space.invited))] * 4
    if space.requests:
        choices += [AcceptRequest(mod, rng.choice(space.requests))] * 3
    if rng.random() < 0.15:
        choices.append(AddCohost(HOST, anyone))
    if rng.random() < 0.06:
        choices += [RemoveFromStage(mod, anyone), LeaveStage(anyone)]
        if len(space.blocked) < 2:  # keep enough identities to fill the 13 seats
            choices.append(Block(mod, anyone))
    if rng.random() < 0.03:
        choices += [RemoveCohost(HOST, anyone), DeclineInvite(anyone), CancelRequest(anyone)]
    if space.state is SpaceState.SCHEDULED and rng.random() < 0.1:
        choices.append(Start(mod))
    return rng.choice(choices)


@pytest.mark.parametrize("seed", range(12))
def test_seeded_random_walk_reaches_the_limits(seed: int) -> None:
    rng = random.Random(seed)
    tracker = Tracker(scheduled=seed % 2 == 0)
    refusals: dict[str, int] = {}
    for _ in range(700):
        error = tracker.step(
            plausible_action(rng, tracker.space, tracker.now), timedelta(seconds=7)
        )
        if error is not None:
            refusals[error.code] = refusals.get(error.code, 0) + 1
    assert tracker.space.state is SpaceState.LIVE
    assert tracker.max_seats == MAX_STAGE_SEATS, "the walk never filled the stage"
    assert tracker.max_cohosts == MAX_COHOSTS
    assert refusals.get("stage_full", 0) > 0 and refusals.get("not_allowed", 0) > 0
    # then the host ends it, and every kind of action is refused without changing anything
    assert tracker.step(End(HOST), timedelta(seconds=1)) is None
    for kind in KINDS:
        for actor in (HOST, POOL[1]):
            error = tracker.step(build(kind, actor, POOL[2], "👏", tracker.now), timedelta(0))
            assert error is not None and error.code == "wrong_state"
