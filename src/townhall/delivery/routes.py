"""The LL-HLS origin: playlists with blocking reload, immutable parts and segments, replay,
and a standard-HLS variant of the live programme (``std.m3u8``, ``std{k}.m4s``).

Paths: ``/hls/{space}/{name}``, the ticketed form ``/hls/{space}/t/{ticket}/{name}`` and the
listener-link form ``/hls/{space}/l/{kid}/{exp}/{sub64}/{jti}/{mac}/{name}``
(:mod:`townhall.auth.links`: what an nginx edge can check), where relative URIs in the
playlist keep the ticket or link for every later request (works in hls.js, Safari, ffmpeg and
VLC without cookies). An edge verifies the ticket or link and strips it from its cache key so
all listeners share one cached copy.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from ..api.problems import Problem
from ..api.routes_revocations import is_revoked
from ..api.services import Services
from ..auth import Grant, TokenError
from ..auth.links import EXP_RE, JTI_RE, KID_RE, MAC_RE, SUB64_RE
from ..cluster import was_forwarded
from ..packaging import Readiness
from ..spaces import SpaceState, Visibility
from ..watch.feed import ticket_outcome
from ..watch.observations import (
    BAD_REQUEST,
    BLOCKED,
    NO_TICKET,
    NOT_FOUND,
    SERVED,
    SHED,
    Kind,
    Observation,
)
from . import headers as h
from .names import MediaName, parse_media_name

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/hls", tags=["media"])

MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A playlist (live, standard or replay), an init section, a segment, "
        "a part or a standard segment",
        "content": {
            h.PLAYLIST_TYPE: {"schema": {"type": "string"}},
            h.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

SpaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Name = Annotated[str, Path(min_length=1, max_length=40)]
Ticket = Annotated[str, Path(min_length=10, max_length=2048)]
LinkKid = Annotated[str, Path(min_length=1, max_length=64, pattern=rf"^{KID_RE}$")]
LinkExp = Annotated[str, Path(min_length=1, max_length=12, pattern=rf"^{EXP_RE}$")]
LinkSub = Annotated[str, Path(min_length=1, max_length=172, pattern=rf"^{SUB64_RE}$")]
LinkJti = Annotated[str, Path(min_length=1, max_length=32, pattern=rf"^{JTI_RE}$")]
LinkMac = Annotated[str, Path(min_length=22, max_length=22, pattern=rf"^{MAC_RE}$")]
Directive = Annotated[str | None, Query(max_length=20)]

_COUNTED = frozenset({"part", "segment", "standard_segment"})
"""Media requests that count a listener as active."""


@router.get(
    "/{space_id}/{name}",
    summary="Live or replay media (public spaces)",
    response_class=Response,
    responses=MEDIA_RESPONSES,
)
async def media(
    request: Request,
    space_id: SpaceId,
    name: Name,
    hls_msn: Annotated[Directive, Query(alias="_HLS_msn")] = None,
    hls_part: Annotated[Directive, Query(alias="_HLS_part")] = None,
) -> Response:
    """``live.m3u8`` (LL-HLS; ``_HLS_msn``/``_HLS_part`` make a blocking reload),
    ``std.m3u8`` (standard HLS, no blocking reload: ``_HLS_msn``/``_HLS_part`` are ignored),
    ``replay.m3u8``, ``init.mp4``, ``seg{msn}.m4s``, ``part{msn}.{i}.m4s``, ``std{k}.m4s``."""
    return await _serve(request, space_id, name, None, hls_msn, hls_part)


@router.get(
    "/{space_id}/t/{ticket}/{name}",
    summary="Live or replay media with a ticket",
    response_class=Response,
    responses=MEDIA_RESPONSES,
)
async def ticketed_media(
    request: Request,
    space_id: SpaceId,
    ticket: Ticket,
    name: Name,
    hls_msn: Annotated[Directive, Query(alias="_HLS_msn")] = None,
    hls_part: Annotated[Directive, Query(alias="_HLS_part")] = None,
) -> Response:
    """The same media as ``/hls/{space_id}/{name}``, with a listener ticket (a JWT)."""
    return await _serve(request, space_id, name, ticket, hls_msn, hls_part)


@router.get(
    "/{space_id}/l/{kid}/{exp}/{sub64}/{jti}/{mac}/{name}",
    summary="Live or replay media with a listener link",
    response_class=Response,
    responses=MEDIA_RESPONSES,
)
async def linked_media(
    request: Request,
    space_id: SpaceId,
    kid: LinkKid,
    exp: LinkExp,
    sub64: LinkSub,
    jti: LinkJti,
    mac: LinkMac,
    name: Name,
    hls_msn: Annotated[Directive, Query(alias="_HLS_msn")] = None,
    hls_part: Annotated[Directive, Query(alias="_HLS_part")] = None,
) -> Response:
    """The same media as ``/hls/{space_id}/{name}``, with a listener link (the join answer's
    ``std_playlist_url``): the admission of a listener ticket written as path segments an
    nginx edge can check (``secure_link``); see :mod:`townhall.auth.links`. Refused like a
    ticket: 401 ``malformed_token``, ``unknown_key``, ``bad_signature`` (also a link for
    another space), ``expired_token``, ``revoked_token``."""
    link = f"{kid}/{exp}/{sub64}/{jti}/{mac}"
    return await _serve(request, space_id, name, None, hls_msn, hls_part, link=link)


async def _serve(
    request: Request,
    space_id: str,
    name: str,
    ticket: str | None,
    hls_msn: str | None,
    hls_part: str | None,
    *,
    link: str | None = None,
) -> Response:
    """Serve, and tell the watch what was answered."""
    svc: Services = request.app.state.services
    kind: Kind = "playlist" if name.endswith(".m3u8") else "media"
    source = request.client.host if request.client else "unknown"
    subject: str | None = None
    try:
        subject = _listener(request, svc, space_id, ticket, link)
        response = await _serve_checked(request, svc, space_id, name, subject, hls_msn, hls_part)
    except TokenError as err:
        svc.observe(Observation(svc.clock(), kind, source, ticket_outcome(err), None, space_id))
        raise
    except Problem as problem:
        svc.observe(Observation(svc.clock(), kind, source, _outcome(problem), subject, space_id))
        raise
    svc.observe(Observation(svc.clock(), kind, source, SERVED, subject, space_id))
    return response


def _outcome(problem: Problem) -> str:
    if problem.code == "ticket_required":
        return NO_TICKET
    if problem.status == 404:
        return NOT_FOUND
    if problem.status in (400, 422):
        return BAD_REQUEST
    if problem.status == 403:
        return BLOCKED
    return SERVED if problem.status < 400 else SHED


async def _serve_checked(
    request: Request,
    svc: Services,
    space_id: str,
    name: str,
    listener: str | None,
    hls_msn: str | None,
    hls_part: str | None,
) -> Response:
    parsed = parse_media_name(name)
    if parsed is None:
        raise Problem(404, f"no media named {name!r}", code="no_such_media")
    stored = await svc.spaces.get_recent(space_id)
    space = stored.space
    if listener is None and space.visibility is Visibility.TICKETED:
        raise Problem(401, "this space is ticketed: join to get a ticket", code="ticket_required")
    if listener is not None and space.is_blocked(listener):
        raise Problem(403, "you are blocked from this space", code="blocked")
    hub = request.app.state.media
    programme = hub.programme(space_id) if hub is not None else None
    if programme is None and (hub is None or not hub.has_media(space_id)):
        ended = space.state is SpaceState.ENDED
        origin = await svc.cluster.remote_origin(request, space_id, ended=ended)
        if origin is not None:  # another node runs (or recorded) this space
            if parsed.kind in _COUNTED:
                _touch(request, svc, space_id, listener)
            return await svc.cluster.forward(request, origin)
    if parsed.kind == "replay":
        return _replay(hub, space_id, space.state)
    if programme is None:
        if space.state is SpaceState.SCHEDULED:
            raise Problem(
                404,
                "the space has not started yet",
                code="not_started",
                headers={"Retry-After": "2"},
            )
        if parsed.kind in ("segment", "init"):
            return _recorded(hub, space_id, parsed)
        if space.state is SpaceState.LIVE and not was_forwarded(request):
            # live, but no node holds its origin lease right now (a takeover, or Redis just
            # came back): a moment from now it will be found, so say "retry", not "gone"
            raise Problem(
                503,
                "the space's origin is being located; retry in a moment",
                code="origin_unknown",
                headers={"Retry-After": "1"},
            )
        raise Problem(404, "the space is not live on this node", code="not_live")
    if parsed.kind in _COUNTED and not was_forwarded(request):
        _touch(request, svc, space_id, listener)  # forwarded ones were counted by the sender
    match parsed.kind:
        case "live":
            return await _playlist(programme, hls_msn, hls_part)
        case "standard":  # no blocking reload: _HLS_msn/_HLS_part are ignored
            return Response(
                programme.standard_playlist_text(),
                media_type=h.PLAYLIST_TYPE,
                headers={"Cache-Control": h.STANDARD_PLAYLIST},
            )
        case "init":
            return Response(
                programme.get_init(),
                media_type=h.MEDIA_TYPE,
                headers={"Cache-Control": h.IMMUTABLE},
            )
        case "segment":
            data = programme.get_segment(parsed.msn)
            if data is None and await _await_hinted(programme, parsed.msn, None):
                data = programme.get_segment(parsed.msn)
            return _media(data, name)
        case "part":
            data = programme.get_part(parsed.msn, parsed.part)
            if data is None and await _await_hinted(programme, parsed.msn, parsed.part):
                data = programme.get_part(parsed.msn, parsed.part)
            return _media(data, name)
        case "standard_segment":
            return _media(programme.get_standard_segment(parsed.msn), name)
    raise Problem(404, f"no media named {name!r}", code="no_such_media")


def _touch(request: Request, svc: Services, space_id: str, listener: str | None) -> None:
    if listener is None:
        client = request.client.host if request.client else "unknown"
        listener = f"ip:{client}"
    svc.listeners.touch(space_id, listener, svc.clock())


def _listener(
    request: Request, svc: Services, space_id: str, ticket: str | None, link: str | None
) -> str | None:
    if link is not None:  # a link carries only the listen grant, for the space it names
        verified = svc.verify_link(link, space_id=space_id)
        subject, token_id = verified.subject, verified.token_id
    elif ticket is not None:
        claims = svc.verify(ticket, space_id=space_id, grant=Grant.LISTEN)
        subject, token_id = claims.subject, claims.token_id
    else:
        return None
    if is_revoked(request.app, subject, token_id):
        raise TokenError("revoked_token", "this ticket was revoked; join again")
    return subject


async def _playlist(programme: object, hls_msn: str | None, hls_part: str | None) -> Response:
    from ..packaging import ProgrammeStore

    assert isinstance(programme, ProgrammeStore)
    check = programme.check_request(hls_msn, hls_part)
    if check.readiness is Readiness.BAD_REQUEST:
        raise Problem(400, f"bad blocking reload request: {check.reason}", code="bad_hls_request")
    if check.readiness is Readiness.WAIT and check.msn is not None:
        ok = await programme.wait_for_part(check.msn, check.part, programme.blocking_timeout)
        if not ok:
            raise Problem(
                503,
                "the requested part did not appear in time",
                code="part_timeout",
                headers={"Retry-After": "1"},
            )
    cache = h.BLOCKING_PLAYLIST if check.msn is not None else h.LIVE_PLAYLIST
    return Response(
        programme.playlist_text(), media_type=h.PLAYLIST_TYPE, headers={"Cache-Control": cache}
    )


async def _await_hinted(programme: object, msn: int, part: int | None) -> bool:
    """Hold a request for the next part (the preload hint) until it exists."""
    from ..packaging import ProgrammeStore

    assert isinstance(programme, ProgrammeStore)
    nxt_msn, nxt_part = programme.playlist.next_part_position()
    is_next = (part is not None and (msn, part) == (nxt_msn, nxt_part)) or (
        part is None and msn == nxt_msn
    )
    if not is_next:
        return False
    return await programme.wait_for_part(msn, part, programme.blocking_timeout)


def _media(data: bytes | None, name: str) -> Response:
    if data is None:
        raise Problem(
            404, f"{name} does not exist (expired or not produced yet)", code="no_such_media"
        )
    return Response(data, media_type=h.MEDIA_TYPE, headers={"Cache-Control": h.IMMUTABLE})


def _replay(hub: object, space_id: str, state: SpaceState) -> Response:
    if state is not SpaceState.ENDED or hub is None:
        raise Problem(404, "the replay exists once the space has ended", code="no_replay")
    text = hub.replay_text(space_id)  # type: ignore[attr-defined]
    if text is None:
        raise Problem(404, "this space has no recording", code="no_replay")
    return Response(text, media_type=h.PLAYLIST_TYPE, headers={"Cache-Control": h.VOD_PLAYLIST})


def _recorded(hub: object, space_id: str, parsed: MediaName) -> Response:
    if hub is None:
        raise Problem(404, "no recording on this node", code="no_such_media")
    data = hub.recorded_file(space_id, parsed)  # type: ignore[attr-defined]
    if data is None:
        raise Problem(404, "no such recorded media", code="no_such_media")
    return Response(data, media_type=h.MEDIA_TYPE, headers={"Cache-Control": h.IMMUTABLE})
