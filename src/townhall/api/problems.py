"""Errors as ``application/problem+json`` (RFC 9457); nothing ever returns a traceback."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import TokenError
from ..spaces.errors import SpaceError
from ..store.redis_client import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    UNAVAILABLE_CODE,
    UNAVAILABLE_DETAIL,
)

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str = "error",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "A sentence that can be shown a person."},
        "code": {"type": "string", "description": "Stable machine-readable reason."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
"""JSON schema of every problem document (RFC 9457 members plus ``code``; extras allowed)."""

PROBLEM_STATUSES = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
"""The error statuses any operation may answer (validation, auth, state, limits, overload)."""

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": _TITLES[status],
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status in PROBLEM_STATUSES
}
"""The error responses of every operation: each one an ``application/problem+json``."""


def document_problems(app: FastAPI) -> None:
    """Declare :data:`PROBLEM_RESPONSES` on every operation of ``app``'s OpenAPI document, in
    one place, whichever router the operation comes from (FastAPI's own 422 entry, which
    claims ``application/json``, is replaced: the handlers below answer problem documents)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        for item in doc.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "responses" in operation:
                    for status, response in PROBLEM_RESPONSES.items():
                        operation["responses"][str(status)] = copy.deepcopy(response)
        doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def problem_response(
    status: int,
    detail: str,
    *,
    code: str = "error",
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://townhall.dev/problems/{code.replace('_', '-')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update(extra)
    hdrs = {"Cache-Control": "no-store", **(headers or {})}
    return Response(
        json.dumps(body, ensure_ascii=False), status, headers=hdrs, media_type=PROBLEM_TYPE
    )


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
            where = "body"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field"
        errors.append({"field": where, "message": msg})
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "request is not valid", errors


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(
            exc.status, exc.detail, code=exc.code, headers=exc.headers, extra=exc.extra
        )

    async def on_space_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, SpaceError)
        return problem_response(exc.http_status, exc.detail, code=str(exc.code))

    async def on_token_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, TokenError)
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else {}
        return problem_response(exc.status, exc.detail, code=exc.code, headers=headers)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail, errors = _describe_validation(exc)
        status = (
            400 if any(e["message"] == "request body is not valid JSON" for e in errors) else 422
        )
        return problem_response(status, detail, code="invalid_request", extra={"errors": errors})

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource"
        if exc.status_code == 405:
            detail = "method not allowed on this resource"
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return problem_response(exc.status_code, detail, code="http_error", headers=headers)

    async def on_store_unavailable(request: Request, exc: Exception) -> Response:
        logger.warning(
            "store unavailable on %s %s: %s", request.method, request.url.path, exc or type(exc)
        )
        return problem_response(
            503,
            UNAVAILABLE_DETAIL,
            code=UNAVAILABLE_CODE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; it has been logged", code="internal")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(SpaceError, on_space_error)
    app.add_exception_handler(TokenError, on_token_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, on_store_unavailable)
    app.add_exception_handler(Exception, on_unexpected)
    document_problems(app)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's,
    but one path is often served by several routes: ``GET`` and ``POST /api/spaces``)."""
    methods = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            methods.append(method)
    return ", ".join(methods)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class BodyLimitMiddleware:
    """Refuses request bodies above ``limit`` bytes with 413, declared or streamed;
    ``larger`` gives some exact paths a limit of their own."""

    def __init__(self, app: ASGIApp, limit: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.default)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    await self._refuse(limit, scope, receive, send)
                    return
        received = 0
        too_big = False

        async def limited_receive() -> Message:
            nonlocal received, too_big
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_big = True
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(limit, scope, receive, send)

    async def _refuse(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, f"request body exceeds the limit of {limit} bytes", code="body_too_large"
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass
