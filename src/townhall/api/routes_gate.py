"""Gate controls for operators (and the watch's mitigations): blocks and admission rates.

``POST /ops/blocks`` blocks a source address or a network at the gate (optionally for a
time); ``GET /ops/blocks`` lists them; ``DELETE /ops/blocks/{id}`` lifts one;
``GET /ops/blocks.acl`` is the deny list as plain text (one CIDR a line) for edge
configuration; ``POST /ops/spaces/{id}/admission`` tightens (or loosens) a space's
admission rate and active-listener capacity.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..gate.service import Gate
from .problems import Problem
from .routes_spaces import SpaceId, caller_for, services

router = APIRouter(prefix="/ops", tags=["ops"])

BlockId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class BlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(default=None, max_length=64, description="An IPv4/IPv6 address.")
    network: str | None = Field(
        default=None, max_length=64, description="A network in CIDR form, e.g. 1.2.3.0/24."
    )
    ttl: StrictFloat | None = Field(default=None, gt=0, le=30 * 24 * 3600, description="Seconds.")
    reason: str | None = Field(default=None, max_length=200)


class AdmissionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: StrictFloat = Field(gt=0, le=1_000_000, description="New listeners admitted per second.")
    capacity: StrictInt | None = Field(
        default=None, ge=1, description="Active listeners above which admission pauses."
    )


async def _operator_gate(request: Request) -> Gate:
    caller = await caller_for(request, None)
    if not caller.is_operator:
        raise Problem(403, "gate controls are for operators", code="not_allowed")
    gate = services(request).gate
    if gate is None:
        raise Problem(503, "the gate is not running on this node", code="gate_unavailable")
    return gate


@router.post("/blocks", status_code=201)
async def add_block(request: Request, body: BlockRequest) -> Response:
    """Block a source address or a network at the gate (operators)."""
    gate = await _operator_gate(request)
    try:
        block = await gate.blocks.add(
            source=body.source,
            network=body.network,
            ttl=body.ttl,
            now=gate.clock(),
            reason=body.reason,
        )
    except ValueError as exc:
        raise Problem(422, str(exc), code="invalid_request") from None
    return JSONResponse(
        block.to_dict(),
        201,
        headers={"Location": f"/ops/blocks/{block.id}", "Cache-Control": "no-store"},
    )


@router.get("/blocks")
async def list_blocks(request: Request) -> Response:
    """The blocks in force (operators)."""
    gate = await _operator_gate(request)
    blocks = [b.to_dict() for b in gate.blocks.list.active(gate.clock())]
    return JSONResponse({"blocks": blocks}, headers={"Cache-Control": "no-store"})


@router.get("/blocks.acl", response_class=PlainTextResponse)
async def blocks_acl(request: Request) -> Response:
    """The deny list as text, one CIDR a line (sources as /32 or /128), for edge configs
    (operators)."""
    gate = await _operator_gate(request)
    return PlainTextResponse(
        gate.blocks.list.acl(gate.clock()), headers={"Cache-Control": "no-store"}
    )


@router.delete("/blocks/{block_id}", status_code=204)
async def remove_block(request: Request, block_id: BlockId) -> Response:
    """Lift a block (operators)."""
    gate = await _operator_gate(request)
    if not await gate.blocks.remove(block_id):
        raise Problem(404, f"no block with id {block_id!r}", code="no_such_block")
    return Response(status_code=204)


@router.post("/spaces/{space_id}/admission")
async def admission(request: Request, space_id: SpaceId, body: AdmissionRequest) -> Response:
    """Set a space's admission rate (new listeners per second) and capacity (operators)."""
    gate = await _operator_gate(request)
    await services(request).spaces.get_recent(space_id)
    settings = await gate.configure(space_id, rate=body.rate, capacity=body.capacity)
    return JSONResponse(
        {"space_id": space_id, "rate": settings.rate, "capacity": settings.capacity},
        headers={"Cache-Control": "no-store"},
    )
