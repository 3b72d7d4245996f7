"""Paced keep-alive HTTP/1.1 clients: ``connections`` connections, each from its own 127.x
source address, each sending one GET every ``period`` seconds for ``seconds`` (like a
standard-HLS player fetching a segment), reading every response whole.

Run as a child process (``python -m bench.pace URL CONNECTIONS PERIOD SECONDS``) so that
its CPU stays apart from the server it measures; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from ipaddress import IPv4Address
from typing import Any
from urllib.parse import urlsplit

from .common import summary

FIRST_SOURCE = IPv4Address("127.5.0.1")
CONNECT_BATCH = 200
"""Connections opened at once (the server's accept queue is finite)."""


async def _client(
    host: str,
    port: int,
    target: str,
    source: str,
    period: float,
    offset: float,
    end: float,
    out: dict[str, Any],
) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError:
        out["connect_errors"] += 1
        return
    await asyncio.sleep(offset)
    due = time.monotonic()
    try:
        while due < end:
            started = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out["latency"].append(time.monotonic() - started)
            if head.startswith(b"HTTP/1.1 200"):
                out["ok"] += 1
            else:
                out["not_ok"] += 1
            due += period
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    except (OSError, asyncio.IncompleteReadError, ValueError):
        out["errors"] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run(url: str, connections: int, period: float, seconds: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    out: dict[str, Any] = {"ok": 0, "not_ok": 0, "errors": 0, "connect_errors": 0, "latency": []}
    started = time.monotonic()
    end = started + 2.0 + seconds
    tasks = []
    for i in range(connections):
        source = str(FIRST_SOURCE + i)
        offset = 2.0 + period * i / connections - (time.monotonic() - started)
        tasks.append(
            asyncio.create_task(
                _client(host, port, target, source, period, max(0.0, offset), end, out)
            )
        )
        if i % CONNECT_BATCH == CONNECT_BATCH - 1:
            await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    latency = out.pop("latency")
    out["latency_s"] = summary(latency)
    return out


def main() -> None:
    url, connections, period, seconds = sys.argv[1:5]
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(run(url, int(connections), float(period), float(seconds)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
