"""``GET /ops/watch``: the watch's verdict, evidence, timeline and mitigations (operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from ..watch.watch import Watch
from .problems import Problem
from .routes_spaces import caller_for

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
