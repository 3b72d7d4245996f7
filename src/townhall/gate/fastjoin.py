"""The join fast path: a pure ASGI middleware, outermost, that answers the common
``POST /api/spaces/{id}/join`` (no credential, an empty or small JSON body) without
routing, dependency injection, pydantic or a per-request Request object.

Anything unusual (an ``Authorization`` header, a chunked or large body, a body that is not
a JSON object of ``name``/``queue_ticket`` strings) goes on to the FastAPI route, which
stays the documented endpoint and calls the same :meth:`Gate.join`, so both answer alike.
"""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api.metrics import HTTP_LATENCY, HTTP_REQUESTS
from .service import Answer, Gate, problem

logger = logging.getLogger(__name__)

PREFIX = "/api/spaces/"
SUFFIX = "/join"
ROUTE = "/api/spaces/{space_id}/join"
MAX_BODY = 4096
_SPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIELDS = {"name": 60, "queue_ticket": 4096}


class FastJoin:
    """ASGI middleware answering anonymous joins directly."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate
        self._count = {c: HTTP_REQUESTS.labels(ROUTE, c) for c in ("2xx", "4xx", "5xx")}
        self._latency = HTTP_LATENCY.labels(ROUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            await self.app(scope, receive, send)
            return
        space_id = path[len(PREFIX) : -len(SUFFIX)]
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = MAX_BODY + 1
            elif name == b"authorization" or name == b"transfer-encoding":
                length = MAX_BODY + 1
                break
        if length == -1:
            length = 0 if scope.get("http_version") != "2" else MAX_BODY + 1
        if length > MAX_BODY or not _SPACE_ID.fullmatch(space_id):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = b""
        if length:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if not message.get("more_body", False) or len(body) > MAX_BODY:
                    break
        understood, queue_ticket = _queue_ticket(body)
        if not understood:
            await self.app(scope, _replay(body, receive), send)
            return
        client = scope.get("client")
        source = client[0] if client else "unknown"
        try:
            answer = await self.gate.join(space_id, source, queue_ticket=queue_ticket)
        except Exception:
            logger.exception("join fast path failed for space %s", space_id)
            answer = problem(500, "internal error; it has been logged", "internal", "error")
        await _send(send, answer)
        self._count[f"{answer.status // 100}xx"].inc()
        self._latency.observe(time.perf_counter() - started)


def _queue_ticket(body: bytes) -> tuple[bool, str | None]:
    """(understood, queue ticket): not understood when the body is for the full route to
    judge (and explain)."""
    if body == b"{}" or not body.strip():
        return True, None
    try:
        data = json.loads(body)
    except ValueError:
        return False, None
    if not isinstance(data, dict):
        return False, None
    for key, value in data.items():
        limit = _FIELDS.get(key)
        if limit is None or not (value is None or (isinstance(value, str) and len(value) <= limit)):
            return False, None
    ticket = data.get("queue_ticket")
    return True, ticket if isinstance(ticket, str) else None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send(send: Send, answer: Answer) -> None:
    headers = [
        (b"content-type", answer.media_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
