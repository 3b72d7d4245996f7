"""The minimal HTTP/1.1 client: parsing, keep-alive, timeouts, and source binding on 127.x."""

from __future__ import annotations

import asyncio

import pytest

from townhall.loadgen.client import HttpError, Origin, _parse, connect, fetch
from townhall.loadgen.hls import hint_position, scan
from townhall.loadgen.metrics import parse_requests, rate_between
from townhall.loadgen.runner import LoadSettings, check_settings, source_addresses


def test_parse_content_length_chunked_and_incomplete() -> None:
    buf = bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1")
    parsed = _parse(buf)
    assert parsed is not None
    response, used = parsed
    assert (response.status, response.body, response.close) == (200, b"hello", False)
    assert buf[used:] == b"HTTP/1.1"
    assert _parse(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")) is None
    chunked = bytearray(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    )
    parsed = _parse(chunked)
    assert parsed is not None and parsed[0].body == b"abcde" and parsed[0].close
    assert parsed[1] == len(chunked)
    assert (
        _parse(bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")) is None
    )
    with pytest.raises(HttpError):
        _parse(bytearray(b"SSH-2.0-OpenSSH\r\n\r\n"))


def test_playlist_scan_and_hint() -> None:
    body = (
        b"#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=0.51200\n#EXT-X-MEDIA-SEQUENCE:7\n"
        b'#EXT-X-PART:DURATION=0.512,URI="part7.0.m4s"\n#EXT-X-PART:DURATION=0.512,URI="part7.1.m4s"\n'
        b'#EXT-X-PART:DURATION=0.512,URI="part7.2.m4s"\n#EXT-X-PART:DURATION=0.512,URI="part7.3.m4s"\n'
        b"#EXTINF:2.048,\nseg7.m4s\n"
        b'#EXT-X-PART:DURATION=0.512,URI="part8.0.m4s"\n'
        b'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part8.1.m4s"\n'
    )
    view = scan(body)
    assert view.parts_per_segment == 4 and view.part_target == pytest.approx(0.512)
    assert (view.first_part, view.last_part, view.hint) == ((7, 0), (8, 0), (8, 1))
    assert hint_position(body) == (8, 1)
    assert hint_position(b"#EXTM3U\n") is None


def test_prometheus_counter_by_route_family() -> None:
    text = (
        "# TYPE townhall_http_requests_total counter\n"
        'townhall_http_requests_total{route="/hls/{space_id}/t/{ticket}/{name}",'
        'status="2xx"} 40.0\n'
        'townhall_http_requests_total{route="/hls/{space_id}/{name}",status="4xx"} 2.0\n'
        'townhall_http_requests_total{route="/api/spaces/{space_id}/join",status="2xx"} 5.0\n'
        'townhall_http_requests_total{route="/metrics",status="2xx"} 1.0\n'
    )
    a = parse_requests(text, 1.0)
    assert (a.media, a.joins, a.total) == (42.0, 5.0, 48.0)
    b = parse_requests(text.replace("40.0", "60.0"), 3.0)
    assert rate_between([a, b], 0.0, 5.0) == pytest.approx(10.0)
    assert rate_between([a], 0.0, 5.0) is None


def test_settings_have_hard_caps() -> None:
    ok = LoadSettings("s", "http://127.0.0.1:1", None, listeners=10, ramp=1, duration=5)
    check_settings(ok)
    for bad in (
        {"listeners": 0},
        {"listeners": 1_000_000},
        {"duration": 10_000},
        {"ramp": 5},
        {"workers": 99},
    ):
        with pytest.raises(ValueError):
            check_settings(LoadSettings(**{**ok.__dict__, **bad}))
    assert source_addresses("127.1.0.0/16", 3) == ("127.1.0.1", "127.1.0.2", "127.1.0.3")
    assert len(source_addresses("127.1.0.0/30", 10)) == 2  # reused round-robin by workers


async def test_keep_alive_source_binding_and_timeout() -> None:
    peers: list[str] = []
    requests: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                requests.append(head)
                if b"/slow" in head:
                    await asyncio.sleep(0.5)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    origin = Origin.from_url(f"http://127.0.0.1:{port}")
    try:
        conn = await connect(origin, "127.1.2.3")
        for _ in range(3):
            r = await fetch(conn, "GET", "/a", timeout=2)
            assert (r.status, r.body) == (200, b"ok")
        assert peers == ["127.1.2.3"]  # one connection, from the bound 127.x source address
        assert requests[0].startswith(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:")
        with pytest.raises(HttpError) as err:
            await fetch(conn, "GET", "/slow", timeout=0.2)
        assert err.value.kind == "timeout" and not conn.usable
        other = await connect(origin, "127.1.9.9")
        r = await fetch(other, "POST", "/join", timeout=2)
        assert r.status == 200 and b"Content-Length: 0" in requests[-1]
        assert peers[-1] == "127.1.9.9"
        other.close()
        conn.close()
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.6)  # let the held /slow handler finish and close
    with pytest.raises(ValueError):
        Origin.from_url("https://example.invalid/")
    with pytest.raises(HttpError) as err:
        await connect(Origin("127.0.0.1", 1, "127.0.0.1:1"), "127.1.0.1")
    assert err.value.kind == "connect"
