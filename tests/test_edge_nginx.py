"""A real nginx standard-HLS edge (``townhall edge run --kind nginx``) in front of the counting
origin: listener links checked at the edge, one origin fetch per object, nothing random
reaching the origin, refusals as problem documents, listener counts from its access log."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from test_edge_varnish import (
    EDGE_CLI,
    KEY_A,
    KEY_B,
    CountingOrigin,
    Edge,
    make_keys,
    serve_origin,
    stampede,
    start_edge,
    ticket,
)
from townhall.auth import Keyring, SigningKey
from townhall.auth.links import sign_link
from townhall.edge.follow import LogFollower
from townhall.edge.nginx import NginxOptions, render_nginx
from townhall.edge.run import free_port
from townhall.edge.settings import build_settings, load_edge_keys
from townhall.watch.edge_counts import all_key, bucket_keys

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="needs Debian's nginx-light"),
]


@pytest.fixture(scope="module")
def origin() -> Iterator[CountingOrigin]:
    with serve_origin(CountingOrigin()) as org:
        yield org


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keyring, Path]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    return make_keys(path), path


@pytest.fixture(scope="module")
def edge(
    origin: CountingOrigin, keyring: tuple[Keyring, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    log = tmp_path_factory.mktemp("edge") / "edge.log"
    e = start_edge(origin.url, keyring[1], log, "--kind", "nginx", "--workers", "2", name="n1")
    try:
        yield e
    finally:
        assert e.stop() == 0, log.read_text()


def link(
    space: str,
    sub: str = "anon:1",
    *,
    key: SigningKey = KEY_A,
    exp: float | None = None,
    jti: str = "jti000000001",
) -> str:
    expires = int(exp if exp is not None else time.time() + 600)
    return sign_link(key, space_id=space, subject=sub, jti=jti, exp=expires)


def url(edge: Edge, space: str, lk: str, name: str) -> str:
    return f"{edge.url}/hls/{space}/l/{lk}/{name}"


# --- collapsing and the cache key ---------------------------------------------------------


async def test_stampede_on_a_new_segment_reaches_the_origin_once(
    edge: Edge, origin: CountingOrigin
) -> None:
    space = "collapse"
    origin.announce(space, "std7.m4s")
    urls = [url(edge, space, link(space, f"anon:{i}"), "std7.m4s") for i in range(150)]

    async def publish_later() -> None:
        await asyncio.sleep(0.8)
        origin.publish(space, "std7.m4s", b"S" * 32_000)

    responses, _ = await asyncio.gather(stampede(urls), publish_later())
    assert {r.status_code for r in responses} == {200}
    assert all(r.content == b"S" * 32_000 for r in responses)
    assert origin.hits[f"{space}/std7.m4s"] == 1
    assert {r.headers["X-Edge"] for r in responses} == {"n1"}


async def test_link_and_query_are_not_in_the_cache_key(edge: Edge, origin: CountingOrigin) -> None:
    space = "keyless"
    origin.publish(space, "std3.m4s", b"three")
    origin.publish(space, "init.mp4", b"init")
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(30):
            lk = link(space, f"anon:{i}", key=KEY_B if i % 2 else KEY_A)
            for name in ("std3.m4s", "init.mp4"):
                r = await client.get(url(edge, space, lk, name) + f"?cb={i}&_HLS_msn={i}")
                assert r.status_code == 200 and r.content in (b"three", b"init")
    assert origin.hits[f"{space}/std3.m4s"] == 1
    assert origin.hits[f"{space}/init.mp4"] == 1
    assert not [k for k in origin.hits if k.startswith(space) and "?" in k]


async def test_playlist_reaches_the_origin_about_once_a_second_and_no_one_waits(
    edge: Edge, origin: CountingOrigin
) -> None:
    space = "reload"
    origin.publish(space, "std.m3u8", b"#EXTM3U\n")
    lk = link(space)
    async with httpx.AsyncClient(timeout=10) as client:
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            batch = await asyncio.gather(
                *(client.get(url(edge, space, lk, "std.m3u8")) for _ in range(20))
            )
            assert {r.status_code for r in batch} == {200}
            await asyncio.sleep(0.05)
    assert 2 <= origin.hits[f"{space}/std.m3u8"] <= 5


async def test_origin_errors_are_shared_briefly(edge: Edge, origin: CountingOrigin) -> None:
    space = "errors"
    urls = [url(edge, space, link(space, f"anon:{i}"), "std99.m4s") for i in range(50)]
    responses = await stampede(urls)
    assert {r.status_code for r in responses} == {404}
    assert origin.hits[f"{space}/std99.m4s"] <= 2
    await asyncio.sleep(1.5)
    origin.publish(space, "std99.m4s", b"late")
    r = await stampede(urls[:1])
    assert r[0].status_code == 200 and r[0].content == b"late"


# --- refusals ----------------------------------------------------------------------------


async def test_bad_links_and_other_forms_are_refused_at_the_edge(
    edge: Edge, origin: CountingOrigin, keyring: tuple[Keyring, Path]
) -> None:
    space = "guarded"
    origin.publish(space, "std1.m4s", b"one")
    good = link(space)
    kid, exp, sub, jti, mac = good.split("/")
    forged_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    cases = {
        url(edge, space, f"{kid}/{exp}/{sub}/{jti}/{forged_mac}", "std1.m4s"): (
            401,
            "bad_signature",
        ),
        url(edge, space, link("other"), "std1.m4s"): (401, "bad_signature"),
        url(edge, space, f"{kid}/{int(exp) + 1}/{sub}/{jti}/{mac}", "std1.m4s"): (
            401,
            "bad_signature",
        ),
        url(edge, space, link(space, exp=time.time() - 5), "std1.m4s"): (401, "expired_token"),
        url(edge, space, f"nokey/{exp}/{sub}/{jti}/{mac}", "std1.m4s"): (401, "unknown_key"),
        url(edge, space, good, "live.m3u8"): (404, "ll_hls_elsewhere"),
        url(edge, space, good, "part1.0.m4s"): (404, "ll_hls_elsewhere"),
        url(edge, space, good, "std01.m4s"): (404, "ll_hls_elsewhere"),
        url(edge, space, good, "../../x"): (404, "ll_hls_elsewhere"),
        f"{edge.url}/hls/{space}/std1.m4s": (401, "ticket_required"),
        f"{edge.url}/hls/{space}/t/{ticket(keyring[0], space)}/std1.m4s": (
            404,
            "ll_hls_elsewhere",
        ),
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for target, (status, code) in cases.items():
            r = await client.get(target)
            assert r.status_code == status, (target, r.text)
            assert r.headers["content-type"] == "application/problem+json", target
            assert r.headers["cache-control"] == "no-store"
            body = r.json()
            assert body["code"] == code and body["status"] == status, target
        r = await client.post(url(edge, space, good, "std1.m4s"))
        assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
        r = await client.get(url(edge, space, good, "std1.m4s"))
        assert r.status_code == 200 and r.content == b"one"
    assert origin.hits[f"{space}/std1.m4s"] == 1


async def test_blocked_addresses_and_revoked_listeners_are_refused(
    origin: CountingOrigin, keyring: tuple[Keyring, Path], tmp_path: Path
) -> None:
    """The configuration the mitigation poller reloads: a geo block list and revoked
    ``sub``/``jti`` maps (rendered and run here directly)."""
    settings = build_settings(origin.url, load_edge_keys(keyring[1]), name="mit")
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="townhall-nginx-test-"))
    os.chmod(prefix, 0o755)  # as root, the workers run as another user
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx(
            settings,
            NginxOptions(
                listen=f"127.0.0.1:{port}",
                workers="1",
                user="www-data" if os.geteuid() == 0 else None,
                connections=1024,
                nofile=None,
            ),
            blocked=("127.0.0.77/32",),
            revoked=("anon:gone", "revokedjti01"),
        )
    )
    proc = subprocess.Popen(
        ["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
    )
    space = "mitigated"
    origin.publish(space, "std1.m4s", b"one")
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{base}/hls/x/std.m3u8", timeout=2)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        ok = f"{base}/hls/{space}/l/{link(space, 'anon:fine')}/std1.m4s"
        gone = f"{base}/hls/{space}/l/{link(space, 'anon:gone')}/std1.m4s"
        by_jti = f"{base}/hls/{space}/l/{link(space, 'anon:x', jti='revokedjti01')}/std1.m4s"
        with httpx.Client(timeout=5) as client:
            assert client.get(ok).status_code == 200
            for target in (gone, by_jti):
                r = client.get(target)
                assert r.status_code == 401 and r.json()["code"] == "revoked_token"
        blocked = httpx.Client(timeout=5, transport=httpx.HTTPTransport(local_address="127.0.0.77"))
        with blocked:
            r = blocked.get(ok)
            assert r.status_code == 403 and r.json()["code"] == "blocked"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(prefix, ignore_errors=True)


async def test_state_document_is_collapsed_and_other_api_passes(
    edge: Edge, origin: CountingOrigin
) -> None:
    urls = [f"{edge.url}/api/spaces/ngst/state?cb={i}" for i in range(100)]
    responses = await stampede(urls)
    assert {r.status_code for r in responses} == {200}
    assert origin.hits["state/ngst"] <= 2
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{edge.url}/api/ngjoin", json={})
        assert r.status_code == 200 and r.json() == {"ok": True}
    assert origin.hits["other/api/ngjoin"] == 1


# --- listener counts from the access log -------------------------------------------------


def test_distinct_link_holders_are_counted_in_redis(
    origin: CountingOrigin, keyring: tuple[Keyring, Path], redis_url: str, tmp_path: Path
) -> None:
    edge = start_edge(
        origin.url,
        keyring[1],
        tmp_path / "edge.log",
        "--kind",
        "nginx",
        "--redis",
        redis_url,
        name="ncount",
    )
    space = "ncounted"
    for name, data in (("std1.m4s", b"s1"), ("init.mp4", b"i"), ("std.m3u8", b"#EXTM3U\n")):
        origin.publish(space, name, data)
    listeners = [f"anon:n{i}" for i in range(40)]
    try:
        with httpx.Client(timeout=10) as client:
            for sub in listeners:
                lk = link(space, sub)
                for _ in range(3):  # the same listener fetching again counts once
                    assert client.get(url(edge, space, lk, "std1.m4s")).status_code == 200
            for i in range(5):  # playlists and init only: not counted as listening
                lk = link(space, f"anon:lurker{i}")
                assert client.get(url(edge, space, lk, "std.m3u8")).status_code == 200
                assert client.get(url(edge, space, lk, "init.mp4")).status_code == 200
            real = link(space, "anon:forger")  # its MAC's first character changed
            forged = real[:-22] + ("A" if real[-22] != "A" else "B") + real[-21:]
            assert client.get(url(edge, space, forged, "std1.m4s")).status_code == 401
        r = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and r.pfcount(all_key(space)) < len(listeners):
            time.sleep(0.1)
        time.sleep(2.5)  # the log buffer is flushed every second: nothing else may arrive
        assert r.pfcount(*bucket_keys(space, time.time())) == len(listeners)
        assert r.pfcount(all_key(space)) == len(listeners)
        r.close()
    finally:
        assert edge.stop() == 0, (tmp_path / "edge.log").read_text()
    leftovers = list(Path(tempfile.gettempdir()).glob("townhall-edge-ncount-*"))
    assert leftovers == []


async def test_log_follower_reads_every_line_once_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    handle = {"fh": path.open("ab", buffering=0)}

    def reopen() -> None:  # what nginx does on SIGUSR1
        handle["fh"].close()
        handle["fh"] = path.open("ab", buffering=0)

    follower = LogFollower(path, reopen, rotate_at=2_000, poll=0.01, settle=0.05)
    stream = asyncio.StreamReader()
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stream, stop))
    for i in range(400):
        handle["fh"].write(f"line {i:04d}\n".encode())
        if i % 20 == 0:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    stop.set()
    await task
    handle["fh"].close()
    lines = (await stream.read()).decode().splitlines()
    assert lines == [f"line {i:04d}" for i in range(400)]
    assert follower.rotations >= 1
    assert not path.with_name("access.log.old").exists()


def test_edge_cli_validates_workers(origin: CountingOrigin, keyring: tuple[Keyring, Path]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", EDGE_CLI, "run", "--origin", origin.url, "--kind", "nginx"]
        + ["--keys", str(keyring[1]), "--workers", "lots"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 2 and "--workers" in proc.stdout + proc.stderr
