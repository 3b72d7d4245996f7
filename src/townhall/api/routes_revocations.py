"""Revoked listener tickets: the watch's answer to playlist hammering.

An edge cannot count requests per ticket without a vmod, so hammering tickets are named by
the watch (``mitigations.revoke_tickets``) and revoked here by an operator:
``POST /ops/revocations {"subject": …}`` or ``{"jti": …}`` (optionally with a ``ttl``).
``GET /ops/revocations`` lists them; edges poll it (``townhall edge run --ops-key``) and
refuse those tickets with 401 ``revoked_token`` from their next VCL reload (a few seconds);
the origin refuses them at once (:func:`is_revoked`, checked by the media routes).
With Redis the list is shared by every node (:mod:`townhall.gate.revocations`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat
from starlette.responses import JSONResponse, Response

from ..gate.revocations import DEFAULT_TTL, Revocation, RevocationList
from .problems import Problem
from .routes_spaces import caller_for

router = APIRouter(prefix="/ops", tags=["ops"])


class RevocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9:_.@-]+$", description="Listener id."
    )
    jti: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="Ticket id."
    )
    ttl: StrictFloat | None = Field(default=None, gt=0, le=7 * 24 * 3600, description="Seconds.")
    reason: str | None = Field(default=None, max_length=200)


def revocations_of(app: Any) -> RevocationList:
    """The node's revocation list (the gate's, shared through Redis in a cluster)."""
    services = getattr(app.state, "services", None)
    gate = getattr(services, "gate", None)
    revs = getattr(gate, "revocations", None)
    if not isinstance(revs, RevocationList):
        revs = getattr(app.state, "revocations", None)
        if not isinstance(revs, RevocationList):
            revs = app.state.revocations = RevocationList()
    return revs


def is_revoked(app: Any, subject: str, jti: str) -> bool:
    """Whether a verified ticket of ``subject`` with id ``jti`` was revoked (cheap)."""
    return revocations_of(app).revoked(subject, jti, time.time())


async def _operator(request: Request) -> None:
    caller = await caller_for(request, None)
    if not caller.is_operator:
        raise Problem(403, "revocations are for operators", code="not_allowed")


@router.post("/revocations", status_code=201)
async def revoke(request: Request, body: RevocationRequest) -> Response:
    """Revoke every ticket of a listener (``subject``) or one ticket (``jti``) (operators)."""
    await _operator(request)
    if (body.subject is None) == (body.jti is None):
        raise Problem(422, "give exactly one of 'subject' or 'jti'", code="invalid_request")
    now = time.time()
    rev = Revocation(body.subject, body.jti, now, now + (body.ttl or DEFAULT_TTL), body.reason)
    try:
        await revocations_of(request.app).add(rev, now)
    except ValueError as exc:
        raise Problem(409, str(exc), code="too_many_revocations") from None
    return JSONResponse(asdict(rev), 201, headers={"Cache-Control": "no-store"})


@router.get("/revocations")
async def list_revocations(request: Request) -> Response:
    """The revocations in force (operators; edges poll this)."""
    await _operator(request)
    revs = revocations_of(request.app)
    now = time.time()
    await revs.prune(now)
    items = [asdict(r) for r in revs.active(now)]
    return JSONResponse({"revocations": items}, headers={"Cache-Control": "no-store"})
