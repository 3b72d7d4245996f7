"""A minimal HTTP/1.1 keep-alive client on an asyncio Protocol, for load generation.

One :class:`Connection` is one TCP connection, optionally bound to a source address, with
at most one request in flight (no pipelining). Requests are written by hand; responses are
parsed just enough: status line, ``Content-Length`` or chunked body, ``Connection: close``.
This is an order of magnitude cheaper per request than a general client (no header objects,
no URL objects, no per-request task), which is what lets one core drive ~10 k requests/s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class HttpError(Exception):
    """The connection broke, timed out or answered something that is not HTTP/1.1."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        """Short error class for reports: ``connect``, ``timeout``, ``closed``, ``protocol``."""


@dataclass(frozen=True)
class Response:
    """A complete response."""

    status: int
    """HTTP status code."""
    body: bytes
    """The body (de-chunked)."""
    close: bool
    """The server will close the connection after it."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: host, port and the ``Host`` header value."""

    host: str
    """IP address or name to connect to."""
    port: int
    """TCP port."""
    authority: str
    """``Host`` header (``host:port``)."""

    @classmethod
    def from_url(cls, url: str) -> Origin:
        """``http://host[:port]`` → Origin; ValueError with a sentence for anything else."""
        try:
            parts = urlsplit(url)
            port = parts.port or 80
        except ValueError as exc:  # bad port, broken IPv6 brackets
            raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported, not {url!r}")
        return cls(parts.hostname, port, parts.netloc)


def _parse(buf: bytearray) -> tuple[Response, int] | None:
    """A complete response at the start of ``buf`` and its length, or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise HttpError("protocol", "header too long")
        return None
    head = bytes(buf[:end]).lower()
    if not head.startswith(b"http/1."):
        raise HttpError("protocol", "not an HTTP/1.x response")
    try:
        status = int(head[9:12])
    except ValueError as exc:
        raise HttpError("protocol", "bad status line") from exc
    close = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
    start = end + 4
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
        if length > MAX_BODY_BYTES:
            raise HttpError("protocol", "body too large")
        if len(buf) < start + length:
            return None
        return Response(status, bytes(buf[start : start + length]), close), start + length
    if b"\r\ntransfer-encoding: chunked" in head:
        return _parse_chunked(buf, start, status, close)
    if status in (204, 304) or 100 <= status < 200:
        return Response(status, b"", close), start
    raise HttpError("protocol", "response without length (close-delimited) is not supported")


def _parse_chunked(
    buf: bytearray, pos: int, status: int, close: bool
) -> tuple[Response, int] | None:
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            while trailer_end >= 0 and trailer_end != pos:  # skip trailer fields
                pos = trailer_end + 2
                trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return Response(status, bytes(body), close), pos + 2
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        if len(body) > MAX_BODY_BYTES:
            raise HttpError("protocol", "body too large")
        pos += size + 2


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._closed = False

    # -- protocol callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = _parse(self._buf)
        except (HttpError, ValueError) as exc:
            self._fail(exc if isinstance(exc, HttpError) else HttpError("protocol", str(exc)))
            return
        if parsed is None:
            return
        response, used = parsed
        del self._buf[:used]
        self._waiter = None
        if response.close:
            self.close()
        waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._transport = None
        self._fail(HttpError("closed", str(exc) if exc else "server closed the connection"))

    # -- API ---------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open and idle: a new request may be sent."""
        return not self._closed and self._transport is not None and self._waiter is None

    def request(
        self, method: str, target: str, *, body: bytes = b"", content_type: str = ""
    ) -> asyncio.Future[Response]:
        """Send a request; the future completes with the response (or an :class:`HttpError`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Response] = loop.create_future()
        if not self.usable or self._transport is None:
            fut.set_exception(HttpError("closed", "connection not usable"))
            return fut
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.origin.authority}\r\n"
        if body or method in ("POST", "PUT"):
            head += f"Content-Length: {len(body)}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        self._waiter = fut
        self._transport.write(head.encode("latin-1") + b"\r\n" + body)
        return fut

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: HttpError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if not self._closed:
            self.close()


async def connect(origin: Origin, source: str | None = None, timeout: float = 10.0) -> Connection:
    """Open a connection to ``origin``, its socket bound to ``source`` (any 127.x address works
    on Linux loopback without configuration)."""
    loop = asyncio.get_running_loop()
    local = (source, 0) if source else None
    try:
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: Connection(origin), origin.host, origin.port, local_addr=local
            ),
            timeout,
        )
    except TimeoutError as exc:
        raise HttpError("connect", "timed out") from exc
    except OSError as exc:
        raise HttpError("connect", exc.strerror or str(exc)) from exc
    return proto


async def fetch(
    conn: Connection,
    method: str,
    target: str,
    timeout: float,
    body: bytes = b"",
    content_type: str = "",
) -> Response:
    """One request with a deadline; on timeout the connection is closed (a held response
    could still arrive and would be misattributed otherwise)."""
    fut = conn.request(method, target, body=body, content_type=content_type)
    loop = asyncio.get_running_loop()
    handle = loop.call_later(timeout, _expire, conn, fut)
    try:
        return await fut
    finally:
        handle.cancel()


def _expire(conn: Connection, fut: asyncio.Future[Response]) -> None:
    if not fut.done():
        fut.set_exception(HttpError("timeout", "no response in time"))
        conn.close()
