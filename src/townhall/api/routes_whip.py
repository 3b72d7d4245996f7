"""WHIP (RFC 9725): speakers publish their microphone with one POST of an SDP offer."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from ..auth import Grant
from ..spaces import SpaceState
from ..stage import MAX_OFFER_BYTES, WhipError
from .caller import bearer
from .problems import Problem
from .services import Services

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/spaces", tags=["stage"])

SpaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

OFFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/sdp": {"schema": {"type": "string", "maxLength": MAX_OFFER_BYTES}}
        },
    },
    "responses": {
        "201": {
            "description": "SDP answer; Location names the session",
            "content": {"application/sdp": {"schema": {"type": "string"}}},
        }
    },
}


async def _speaker(request: Request, space_id: str) -> str:
    svc: Services = request.app.state.services
    token = bearer(request)
    if token is None:
        raise Problem(
            401,
            "WHIP needs 'Authorization: Bearer <speak token>'",
            code="unauthenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    claims = svc.verify(token, space_id=space_id, grant=Grant.SPEAK)
    space = (await svc.spaces.get(space_id)).space
    if space.is_blocked(claims.subject):
        raise Problem(403, "you are blocked from this space", code="blocked")
    if space.state is SpaceState.ENDED:
        raise Problem(409, "this space has ended", code="ended")
    if space.state is not SpaceState.LIVE:
        raise Problem(409, "this space is not live yet: the host starts it", code="not_live")
    if not space.is_on_stage(claims.subject):
        raise Problem(403, "you are not on the stage of this space", code="not_on_stage")
    return claims.subject


async def _origin(request: Request, space_id: str) -> str | None:
    """The other node whose stage runs this space, if the request should go there."""
    svc: Services = request.app.state.services
    return await svc.cluster.remote_origin(request, space_id, ended=False)


@router.post("/{space_id}/whip", status_code=201, response_class=Response, openapi_extra=OFFER_BODY)
async def whip_publish(request: Request, space_id: SpaceId) -> Response:
    """Publish a microphone: SDP offer in, SDP answer out (201, ``Location`` for DELETE).
    The answer is sendrecv: the speaker hears the stage (everyone but themselves)."""
    speaker = await _speaker(request, space_id)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise Problem(
            415, "WHIP offers must be sent as Content-Type: application/sdp", code="bad_type"
        )
    body = await request.body()
    if len(body) > MAX_OFFER_BYTES:
        raise Problem(413, f"SDP offer exceeds {MAX_OFFER_BYTES} bytes", code="offer_too_large")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "SDP offer is not UTF-8 text", code="bad_offer") from None
    hub = request.app.state.media
    live = hub.live_space(space_id) if hub is not None else None
    if live is None and (origin := await _origin(request, space_id)) is not None:
        svc: Services = request.app.state.services
        return await svc.cluster.forward(request, origin)
    if live is None:
        raise Problem(
            503,
            "the stage of this space is not on this node",
            code="no_stage",
            headers={"Retry-After": "1"},
        )
    try:
        session = await live.stage.accept_offer(speaker, offer)
    except WhipError as exc:
        raise Problem(exc.status, exc.detail, code="whip_refused") from None
    location = f"/api/spaces/{space_id}/whip/{session.session_id}"
    return Response(
        session.answer_sdp,
        status_code=201,
        media_type="application/sdp",
        headers={
            "Location": location,
            "ETag": f'"{session.session_id}"',
            "Cache-Control": "no-store",
        },
    )


@router.delete("/{space_id}/whip/{session_id}", status_code=200, response_class=Response)
async def whip_delete(request: Request, space_id: SpaceId, session_id: SessionId) -> Response:
    """Leave: close your WHIP session."""
    svc: Services = request.app.state.services
    token = bearer(request)
    if token is None:
        raise Problem(401, "DELETE needs the token used to publish", code="unauthenticated")
    claims = svc.verify(token, space_id=space_id, grant=Grant.SPEAK)
    hub = request.app.state.media
    live = hub.live_space(space_id) if hub is not None else None
    if live is None and (origin := await _origin(request, space_id)) is not None:
        return await svc.cluster.forward(request, origin)
    if live is None:
        raise Problem(404, "no such session", code="no_such_session")
    try:
        closed = await live.stage.close_session(session_id, claims.subject)
    except WhipError as exc:
        raise Problem(exc.status, exc.detail, code="whip_refused") from None
    if not closed:
        raise Problem(404, "no such session", code="no_such_session")
    return Response(status_code=200)


# PATCH (trickle ICE / ICE restart) has no route: every candidate is in the offer and the
# answer, so PATCH gets the router's 405 with 'Allow: DELETE' (RFC 9725).
