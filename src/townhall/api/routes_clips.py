"""Clips: anyone who may listen cuts up to five minutes of a live or ended space's recording.

``POST /api/spaces/{id}/clips`` with ``{"seconds": 30}`` (the last 30 s) or ``{"start": s,
"end": e}`` (seconds from the start of the recording) answers ``201`` with the clip's URL;
``GET /clips/{id}/{clip}.m4a`` serves it (immutable). Clips are remuxed from complete recorded
segments (no re-encoding) in a worker thread, stored under ``DATA/spaces/{id}/clips/``. The
same range of an ended space always gives the same clip (its id is derived from the range).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator
from starlette.responses import FileResponse, JSONResponse, Response

from ..auth import Grant
from ..spaces import Space, SpaceState, Visibility
from . import schemas
from .caller import resolve
from .problems import Problem
from .services import Services

logger = logging.getLogger(__name__)

router = APIRouter(tags=["listen"])

MAX_CLIP_SECONDS = 300.0
"""Longest clip."""
MAX_CLIPS_PER_SPACE = 500
"""Distinct clip files kept per space; more answers 429."""
CLIP_CACHE = "public, max-age=31536000, immutable"

SpaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ClipFile = Annotated[str, Path(min_length=5, max_length=40, pattern=r"^[A-Za-z0-9_-]+\.m4a$")]


class ClipRequest(BaseModel):
    """Either ``seconds`` (the last N seconds) or ``start`` (and optionally ``end``)."""

    model_config = ConfigDict(extra="forbid")

    seconds: StrictFloat | None = Field(None, gt=0, le=MAX_CLIP_SECONDS, allow_inf_nan=False)
    start: StrictFloat | None = Field(None, ge=0, allow_inf_nan=False)
    end: StrictFloat | None = Field(None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_form(self) -> ClipRequest:
        ranged = self.start is not None or self.end is not None
        if ranged and self.seconds is not None:
            raise ValueError("give either 'seconds' or 'start'/'end', not both")
        if self.end is not None and self.start is None:
            raise ValueError("'end' needs 'start'")
        if self.start is not None and self.end is not None:
            if self.end <= self.start:
                raise ValueError("'end' must be after 'start'")
            if self.end - self.start > MAX_CLIP_SECONDS:
                raise ValueError(f"a clip is at most {MAX_CLIP_SECONDS:.0f} s")
        return self


@dataclass(frozen=True)
class _Clip:
    path: FsPath
    seconds: float
    size: int


def clips_dir(data: FsPath, space_id: str) -> FsPath:
    return data / "spaces" / space_id / "clips"


async def _may_listen(request: Request, svc: Services, space_id: str) -> Space:
    stored = await svc.spaces.get(space_id)
    space = stored.space
    caller = await resolve(request, store=svc.store, verify=svc.verify, space_id=space_id)
    identity = caller.identity if caller is not None else None
    if space.visibility is Visibility.TICKETED:
        allowed = caller is not None and (
            caller.has(Grant.LISTEN) or caller.is_operator or space.is_on_stage(caller.identity)
        )
        if not allowed:
            raise Problem(
                401 if caller is None else 403,
                "this space is ticketed: clipping needs a listen ticket as Bearer",
                code="ticket_required",
                headers={"WWW-Authenticate": "Bearer"} if caller is None else None,
            )
    if identity and space.is_blocked(identity):
        raise Problem(403, "you are blocked from this space", code="blocked")
    if space.state is SpaceState.SCHEDULED:
        raise Problem(409, "the space has not started: nothing is recorded yet", code="not_live")
    return space


def _cut(
    recording: FsPath, target_dir: FsPath, space_id: str, body: ClipRequest, guessable: bool
) -> _Clip:
    """Validate the range against the recording and write the clip (runs in a thread)."""
    import av

    from ..packaging import make_clip
    from ..packaging.recorder import scan_recording

    try:
        segments = scan_recording(recording) if (recording / "init.mp4").exists() else []
    except (OSError, ValueError):
        segments = []
    total = sum(s.duration for s in segments)
    if not segments:
        raise Problem(
            409, "nothing is recorded yet: try again in a few seconds", code="no_recording"
        )
    if body.start is not None:
        start = body.start
        end = body.end if body.end is not None else min(total, start + MAX_CLIP_SECONDS)
        if start >= total or end > total + 1e-3:
            raise Problem(
                422,
                f"[{start:g}, {end:g}] s is not inside the recording (0 to {total:.3f} s)",
                code="out_of_range",
                extra={"recorded_seconds": round(total, 3)},
            )
        lo, hi = start, end
    else:
        seconds = body.seconds if body.seconds is not None else 30.0
        lo, hi = max(0.0, total - seconds), total
    if guessable:  # public audio: the same range is the same clip
        clip_id = hashlib.sha256(f"{space_id}:{lo:.3f}:{hi:.3f}".encode()).hexdigest()[:16]
    else:  # a ticketed space's clip URL must not be derivable from its range
        clip_id = secrets.token_hex(8)
    target = target_dir / f"{clip_id}.m4a"
    if not target.exists():
        target_dir.mkdir(parents=True, exist_ok=True)
        if sum(1 for _ in target_dir.glob("*.m4a")) >= MAX_CLIPS_PER_SPACE:
            raise Problem(
                429,
                f"this space already has {MAX_CLIPS_PER_SPACE} clips",
                code="too_many_clips",
                headers={"Retry-After": "60"},
            )
        try:
            make_clip(recording, target, seconds=None, start=lo, end=hi)
        except ValueError as exc:
            raise Problem(422, f"cannot cut that range: {exc}", code="out_of_range") from None
        except (OSError, av.FFmpegError) as exc:
            logger.exception("clip of %s [%s, %s] failed", space_id, lo, hi)
            raise Problem(
                500, f"the clip could not be written: {exc}", code="clip_failed"
            ) from None
    with av.open(str(target)) as container:
        stream = container.streams.audio[0]
        frames = sum(1 for p in container.demux(stream) if p.size)
        seconds_out = frames * 1024 / (stream.rate or 48000)
    return _Clip(target, seconds_out, os.path.getsize(target))


@router.post("/api/spaces/{space_id}/clips", status_code=201, response_model=schemas.ClipCreated)
async def create_clip(request: Request, space_id: SpaceId, body: ClipRequest) -> Response:
    """Cut a clip of a live or ended space: ``{"seconds": 30}`` or ``{"start": s, "end": e}``
    (seconds from the start of the recording; at most 300 s). Public spaces need no
    credential; ticketed ones a listen ticket as Bearer."""
    svc: Services = request.app.state.services
    space = await _may_listen(request, svc, space_id)
    hub = getattr(request.app.state, "media", None)
    data = svc.config.data
    recording = hub.directory(space_id) if hub is not None else data / "spaces" / space_id / "hls"
    made = await asyncio.to_thread(
        _cut,
        recording,
        clips_dir(data, space_id),
        space_id,
        body,
        space.visibility is not Visibility.TICKETED,
    )
    url = f"/clips/{space_id}/{made.path.name}"
    return JSONResponse(
        {
            "url": url,
            "seconds": round(made.seconds, 3),
            "bytes": made.size,
        },
        status_code=201,
        headers={"Location": url, "Cache-Control": "no-store"},
    )


@router.get(
    "/clips/{space_id}/{clip_file}",
    summary="A clip (audio/mp4)",
    response_class=Response,
    responses={200: {"content": {"audio/mp4": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def get_clip(request: Request, space_id: SpaceId, clip_file: ClipFile) -> Response:
    """Serve a clip. Its URL is unguessable and it never changes."""
    svc: Services = request.app.state.services
    path = clips_dir(svc.config.data, space_id) / clip_file
    if not path.is_file():
        raise Problem(404, "no such clip", code="no_such_clip")
    return FileResponse(path, media_type="audio/mp4", headers={"Cache-Control": CLIP_CACHE})
