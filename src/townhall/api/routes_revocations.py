"""Revoked listener tickets: the watch's answer to playlist hammering.

An edge cannot count requests per ticket without a vmod, so hammering tickets are named by
the watch (``mitigations.revoke_tickets``) and revoked here by an operator:
``POST /ops/revocations {"subject": …}`` or ``{"jti": …}`` (optionally with a ``ttl``).
``GET /ops/revocations`` lists them; edges poll it (``townhall edge run --ops-key``) and
refuse those tickets with 401 ``revoked_token`` from their next VCL reload (a few seconds);
the origin refuses them at once (:func:`is_revoked`, checked by the media routes).
The list lives in the node's memory (one node; a cluster would share it like the blocks).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from .problems import Problem
from .routes_spaces import caller_for

router = APIRouter(prefix="/ops", tags=["ops"])

MAX_REVOCATIONS = 5_000
DEFAULT_TTL = 6 * 3600.0
"""A revocation outlives any listener ticket it could name (the default ticket lifetime)."""


@dataclass(frozen=True)
class Revocation:
    """One revoked subject or ticket id."""

    subject: str | None
    """Listener id (every ticket of that listener), or None."""
    jti: str | None
    """One ticket's id, or None."""
    created_at: float
    """Unix time it was added."""
    expires_at: float
    """Unix time it lapses."""
    reason: str | None = None
    """Free text."""


class Revocations:
    """The revoked subjects and ticket ids (pure: ``now`` passed in)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Revocation] = {}

    def add(self, rev: Revocation) -> None:
        if len(self._by_key) >= MAX_REVOCATIONS:
            raise ValueError(f"at most {MAX_REVOCATIONS} revocations are kept")
        key = f"s:{rev.subject}" if rev.subject is not None else f"j:{rev.jti}"
        self._by_key[key] = rev

    def revoked(self, subject: str, jti: str, now: float) -> bool:
        for key in (f"s:{subject}", f"j:{jti}"):
            rev = self._by_key.get(key)
            if rev is not None and rev.expires_at > now:
                return True
        return False

    def active(self, now: float) -> list[Revocation]:
        self._by_key = {k: r for k, r in self._by_key.items() if r.expires_at > now}
        return sorted(self._by_key.values(), key=lambda r: r.created_at)


class RevocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9:_.@-]+$", description="Listener id."
    )
    jti: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="Ticket id."
    )
    ttl: float | None = Field(default=None, gt=0, le=7 * 24 * 3600, description="Seconds.")
    reason: str | None = Field(default=None, max_length=200)


def revocations_of(app: Any) -> Revocations:
    """The node's revocation list (created on first use)."""
    revs = getattr(app.state, "revocations", None)
    if not isinstance(revs, Revocations):
        revs = Revocations()
        app.state.revocations = revs
    return revs


def is_revoked(app: Any, subject: str, jti: str) -> bool:
    """Whether a verified ticket of ``subject`` with id ``jti`` was revoked (cheap)."""
    revs = getattr(app.state, "revocations", None)
    return isinstance(revs, Revocations) and revs.revoked(subject, jti, time.time())


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
        revocations_of(request.app).add(rev)
    except ValueError as exc:
        raise Problem(409, str(exc), code="too_many_revocations") from None
    return JSONResponse(asdict(rev), 201, headers={"Cache-Control": "no-store"})


@router.get("/revocations")
async def list_revocations(request: Request) -> Response:
    """The revocations in force (operators; edges poll this)."""
    await _operator(request)
    items = [asdict(r) for r in revocations_of(request.app).active(time.time())]
    return JSONResponse({"revocations": items}, headers={"Cache-Control": "no-store"})
