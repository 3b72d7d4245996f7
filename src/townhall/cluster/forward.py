"""Forward a media or WHIP request to the node that runs the space (its origin).

The response is streamed back with its status, headers and body; a ``Location`` that
points at the origin is made relative so the client keeps talking to this node. Held LL-HLS
requests stay held: the read timeout is far above the blocking-reload bound.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..api.problems import Problem

logger = logging.getLogger(__name__)

FORWARDED_BY = "x-townhall-forwarded-by"
"""Set on forwarded requests: the origin answers them itself and never forwards again."""

TIMEOUT = httpx.Timeout(connect=3.0, read=60.0, write=10.0, pool=10.0)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def was_forwarded(request: Request) -> bool:
    """True if another node forwarded this request here."""
    return FORWARDED_BY in request.headers


def relative_location(location: str, origin_url: str) -> str:
    """``http://origin:1/api/x`` → ``/api/x``; other values are returned unchanged."""
    if location.startswith(origin_url.rstrip("/") + "/"):
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return location


class Forwarder:
    """One pooled HTTP client for talking to other nodes."""

    def __init__(self, node_id: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._node_id = node_id
        self._client = httpx.AsyncClient(
            timeout=TIMEOUT,
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    async def forward(self, request: Request, origin_url: str) -> Response:
        """Send ``request`` to the same path on ``origin_url`` and stream the answer."""
        skip = _HOP_BY_HOP | {"x-forwarded-for", FORWARDED_BY}
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in skip]
        headers.append((FORWARDED_BY, self._node_id))
        chain = [request.headers.get("x-forwarded-for", "")]
        if request.client is not None:
            chain.append(request.client.host)
        if any(chain):
            headers.append(("x-forwarded-for", ", ".join(c for c in chain if c)))
        body = await request.body()
        target = origin_url.rstrip("/") + request.url.path
        upstream_request = self._client.build_request(
            request.method,
            target,
            params=request.url.query or None,
            headers=headers,
            content=body or None,
        )
        try:
            upstream = await self._client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("origin %s unreachable: %s", origin_url, exc)
            raise Problem(
                502,
                "the node running this space did not answer; try again",
                code="origin_unreachable",
                headers={"Retry-After": "1"},
            ) from None
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if "location" in out_headers:
            out_headers["location"] = relative_location(out_headers["location"], origin_url)
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=out_headers,
            background=BackgroundTask(upstream.aclose),
        )

    async def close(self) -> None:
        await self._client.aclose()
