"""A real varnishd edge (``townhall edge run``) in front of a counting LL-HLS origin.

The origin counts every request it sees (by path without the ticket, plus query) and holds a
request for a part that is announced but not yet published, like the real origin holds the
preload hint and blocking playlist reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.auth import Grant, Keyring, SigningKey, TokenIssuer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("varnishd") is None, reason="needs Debian's varnish"),
]

HOLD_SECONDS = 4.0
EDGE_CLI = "from townhall.cli.edge import edge_app; edge_app()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- keys and tickets -------------------------------------------------------------------

# Deterministic keys the edge must handle: high bytes, a '"}' sequence (ends a VCL long
# string), a trailing zero byte (inert in HMAC), and one with an inner zero byte (refused).
KEY_A = SigningKey("ka", bytes(range(200, 232)) + b'"}', 2000.0)
KEY_B = SigningKey("kb", bytes(range(1, 32)) + b"\0", 1000.0)
KEY_NUL = SigningKey("kz", b"abc\0def" + bytes(range(40, 65)), 500.0)


def make_keys(path: Path) -> Keyring:
    ring = Keyring([KEY_A, KEY_B, KEY_NUL])
    ring.save(path)
    return ring


def ticket(
    ring: Keyring,
    space: str | None,
    sub: str = "anon:1",
    *,
    grants: frozenset[Grant] = frozenset({Grant.LISTEN}),
    ttl: int = 600,
    now: float | None = None,
    key: SigningKey | None = None,
) -> str:
    issuer = TokenIssuer(Keyring([key]) if key is not None else ring)
    return issuer.issue(subject=sub, space_id=space, grants=grants, ttl=ttl, now=now or time.time())


# --- the counting origin ----------------------------------------------------------------


@dataclass
class CountingOrigin:
    """An LL-HLS-like origin in a thread: counts requests, holds announced parts."""

    port: int = field(default_factory=free_port)
    media: dict[str, bytes] = field(default_factory=dict)
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    tickets: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def announce(self, space: str, name: str) -> None:
        """``name`` will appear: requests for it (and reloads waiting for it) are held."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._announce, f"{space}/{name}")

    def _announce(self, key: str) -> None:
        self.held.setdefault(key, asyncio.Event())

    def publish(self, space: str, name: str, data: bytes) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._publish, f"{space}/{name}", data)

    def _publish(self, key: str, data: bytes) -> None:
        self.media[key] = data
        self.held.setdefault(key, asyncio.Event()).set()

    async def _wait(self, key: str) -> bool:
        if key in self.media:
            return True
        event = self.held.get(key)
        if event is None:
            return False
        try:
            await asyncio.wait_for(event.wait(), HOLD_SECONDS)
        except TimeoutError:
            return False
        return True

    async def hls(self, request: Request) -> Response:
        space = request.path_params["space"]
        name = request.path_params["name"]
        query = f"?{request.url.query}" if request.url.query else ""
        self.hits[f"{space}/{name}{query}"] += 1
        if "ticket" in request.path_params:
            self.tickets.append(request.path_params["ticket"])
        forced = self.status.get(f"{space}/{name}")
        if forced is not None:
            return Response("forced", forced, headers={"Cache-Control": "no-store"})
        if name == "live.m3u8":
            msn = request.query_params.get("_HLS_msn")
            part = request.query_params.get("_HLS_part", "0")
            if msn is not None:
                if not await self._wait(f"{space}/part{msn}.{part}.m4s"):
                    return Response("timeout", 503, headers={"Cache-Control": "no-store"})
                body = f"#EXTM3U\n# up to {msn}.{part}\n".encode()
                return Response(body, headers={"Cache-Control": "public, max-age=6"})
            return Response(b"#EXTM3U\n", headers={"Cache-Control": "public, max-age=1"})
        key = f"{space}/{name}"
        if not await self._wait(key):
            if key in self.held:
                return Response("timeout", 503, headers={"Cache-Control": "no-store"})
            return Response("nope", 404, headers={"Cache-Control": "no-store"})
        return Response(
            self.media[key], headers={"Cache-Control": "public, max-age=31536000, immutable"}
        )

    async def state(self, request: Request) -> Response:
        self.hits[f"state/{request.path_params['space']}"] += 1
        return JSONResponse({"t": time.time()}, headers={"Cache-Control": "public, max-age=1"})

    async def other(self, request: Request) -> Response:
        self.hits[f"other{request.url.path}"] += 1
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hls/{space}/t/{ticket}/{name}", self.hls),
                Route("/hls/{space}/l/{kid}/{exp}/{sub}/{jti}/{mac}/{name}", self.hls),
                Route("/hls/{space}/{name}", self.hls),
                Route("/api/spaces/{space}/state", self.state),
                Route("/{path:path}", self.other, methods=["GET", "POST"]),
            ]
        )

    def origin_hits(self, prefix: str) -> int:
        return sum(n for k, n in self.hits.items() if k.startswith(prefix))


