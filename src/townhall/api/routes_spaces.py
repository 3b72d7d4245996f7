"""Space routes: create, list, get, reschedule, start, end, join, stage actions, reactions,
state document, grants and the stage event stream."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import spaces as sp
from ..auth import Grant, TokenError
from ..gate.service import JoinCaller
from ..spaces import SpaceState, Visibility
from ..watch.observations import BAD_TICKET, EXPIRED_TICKET, FORGED_TICKET, Observation
from . import schemas
from .abuse import abuse_limits
from .caller import Caller, resolve
from .problems import Problem
from .services import Services
from .views import display_name, space_view, state_document, users_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

SpaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
StageAction = Literal[
    "invite",
    "accept-invite",
    "decline-invite",
    "request",
    "cancel-request",
    "accept",
    "deny",
    "leave",
    "mute",
    "unmute",
    "remove",
    "block",
    "add-cohost",
    "remove-cohost",
]


def services(request: Request) -> Services:
    svc = request.app.state.services
    assert isinstance(svc, Services)
    return svc


async def caller_for(request: Request, space_id: str | None, *, required: bool = True) -> Caller:
    svc = services(request)
    caller = await resolve(request, store=svc.store, verify=svc.verify, space_id=space_id)
    if caller is None:
        if required:
            raise Problem(
                401,
                "this action needs 'Authorization: Bearer <api key or token>'",
                code="unauthenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Caller(identity="", user=None, claims=None)
    return caller


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        json.loads(json.dumps(data, default=_default)), status_code=status, headers=headers
    )


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@router.post("/spaces", status_code=201, response_model=schemas.SpaceCreated, tags=["spaces"])
async def create_space(request: Request, body: schemas.SpaceCreate) -> Response:
    """Create a space (an account's API key). Returns the space, its URLs and a host token."""
    svc = services(request)
    caller = await caller_for(request, None)
    if caller.user is None:
        raise Problem(403, "creating a space needs an account's API key", code="not_allowed")
    from .routes_trust import screen_new_space  # here: routes_trust imports this module

    await screen_new_space(svc.store, caller.user, body.title, body.description)
    stored = await svc.spaces.create(
        caller.user,
        title=body.title,
        description=body.description,
        scheduled_start=body.scheduled_start,
        visibility=body.visibility,
    )
    space = stored.space
    ttl = svc.config.stage_token_ttl
    if space.scheduled_start is not None:
        ahead = (space.scheduled_start - svc.spaces.now()).total_seconds()
        ttl += max(0, int(ahead))
    host_token = svc.issuer.issue(
        subject=space.host,
        space_id=space.id,
        grants={Grant.HOST, Grant.SPEAK, Grant.LISTEN},
        ttl=ttl,
        now=svc.clock(),
    )
    view = await space_view(svc.store, svc.config.base_url, space)
    view["host_token"] = host_token
    return _json(view, 201, {"Location": f"/api/spaces/{space.id}"})


@router.get("/spaces", response_model=schemas.SpaceList, tags=["spaces"])
async def list_spaces(
    request: Request,
    status: Annotated[Literal["live", "upcoming", "ended", "all"], Query()] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Public and ticketed spaces that are live, upcoming, ended or all (unlisted ones are
    reachable only by link)."""
    svc = services(request)
    states = {
        "live": {SpaceState.LIVE},
        "upcoming": {SpaceState.SCHEDULED},
        "ended": {SpaceState.ENDED},
        "all": None,
    }[status]
    found = await svc.spaces.list(states, limit=limit)
    views = [
        await space_view(svc.store, svc.config.base_url, s)
        for s in found
        if s.visibility is not Visibility.UNLISTED
    ]
    return _json({"spaces": views})


@router.get("/spaces/{space_id}", response_model=schemas.SpaceView, tags=["spaces"])
async def get_space(request: Request, space_id: SpaceId) -> Response:
    svc = services(request)
    stored = await svc.spaces.get(space_id)
    return _json(await space_view(svc.store, svc.config.base_url, stored.space))


@router.post("/spaces/{space_id}/reschedule", response_model=schemas.SpaceView, tags=["spaces"])
async def reschedule(request: Request, space_id: SpaceId, body: schemas.Reschedule) -> Response:
    svc = services(request)
    caller = await caller_for(request, space_id)
    space, _ = await svc.spaces.act(space_id, sp.Reschedule(caller.identity, body.scheduled_start))
    return _json(await space_view(svc.store, svc.config.base_url, space))


@router.post("/spaces/{space_id}/start", response_model=schemas.SpaceView, tags=["spaces"])
async def start(request: Request, space_id: SpaceId) -> Response:
    """Go live (host or co-host). The programme exists from this moment."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    current = (await svc.spaces.get(space_id)).space
    if current.state is SpaceState.LIVE and current.role_of(caller.identity) in (
        sp.StageRole.HOST,
        sp.StageRole.COHOST,
    ):  # starting a live space again is a no-op (a space created without a time is live)
        return _json(await space_view(svc.store, svc.config.base_url, current))
    space, _ = await svc.spaces.act(space_id, sp.Start(caller.identity))
    return _json(await space_view(svc.store, svc.config.base_url, space))


@router.post("/spaces/{space_id}/end", response_model=schemas.SpaceView, tags=["spaces"])
async def end(request: Request, space_id: SpaceId) -> Response:
    """End the space (host only); the recording becomes the replay."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    space, _ = await svc.spaces.act(space_id, sp.End(caller.identity))
    return _json(await space_view(svc.store, svc.config.base_url, space))


@router.post(
    "/spaces/{space_id}/join",
    response_model=schemas.JoinResponse,
    responses={
        202: {"model": schemas.QueuedResponse, "description": "wait: poll with queue_ticket"},
        429: {"description": "rate limited (Retry-After)"},
        503: {"description": "shed under load (Retry-After)"},
    },
    tags=["listen"],
)
async def join(
    request: Request,
    space_id: SpaceId,
    body: Annotated[schemas.JoinRequest | None, Body()] = None,
) -> Response:
    """Get a listener ticket and the playlist URL, or a place in the waiting room (202 with
    ``position``, ``eta_seconds``, ``poll_after`` and a signed ``queue_ticket`` to send back
    in the next join). Ticketed spaces need a listen grant; the host, co-hosts and speakers
    are never queued, limited or shed. Anonymous joins are answered by the gate's fast path
    with the same answers."""
    svc = services(request)
    gate = svc.gate
    assert gate is not None
    source = request.client.host if request.client else "unknown"
    try:
        caller = await caller_for(request, space_id, required=False)
    except TokenError as exc:
        svc.observe(Observation(svc.clock(), "join", source, _ticket_outcome(exc), None, space_id))
        raise
    joiner: JoinCaller | None = None
    if caller.identity:
        priority = caller.is_operator or caller.has(Grant.SPEAK) or caller.has(Grant.HOST)
        on_stage = (await svc.spaces.get_recent(space_id)).space.is_on_stage(caller.identity)
        joiner = JoinCaller(
            caller.identity, caller.has(Grant.LISTEN) or on_stage or priority, priority or on_stage
        )
    answer = await gate.join(
        space_id, source, queue_ticket=body.queue_ticket if body else None, caller=joiner
    )
    return Response(
        answer.body, answer.status, headers=dict(answer.headers), media_type=answer.media_type
    )


def _ticket_outcome(exc: TokenError) -> str:
    if exc.code in ("bad_signature", "unknown_key", "bad_algorithm"):
        return FORGED_TICKET
    return EXPIRED_TICKET if exc.code == "expired_token" else BAD_TICKET


@router.post("/spaces/{space_id}/grants", response_model=schemas.TokenResponse, tags=["stage"])
async def grant(request: Request, space_id: SpaceId, body: schemas.GrantRequest) -> Response:
    """Host or co-host issues a listen (ticketed spaces) or speak grant to a subject."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    space = (await svc.spaces.get(space_id)).space
    role = space.role_of(caller.identity)
    if role not in (sp.StageRole.HOST, sp.StageRole.COHOST) and not caller.is_operator:
        raise Problem(403, "only the host or a co-host can issue grants", code="not_allowed")
    subject = body.subject or f"anon:{secrets.token_hex(8)}"
    if space.is_blocked(subject):
        raise Problem(403, f"{subject} is blocked from this space", code="blocked")
    grants = {Grant(g) for g in body.grants}
    if Grant.SPEAK in grants and not space.is_on_stage(subject):
        raise Problem(
            409, "a speak grant is for someone on stage: invite them first", code="not_on_stage"
        )
    now = svc.clock()
    token = svc.issuer.issue(
        subject=subject, space_id=space_id, grants=grants, ttl=body.ttl, now=now
    )
    return _json(
        {
            "token": token,
            "subject": subject,
            "grants": sorted(grants),
            "expires_at": int(now) + body.ttl,
        }
    )


@router.post("/spaces/{space_id}/stage/token", response_model=schemas.TokenResponse, tags=["stage"])
async def stage_token(request: Request, space_id: SpaceId) -> Response:
    """A stage member exchanges their ticket or API key for a speak token."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    space = (await svc.spaces.get(space_id)).space
    if space.is_blocked(caller.identity):
        raise Problem(403, "you are blocked from this space", code="blocked")
    if not space.is_on_stage(caller.identity):
        raise Problem(403, "only stage members get a speak token", code="not_on_stage")
    grants = {Grant.SPEAK, Grant.LISTEN}
    if space.role_of(caller.identity) in (sp.StageRole.HOST, sp.StageRole.COHOST):
        grants.add(Grant.HOST)
    now = svc.clock()
    ttl = svc.config.stage_token_ttl
    token = svc.issuer.issue(
        subject=caller.identity, space_id=space_id, grants=grants, ttl=ttl, now=now
    )
    return _json(
        {
            "token": token,
            "subject": caller.identity,
            "grants": sorted(grants),
            "expires_at": int(now) + ttl,
        }
    )


def _stage_action(action: str, actor: str, target: str | None) -> sp.Action:
    def need() -> str:
        if not target:
            raise Problem(422, f"'{action}' needs a body with a 'target'", code="invalid_request")
        return target

    match action:
        case "invite":
            return sp.Invite(actor, need())
        case "accept-invite":
            return sp.AcceptInvite(actor)
        case "decline-invite":
            return sp.DeclineInvite(actor)
        case "request":
            return sp.RequestToSpeak(actor)
        case "cancel-request":
            return sp.CancelRequest(actor)
        case "accept":
            return sp.AcceptRequest(actor, need())
        case "deny":
            return sp.DenyRequest(actor, need())
        case "leave":
            return sp.LeaveStage(actor)
        case "mute":
            return sp.Mute(actor, target or actor)
        case "unmute":
            return sp.Unmute(actor, target or actor)
        case "remove":
            return sp.RemoveFromStage(actor, need())
        case "block":
            return sp.Block(actor, need())
        case "add-cohost":
            return sp.AddCohost(actor, need())
        case "remove-cohost":
            return sp.RemoveCohost(actor, need())
    raise Problem(404, f"unknown stage action {action!r}", code="unknown_action")


@router.post(
    "/spaces/{space_id}/stage/{action}", response_model=schemas.StageActionResult, tags=["stage"]
)
async def stage(
    request: Request,
    space_id: SpaceId,
    action: StageAction,
    body: Annotated[schemas.TargetBody | None, Body()] = None,
) -> Response:
    """Stage actions. ``target`` is needed for invite, accept, deny, remove, block and the
    co-host actions; mute and unmute default to yourself. ``request`` and ``cancel-request``
    are limited per identity (429 with ``Retry-After``)."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    abuse_limits(request).check_stage_action(action, space_id, caller.identity, svc.clock())
    space, events = await svc.spaces.act(
        space_id, _stage_action(action, caller.identity, body.target if body else None)
    )
    view = await space_view(svc.store, svc.config.base_url, space)
    return _json({"space": view, "events": [e.to_dict() for e in events]})


@router.get("/spaces/{space_id}/stage", response_model=schemas.StageQueue, tags=["stage"])
async def stage_queue(request: Request, space_id: SpaceId) -> Response:
    """Pending requests to speak and open invitations, oldest first (host and co-hosts):
    what a host console shows when it opens, before the event stream brings news."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    space = (await svc.spaces.get(space_id)).space
    if space.role_of(caller.identity) not in (sp.StageRole.HOST, sp.StageRole.COHOST) and not (
        caller.has(Grant.HOST) or caller.is_operator
    ):
        raise Problem(403, "only the host or a co-host sees the stage queue", code="not_allowed")
    users = await users_for(svc.store, [*space.requests, *space.invited])

    def person(ident: str) -> dict[str, str]:
        return {"id": ident, "name": display_name(ident, users)}

    return _json(
        {
            "requests": [person(i) for i in space.requests],
            "invited": [person(i) for i in space.invited],
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/spaces/{space_id}/reactions",
    status_code=202,
    response_model=schemas.ReactionAccepted,
    tags=["listen"],
)
async def react(request: Request, space_id: SpaceId, body: schemas.ReactionBody) -> Response:
    """Send a reaction (listeners with a ticket, or stage members); at most 5 a second per
    identity (bursts of 10). Reactions are counted, never sent on the stage event stream."""
    svc = services(request)
    caller = await caller_for(request, space_id)
    abuse_limits(request).check_reaction(space_id, caller.identity, svc.clock())
    stored = await svc.spaces.get(space_id)
    # the pure core says whether this caller may react now (live, not blocked, known emoji);
    # its ReactionAdded is deliberately not published: only the count in the store changes
    _, events = sp.apply(stored.space, sp.React(caller.identity, body.emoji), svc.spaces.now())
    emoji = str(getattr(events[0], "emoji", body.emoji)) if events else body.emoji
    await svc.store.add_reaction(space_id, emoji)
    return _json({"accepted": True, "emoji": emoji}, 202)


@router.get("/spaces/{space_id}/state", response_model=schemas.StateDocument, tags=["listen"])
async def state(request: Request, space_id: SpaceId) -> Response:
    """Small public state document; an edge may cache it for a second."""
    svc = services(request)
    stored = await svc.spaces.get(space_id)
    now = svc.clock()
    media = getattr(request.app.state, "media", None)
    levels: dict[str, float] = {}
    speaking: frozenset[str] = frozenset()
    if media is not None:
        levels, speaking = media.levels(space_id)
    doc = await state_document(
        svc.store,
        svc.config.base_url,
        stored.space,
        await svc.listeners.counts(space_id, now),
        levels,
        speaking,
        datetime.fromtimestamp(now, UTC).isoformat(),
    )
    return _json(doc, headers={"Cache-Control": "public, max-age=1, stale-while-revalidate=1"})


@router.get(
    "/spaces/{space_id}/events",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    tags=["stage"],
)
async def events(
    request: Request,
    space_id: SpaceId,
    token: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    """Server-sent events: stage members see every stage event; a listener sees the ones
    that concern them (their request accepted, an invitation). ``?token=`` for EventSource."""
    svc = services(request)
    caller = await resolve(
        request, store=svc.store, verify=svc.verify, space_id=space_id, token=token
    )
    if caller is None:
        raise Problem(
            401, "the event stream needs a ticket, token or API key", code="unauthenticated"
        )
    await svc.spaces.get(space_id)
    return StreamingResponse(
        _event_stream(request, svc, space_id, caller),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    request: Request, svc: Services, space_id: str, caller: Caller
) -> AsyncIterator[bytes]:
    yield b": connected\n\nretry: 2000\n\n"
    async with svc.bus.subscribe(space_id) as queue:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            try:
                stored = await svc.spaces.get_recent(space_id, max_age=0.2)
            except Exception:  # store away (e.g. Redis restarting): judge by the event alone
                logger.warning("event stream of %s: store unavailable", space_id)
                stored = None
            on_stage = stored is not None and stored.space.is_on_stage(caller.identity)
            is_member = on_stage or caller.has(Grant.HOST)
            if not is_member and caller.identity not in _mentions(event):
                continue
            data = json.dumps(event, default=_default)
            yield f"event: {event.get('kind', 'message')}\ndata: {data}\n\n".encode()
            if event.get("kind") == "space_ended":
                return


def _mentions(event: dict[str, Any]) -> set[str]:
    return {str(v) for k, v in event.items() if k in ("actor", "target", "identity", "by")}
