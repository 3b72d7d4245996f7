"""``GET /ops/watch``: the watch's verdict, evidence, timeline and mitigations (operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import JSONResponse, Response

from ..spaces import StageRole
from ..watch.watch import Watch
from .problems import Problem
from .routes_spaces import caller_for, services

router = APIRouter()

SpaceQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("/ops/watch", tags=["ops"])
async def get_watch(request: Request, space: SpaceQuery = None) -> Response:
    """What the watch sees (operators only): the latest verdict (normal, flash crowd, attack
    or both) with confidence and evidence, a features digest, the timeline of 10-second
    windows (for one space's joins and listeners with ``?space=ID``), suggested mitigations,
    the learned baseline and the thresholds."""
    caller = await caller_for(request, space)
    if not caller.is_operator:
        raise Problem(403, "the watch is for operators", code="not_allowed")
    watch = getattr(request.app.state, "watch", None)
    if not isinstance(watch, Watch):
        raise Problem(503, "the watch is not running on this node", code="watch_unavailable")
    return JSONResponse(watch.current(space), headers={"Cache-Control": "no-store"})


SpaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("/api/spaces/{space_id}/watch", tags=["stage"])
async def host_watch(request: Request, space_id: SpaceId) -> Response:
    """The host console's view of the watch and the gate for one space (host, co-hosts and
    operators): the verdict headline with its evidence, the admission settings, and this
    space's joins (admitted / queued / refused) and listeners per 10-second window."""
    caller = await caller_for(request, space_id)
    svc = services(request)
    space = (await svc.spaces.get(space_id)).space
    role = space.role_of(caller.identity)
    if role not in (StageRole.HOST, StageRole.COHOST) and not caller.is_operator:
        raise Problem(403, "only the host, a co-host or an operator sees this", code="not_allowed")
    watch = getattr(request.app.state, "watch", None)
    if not isinstance(watch, Watch):
        raise Problem(503, "the watch is not running on this node", code="watch_unavailable")
    picture = watch.current(space_id)
    verdict = picture.get("verdict") or {}
    admission: dict[str, object] = {}
    if svc.gate is not None:
        settings = await svc.gate.rooms.settings(space_id)
        admission = {"rate_per_second": settings.rate, "capacity": settings.capacity}
    counts = await svc.listeners.counts(space_id, svc.clock())
    return JSONResponse(
        {
            "headline": picture.get("headline"),
            "label": verdict.get("label"),
            "confidence": verdict.get("confidence"),
            "evidence": verdict.get("evidence", []),
            "admission": admission,
            "listeners": {"current": counts.current, "peak": counts.peak, "total": counts.total},
            "timeline": picture.get("timeline", [])[-30:],
        },
        headers={"Cache-Control": "no-store"},
    )