@contextlib.contextmanager
def serve_origin(org: CountingOrigin) -> Iterator[CountingOrigin]:
    """Run ``org`` in a uvicorn server thread on its port until the block ends."""
    config = uvicorn.Config(
        org.app(), host="127.0.0.1", port=org.port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    ready = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        org.loop = loop
        ready.set()
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield org
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def origin() -> Iterator[CountingOrigin]:
    with serve_origin(CountingOrigin()) as org:
        yield org


# --- the edge process ---------------------------------------------------------------


@dataclass
class Edge:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_edge(origin_url: str, keys: Path, log: Path, *extra: str, name: str = "e1") -> Edge:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                EDGE_CLI,
                "run",
                "--origin",
                origin_url,
                "--listen",
                f"127.0.0.1:{port}",
                "--keys",
                str(keys),
                "--name",
                name,
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"edge exited: {log.read_text()}")
        if b"ready on" in log.read_bytes():
            return Edge(f"http://127.0.0.1:{port}", proc, log)
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"edge did not come up: {log.read_text()}")


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keyring, Path]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    return make_keys(path), path


@pytest.fixture(scope="module")
def edge(
    origin: CountingOrigin,
    keyring: tuple[Keyring, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Edge]:
    log = tmp_path_factory.mktemp("edge") / "edge.log"
    e = start_edge(origin.url, keyring[1], log)
    try:
        yield e
    finally:
        assert e.stop() == 0, log.read_text()


def hls(edge: Edge, space: str, tk: str, name: str) -> str:
    return f"{edge.url}/hls/{space}/t/{tk}/{name}"


async def stampede(urls: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(urls) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(u) for u in urls)))


# --- collapsing -------------------------------------------------------------------------


