"""``POST /ops/edge-report``: an edge reports what it served to an origin without Redis.

``townhall edge run --ops-key KEY`` (no ``--redis``) reads its own access log like a cluster
edge does and, once a second, posts the distinct listeners that fetched media per space and
one batch of the watch's observations (:mod:`townhall.edge.logship`). The origin counts those
listeners as if it had served them (the same distinct-ticket rule, the same 30 s window; a
listener the origin also saw directly is still one listener) and feeds the observations to its
watch. Several edges may report to one origin. With Redis, edges write to Redis instead and
every node reads it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from starlette.responses import JSONResponse, Response

from ..edge.logship import MAX_REPORT_LISTENERS, REPORT_PATH
from ..watch.ingest import decode_entry, feed_watch
from ..watch.watch import Watch
from .problems import Problem
from .routes_spaces import caller_for, services

router = APIRouter(tags=["ops"])

REPORT_MAX_BYTES = 16 * 1024 * 1024
"""Body limit of this route (the app's default is far smaller): a second of a big edge is
up to :data:`MAX_REPORT_LISTENERS` ids and a batch of observations."""

SpaceKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ListenerId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class EdgeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listeners: dict[SpaceKey, list[ListenerId]] = Field(
        default_factory=dict,
        description="Space id → listener ids (ticket subjects) that fetched media through the "
        f"edge since its last report; at most {MAX_REPORT_LISTENERS} ids in all.",
    )
    observations: dict[str, Any] | None = Field(
        default=None,
        description="One batch of the edge's observations for the watch (the document an "
        "edge appends to the Redis stream th:obs).",
    )

    @model_validator(mode="after")
    def _bounded(self) -> EdgeReport:
        total = sum(len(ids) for ids in self.listeners.values())
        if total > MAX_REPORT_LISTENERS:
            raise ValueError(
                f"{total} listener ids in one report; at most {MAX_REPORT_LISTENERS} "
                "(send several reports)"
            )
        return self


@router.post(
    REPORT_PATH,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EdgeReport.model_json_schema()}},
        }
    },
)
async def edge_report(request: Request) -> Response:
    """Count the listeners an edge served and hand its observations to the watch
    (operators: the edge's ``--ops-key``). The caller is checked before the body is read."""
    caller = await caller_for(request, None)
    if not caller.is_operator:
        raise Problem(403, "edge reports are for operators", code="not_allowed")
    try:
        body = EdgeReport.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    svc = services(request)
    decoded = None
    if body.observations is not None:
        try:
            decoded = decode_entry(body.observations)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise Problem(
                422, f"the observation batch is not understood: {exc}", code="invalid_request"
            ) from None
    now = svc.clock()
    counted = 0
    unknown: list[str] = []
    for space_id, ids in body.listeners.items():
        if await svc.store.get_space(space_id) is None:
            unknown.append(space_id)
            continue
        for listener in ids:
            svc.listeners.touch(space_id, listener, now)
        counted += len(ids)
    observed = 0
    watch = getattr(request.app.state, "watch", None)
    if decoded is not None and isinstance(watch, Watch):
        observed = feed_watch(watch, decoded)
    return JSONResponse(
        {"listeners": counted, "unknown_spaces": unknown, "observations": observed},
        headers={"Cache-Control": "no-store"},
    )
