"""Trust and safety: ``GET /ops/flags`` (operators) and the check made when a space is created.

Spaces that imitate a verified host or match scam patterns are *flagged*, not refused: the
flags show on their pages and here. One case is refused at creation, because it has no honest
reading: an account that is not verified titling a space with exactly a verified host's name
(same skeleton, so also its look-alike spellings), e.g. "Elon Musk" or "Еlon Musk".
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from prometheus_client import Counter
from starlette.responses import JSONResponse, Response

from ..spaces import SpaceState
from ..store import Store, User
from ..trust.assess import assess_space
from ..trust.service import assess_stored, verified_index
from .metrics import REGISTRY
from .problems import Problem
from .routes_spaces import caller_for, services
from .views import space_urls, users_for

logger = logging.getLogger(__name__)

router = APIRouter()

FLAGGED_AT_CREATION = Counter(
    "townhall_trust_flagged_spaces_total",
    "Spaces flagged by the trust checks when created, by kind of flag",
    ["kind"],
    registry=REGISTRY,
)
REFUSED_AT_CREATION = Counter(
    "townhall_trust_refused_spaces_total",
    "Spaces refused at creation for taking a verified host's name as their title",
    registry=REGISTRY,
)

STATES: dict[str, set[SpaceState] | None] = {
    "active": {SpaceState.LIVE, SpaceState.SCHEDULED},
    "live": {SpaceState.LIVE},
    "upcoming": {SpaceState.SCHEDULED},
    "ended": {SpaceState.ENDED},
    "all": None,
}


async def screen_new_space(store: Store, user: User, title: str, description: str | None) -> None:
    """Called by ``POST /api/spaces`` before creating: refuse a title that *is* a verified
    host's name from anyone else who is not verified; log and count what would be flagged."""
    index = await verified_index(store)
    if not user.verified:
        taken = index.whole(title, exclude_handle=user.name)
        if taken is not None:
            REFUSED_AT_CREATION.inc()
            logger.warning(
                "refused space titled %r by %s: name of verified host %s",
                title,
                user.name,
                taken.target.host.handle,
            )
            raise Problem(
                422,
                f"the title is the name of verified host “{taken.target.host.display_name}”; "
                "choose a title that does not present the space as theirs",
                code="impersonation",
            )
    flags = assess_space(
        title, description, user.display_name, user.verified, user.name, index
    ).flags
    for flag in flags:
        FLAGGED_AT_CREATION.labels(flag.kind).inc()
    if flags:
        logger.warning("new space by %s flagged: %s", user.name, "; ".join(f.detail for f in flags))


@router.get("/ops/flags", tags=["ops"])
async def flags(
    request: Request,
    status: Annotated[Literal["active", "live", "upcoming", "ended", "all"], Query()] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Response:
    """Spaces flagged for impersonation or scam patterns (operators only), most certain
    first: live and upcoming ones unless ``status`` says otherwise; ``limit`` spaces are
    examined, unlisted and ticketed ones included."""
    svc = services(request)
    caller = await caller_for(request, None)
    if not caller.is_operator:
        raise Problem(403, "flagged spaces are for operators", code="not_allowed")
    index = await verified_index(svc.store)
    found: list[dict[str, Any]] = []
    for space in await svc.spaces.list(STATES[status], limit=limit):
        users = await users_for(svc.store, [space.host])
        host_user = users.get(space.host.partition(":")[2])
        assessment = assess_stored(space, host_user, index)
        if not assessment.flagged:
            continue
        found.append(
            {
                "id": space.id,
                "title": space.title,
                "status": space.state.value,
                "visibility": space.visibility.value,
                "host": {
                    "id": space.host,
                    "name": host_user.display_name if host_user else space.host,
                    "verified": bool(host_user and host_user.verified),
                },
                "score": max(f.score for f in assessment.flags),
                "flags": [f.to_dict() for f in assessment.flags],
                "page_url": space_urls(svc.config.base_url, space.id)["page_url"],
            }
        )
    found.sort(key=lambda s: -float(s["score"]))
    return JSONResponse(
        {
            "spaces": found,
            "examined": status,
            "verified_hosts": len(index),
            "generated_at": datetime.fromtimestamp(svc.clock(), UTC).isoformat(),
        },
        headers={"Cache-Control": "no-store"},
    )
