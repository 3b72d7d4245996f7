"""The web app: HTML pages and static files served by ``townhall serve`` itself.

Pages are static HTML shells (``templates/``) driven by small ES modules (``static/``);
the space id comes from the URL, everything else from the public API. hls.js is copied into
``static/vendor/`` at build time by ``web/build.sh`` (git-ignored, never fetched at run time).
"""

from __future__ import annotations

import logging
import mimetypes
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""Same-origin only; ``blob:`` media is the MediaSource that hls.js attaches."""

PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
}

SpaceId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@cache
def _page(name: str) -> bytes:
    return (TEMPLATES / name).read_bytes()


def page(name: str) -> Response:
    """One HTML page with the security headers every page carries."""
    return Response(_page(name), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def install(app: FastAPI) -> None:
    """Mount ``/static`` and add the HTML routes (hidden from the OpenAPI schema)."""
    mimetypes.add_type("text/javascript", ".mjs")
    mimetypes.add_type("text/javascript", ".js")
    if not (STATIC / "vendor" / "hls.min.mjs").exists():
        logger.warning(
            "static/vendor/hls.min.mjs is missing (run web/build.sh): browsers without "
            "native HLS cannot play"
        )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return page("home.html")

    @app.get("/host", include_in_schema=False)
    async def host() -> Response:
        return page("host.html")

    @app.get("/s/{space_id}", include_in_schema=False)
    async def listen(space_id: SpaceId) -> Response:
        return page("space.html")

    @app.get("/s/{space_id}/replay", include_in_schema=False)
    async def replay(space_id: SpaceId) -> Response:
        return page("replay.html")