async def test_stampede_on_a_held_part_reaches_the_origin_once(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "collapse"
    origin.announce(space, "part7.2.m4s")
    tickets = [ticket(ring, space, f"anon:{i}") for i in range(200)]
    part_urls = [hls(edge, space, t, "part7.2.m4s") for t in tickets]
    reload_urls = [hls(edge, space, t, "live.m3u8?_HLS_msn=7&_HLS_part=2") for t in tickets]
    task = asyncio.create_task(stampede(part_urls + reload_urls))
    deadline = time.monotonic() + 10
    while origin.origin_hits(f"{space}/") < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the rest of the clients are now waiting at the edge
    assert not task.done()
    assert origin.hits[f"{space}/part7.2.m4s"] == 1
    assert origin.hits[f"{space}/live.m3u8?_HLS_msn=7&_HLS_part=2"] == 1
    payload = os.urandom(4096)
    origin.publish(space, "part7.2.m4s", payload)
    responses = await task
    parts, reloads = responses[:200], responses[200:]
    assert {r.status_code for r in responses} == {200}
    assert {r.content for r in parts} == {payload}
    assert len({r.content for r in reloads}) == 1
    assert origin.hits[f"{space}/part7.2.m4s"] == 1
    assert origin.hits[f"{space}/live.m3u8?_HLS_msn=7&_HLS_part=2"] == 1
    assert origin.origin_hits(f"{space}/") == 2


async def test_ticket_is_not_in_the_cache_key(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "sharedkey"
    origin.publish(space, "seg3.m4s", b"segment-3")
    t_a = ticket(ring, space, "anon:a")
    t_b = ticket(ring, space, "user:bob", key=KEY_B)  # older key, trailing zero byte
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.get(hls(edge, space, t_a, "seg3.m4s"))
        second = await client.get(hls(edge, space, t_b, "seg3.m4s"))
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.content == second.content == b"segment-3"
    assert (first.headers["x-edge-cache"], second.headers["x-edge-cache"]) == ("miss", "hit")
    assert origin.hits[f"{space}/seg3.m4s"] == 1
    assert origin.tickets[-1] == t_a  # the origin still gets a valid ticket on a miss


async def test_blocking_reload_positions_are_separate_objects_and_zeros_normalised(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "positions"
    origin.publish(space, "part4.0.m4s", b"p40")
    origin.publish(space, "part4.1.m4s", b"p41")
    tk = ticket(ring, space)
    async with httpx.AsyncClient(timeout=10) as client:
        for q in (
            "_HLS_msn=4&_HLS_part=0",
            "_HLS_part=0&_HLS_msn=004&x=1",
            "_HLS_msn=4&_HLS_part=00&cb=99",
            "_HLS_msn=4&_HLS_part=1",
        ):
            r = await client.get(hls(edge, space, tk, f"live.m3u8?{q}"))
            assert r.status_code == 200, r.text
    assert origin.hits[f"{space}/live.m3u8?_HLS_msn=4&_HLS_part=0"] == 1
    assert origin.hits[f"{space}/live.m3u8?_HLS_msn=4&_HLS_part=1"] == 1
    assert origin.origin_hits(f"{space}/") == 2


# --- tickets ------------------------------------------------------------------------------


async def test_bad_tickets_are_refused_at_the_edge(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "guarded"
    origin.publish(space, "seg1.m4s", b"secret audio")
    good = ticket(ring, space)
    head, payload, sig = good.split(".")
    forged_key = SigningKey("ka", b"x" * 32, 1.0)
    cases = {
        "forged": (ticket(ring, space, key=forged_key), 401, "bad_signature"),
        "tampered": (
            f"{head}.{payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{sig}",
            401,
            "bad_signature",
        ),
        "unknown kid": (ticket(ring, space, key=SigningKey("kx", b"y" * 32, 1.0)), 401, None),
        "zero-byte key": (ticket(ring, space, key=KEY_NUL), 401, "unknown_key"),
        "expired": (ticket(ring, space, ttl=60, now=time.time() - 120), 401, "expired_token"),
        "other space": (ticket(ring, "elsewhere"), 403, "wrong_space"),
        "no listen grant": (
            ticket(ring, space, grants=frozenset({Grant.SPEAK})),
            403,
            "missing_grant",
        ),
        "garbage": ("not-a-jwt-at-all", 401, "malformed_token"),
        "no space, no operator": (ticket(ring, None), 403, "wrong_space"),
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for label, (tk, status, code) in cases.items():
            r = await client.get(hls(edge, space, tk, "seg1.m4s"))
            assert r.status_code == status, (label, r.text)
            assert r.headers["content-type"] == "application/problem+json", label
            body = r.json()
            assert body["status"] == status
            if code is not None:
                assert body["code"] == code, label
        r = await client.get(f"{edge.url}/hls/{space}/seg1.m4s")
        assert (r.status_code, r.json()["code"]) == (401, "ticket_required")
        ok = await client.get(hls(edge, space, good, "seg1.m4s"))
        assert ok.status_code == 200 and ok.content == b"secret audio"
    assert origin.hits[f"{space}/seg1.m4s"] == 1  # only the good ticket's miss


async def test_operator_ticket_without_space_is_accepted(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "ops"
    origin.publish(space, "init.mp4", b"init")
    issuer = TokenIssuer(ring)
    tk = issuer.issue(
        subject="user:op", space_id=None, grants={Grant.OPERATOR}, ttl=60, now=time.time()
    )
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(hls(edge, space, tk, "init.mp4"))
    assert r.status_code == 200 and r.content == b"init"


# --- cache busting, errors, API -------------------------------------------------------------


async def test_cache_busting_and_unknown_names_never_reach_the_origin(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "busting"
    origin.publish(space, "seg9.m4s", b"nine")
    tk = ticket(ring, space)
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(50):
            r = await client.get(hls(edge, space, tk, f"seg9.m4s?cb={i}&_HLS_msn={i}"))
            assert r.status_code == 200 and r.content == b"nine"
        for name in (
            "seg09.m4s",
            "secret.txt",
            "live.m3u8.bak",
            "part1.2.m4s.x",
            "..%2F..%2Fetc%2Fpasswd",
            "init.mp4/extra",
        ):
            r = await client.get(hls(edge, space, tk, name))
            assert r.status_code == 404, name
        for q in ("_HLS_msn=x", "_HLS_part=1", "_HLS_msn=1&_HLS_part=abcd"):
            r = await client.get(hls(edge, space, tk, f"live.m3u8?{q}"))
            assert r.status_code == 400, q
        r = await client.post(hls(edge, space, tk, "seg9.m4s"))
        assert r.status_code == 405
    assert origin.origin_hits(f"{space}/") == 1


async def test_origin_errors_are_shared_briefly_but_not_kept(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "errors"
    tk = ticket(ring, space)
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(5):
            r = await client.get(hls(edge, space, tk, "seg5.m4s"))
            assert r.status_code == 404
        assert origin.hits[f"{space}/seg5.m4s"] == 1  # the herd shares the 404 ...
        await asyncio.sleep(1.3)
        origin.publish(space, "seg5.m4s", b"five")
        await asyncio.sleep(0.1)
        r = await client.get(hls(edge, space, tk, "seg5.m4s"))
        assert (r.status_code, r.content) == (200, b"five")  # ... for about a second only
        assert origin.hits[f"{space}/seg5.m4s"] == 2
        origin.status[f"{space}/seg6.m4s"] = 403  # about the ticket: never shared
        for _ in range(3):
            r = await client.get(hls(edge, space, tk, "seg6.m4s"))
            assert r.status_code == 403
        assert origin.hits[f"{space}/seg6.m4s"] == 3
        del origin.status[f"{space}/seg6.m4s"]
        origin.publish(space, "seg6.m4s", b"six")
        r = await client.get(hls(edge, space, tk, "seg6.m4s"))
        assert (r.status_code, r.content) == (200, b"six")  # no hit-for-miss left behind
        r = await client.get(hls(edge, space, tk, "seg6.m4s"))
        assert r.headers["x-edge-cache"] == "hit"
        assert origin.hits[f"{space}/seg6.m4s"] == 4


async def test_held_part_timeout_is_shared_then_forgotten(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    ring, _ = keyring
    space = "late"
    origin.announce(space, "part2.0.m4s")
    urls = [hls(edge, space, ticket(ring, space, f"anon:{i}"), "part2.0.m4s") for i in range(30)]
    responses = await stampede(urls)
    assert {r.status_code for r in responses} == {503}
    assert origin.hits[f"{space}/part2.0.m4s"] == 1
    await asyncio.sleep(1.2)
    origin.publish(space, "part2.0.m4s", b"finally")
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(urls[0])
    assert (r.status_code, r.content) == (200, b"finally")


async def test_state_document_is_collapsed_and_other_api_passes(
    edge: Edge, origin: CountingOrigin
) -> None:
    urls = [f"{edge.url}/api/spaces/st8/state?cb={i}" for i in range(100)]
    responses = await stampede(urls)
    assert {r.status_code for r in responses} == {200}
    assert origin.hits["state/st8"] <= 2  # one per second at most
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):
            r = await client.get(f"{edge.url}/api/spaces")
            assert r.status_code == 200
        r = await client.post(f"{edge.url}/api/join", json={})
        assert r.status_code == 200
    assert origin.hits["other/api/spaces"] == 3
    assert origin.hits["other/api/join"] == 1


def test_edge_stops_cleanly_and_leaves_no_workdir(
    origin: CountingOrigin, keyring: tuple[Keyring, Path], tmp_path: Path
) -> None:
    e = start_edge(origin.url, keyring[1], tmp_path / "e.log", name="stopper")
    assert httpx.get(f"{e.url}/api/spaces/x/state", timeout=5).status_code == 200
    assert e.stop() == 0
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("townhall-edge-stopper-*")]
    assert leftovers == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{e.url}/api/spaces/x/state", timeout=2)


async def test_listener_links_are_checked_at_the_varnish_edge_too(
    edge: Edge, origin: CountingOrigin
) -> None:
    """The join answer's ``std_playlist_url`` works through either edge kind: Varnish checks
    the link's MD5 MAC (vmod-digest) with the derived link key, its expiry and revocations."""
    from townhall.auth.links import sign_link

    space = "linked"
    origin.publish(space, "std2.m4s", b"two")
    origin.publish(space, "part3.0.m4s", b"p30")

    def link(sub: str, *, exp: float | None = None, key: SigningKey = KEY_A) -> str:
        expires = int(exp if exp is not None else time.time() + 600)
        return sign_link(key, space_id=space, subject=sub, jti="jti0000000x1", exp=expires)

    def at(lk: str, name: str) -> str:
        return f"{edge.url}/hls/{space}/l/{lk}/{name}"

    good = link("anon:a")
    kid, exp, sub, jti, mac = good.split("/")
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(20):
            r = await client.get(at(link(f"anon:{i}", key=KEY_B if i % 2 else KEY_A), "std2.m4s"))
            assert r.status_code == 200 and r.content == b"two", r.text
        r = await client.get(at(good, "part3.0.m4s") + "?cb=1")
        assert r.status_code == 200 and r.content == b"p30"
        cases = {
            at(f"{kid}/{exp}/{sub}/{jti}/{'A' if mac[0] != 'A' else 'B'}{mac[1:]}", "std2.m4s"): (
                401,
                "bad_signature",
            ),
            at(f"{kid}/{int(exp) + 1}/{sub}/{jti}/{mac}", "std2.m4s"): (401, "bad_signature"),
            f"{edge.url}/hls/other/l/{good}/std2.m4s": (401, "bad_signature"),
            at(link("anon:old", exp=time.time() - 5), "std2.m4s"): (401, "expired_token"),
            at(f"zz/{exp}/{sub}/{jti}/{mac}", "std2.m4s"): (401, "unknown_key"),
            at(good, "std02.m4s"): (404, "no_such_media"),
            at("a/b/c", "std2.m4s"): (401, "malformed_token"),
        }
        for target, (status, code) in cases.items():
            r = await client.get(target)
            assert r.status_code == status, (target, r.text)
            assert r.json()["code"] == code, target
    assert origin.hits[f"{space}/std2.m4s"] == 1
    assert origin.hits[f"{space}/part3.0.m4s"] == 1
