"""Honest listener counts from edge logs: ``townhall edge run --redis`` ships the distinct
ticket subjects that fetched media into Redis HyperLogLogs that the API nodes read."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from test_edge_varnish import (
    KEY_A,
    CountingOrigin,
    free_port,
    hls,
    make_keys,
    start_edge,
    ticket,
)
from test_edge_varnish import origin as origin  # noqa: F401  (module fixture)
from townhall.auth import Grant
from townhall.auth.links import sign_link
from townhall.watch.edge_counts import all_key, bucket_keys

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("varnishd") is None or shutil.which("redis-server") is None,
        reason="needs Debian's varnish and redis-server",
    ),
]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def test_distinct_listeners_reach_redis(
    origin: CountingOrigin,  # noqa: F811
    redis_url: str,
    tmp_path: Path,
) -> None:
    ring = make_keys(tmp_path / "keys.json")
    edge = start_edge(
        origin.url,
        tmp_path / "keys.json",
        tmp_path / "edge.log",
        "--redis",
        redis_url,
        name="counter",
    )
    space, other = "counted", "counted2"
    for s in (space, other):
        origin.publish(s, "seg1.m4s", b"s1")
        origin.publish(s, "part2.0.m4s", b"p20")
        origin.publish(s, "init.mp4", b"init")
        origin.publish(s, "std1.m4s", b"std1")
    listeners = [f"anon:{i}" for i in range(25)]
    linked = [f"anon:link{i}" for i in range(5)]  # standard-HLS listeners (links)
    try:
        with httpx.Client(timeout=10) as client:
            for i, sub in enumerate(listeners):
                tk = ticket(ring, space, sub)
                for _ in range(3):  # the same listener fetching again counts once
                    name = "seg1.m4s" if i % 2 else "part2.0.m4s"
                    assert client.get(hls(edge, space, tk, name)).status_code == 200
            for i in range(5):  # playlists and init only: not counted as listening
                tk = ticket(ring, space, f"anon:lurker{i}")
                assert client.get(hls(edge, space, tk, "live.m3u8")).status_code == 200
                assert client.get(hls(edge, space, tk, "init.mp4")).status_code == 200
            for sub in linked:
                lk = sign_link(KEY_A, space_id=space, subject=sub, jti="j1", exp=2_000_000_000)
                for _ in range(2):
                    got = client.get(f"{edge.url}/hls/{space}/l/{lk}/std1.m4s")
                    assert got.status_code == 200
            refused = ticket(ring, space, "anon:nogrant", grants=frozenset({Grant.SPEAK}))
            assert client.get(hls(edge, space, refused, "seg1.m4s")).status_code == 403
            for sub in ("user:ann", "user:ben"):
                tk = ticket(ring, other, sub)
                assert client.get(hls(edge, other, tk, "seg1.m4s")).status_code == 200
        r = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and r.pfcount(all_key(space)) < len(listeners) + 5:
            time.sleep(0.1)
        time.sleep(1.5)  # one more flush: nothing else may arrive
        now = time.time()
        assert r.pfcount(*bucket_keys(space, now)) == len(listeners) + len(linked)
        assert r.pfcount(all_key(space)) == len(listeners) + len(linked)
        assert r.pfcount(*bucket_keys(other, now)) == 2
        assert r.ttl(all_key(space)) == -1
        live = [k for k in bucket_keys(space, now) if r.exists(k)]
        assert live and all(0 < r.ttl(k) <= 120 for k in live)
        r.close()
    finally:
        assert edge.stop() == 0, (tmp_path / "edge.log").read_text()
