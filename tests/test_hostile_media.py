"""Hostile media paths against a real server: traversal in every spelling, unknown names,
absurd sequence numbers and blocking-reload directives. Each is refused with a 4xx in under
50 ms on loopback, and no answer ever carries a byte of a file outside the space: a canary in
the data folder's parent, the signing keys and the database stay unseen.

Requests go over a raw socket so that nothing (no client library) normalises ``..``, decodes
``%2f`` or drops a backslash before the server sees it.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from conftest import Node, start_node

pytestmark = pytest.mark.slow

FAST = 0.050


@dataclass
class Media:
    node: Node
    space: str
    ticket: str
    canaries: list[bytes]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Media]:
    root = tmp_path_factory.mktemp("media")
    node = start_node(root / "data")
    try:
        canary = f"CANARY-{secrets.token_hex(8)}".encode()
        (root / "canary.txt").write_bytes(canary)
        (root / "live.m3u8").write_bytes(canary)
        (root / "seg1.m4s").write_bytes(canary)
        host = node.add_user("hana")
        with httpx.Client(base_url=node.url, timeout=10) as c:
            space = c.post(
                "/api/spaces", json={"title": "M"}, headers={"Authorization": f"Bearer {host}"}
            ).json()
            ticket = c.post(f"/api/spaces/{space['id']}/join").json()["ticket"]
            # wait for the first part so the programme exists
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r = c.get(f"/hls/{space['id']}/live.m3u8")
                if r.status_code == 200 and "#EXT-X-PART:" in r.text:
                    break
                time.sleep(0.1)
        keys = (node.data / "keys.json").read_text()
        secret = keys.split('"secret": "')[1].split('"')[0].encode()
        yield Media(node, space["id"], ticket, [canary, secret])
    finally:
        node.stop()


def raw_get(url: str, target: str) -> tuple[int, bytes, float]:
    """GET ``target`` exactly as written; returns (status, whole response, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    elapsed = time.perf_counter() - started
    data = b"".join(chunks)
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data, elapsed


def hostile_targets(m: Media) -> list[str]:
    sid, t = m.space, m.ticket
    traversal = [
        "../canary.txt",
        "../../canary.txt",
        "..%2fcanary.txt",
        "..%2f..%2fcanary.txt",
        "..%2f..%2f..%2fcanary.txt",
        "%2e%2e%2fcanary.txt",
        "%2e%2e%2f%2e%2e%2fcanary.txt",
        "%2E%2E%2F%2E%2E%2Fcanary.txt",
        "%2e%2e/%2e%2e/canary.txt",
        "%252e%252e%252fcanary.txt",
        "..%5c..%5ccanary.txt",
        "..\\..\\canary.txt",
        "..%255c..%255ccanary.txt",
        "%c0%ae%c0%ae%c0%afcanary.txt",
        "%c0%ae%c0%ae/%c0%ae%c0%ae/canary.txt",
        "%e0%80%ae%e0%80%ae%e0%80%afcanary.txt",
        "..%c0%af..%c0%afcanary.txt",
        "seg1.m4s%00",
        "seg1.m4s%00.txt",
        "live.m3u8%00../../canary.txt",
        "%00",
        "..;/..;/canary.txt",
        "....//....//canary.txt",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "keys.json",
        "townhall.db",
        "..%2fkeys.json",
        "..%2f..%2fkeys.json",
        "..%2f..%2fdata%2fkeys.json",
    ]
    names = [
        "LIVE.M3U8",
        "live.m3u8.bak",
        "live.m3u8;.js",
        "init.mp4/../../keys.json",
        "seg99999999999.m4s",
        "seg9999999999.m4s",
        "seg1000000000.m4s",
        "part1.99999.m4s",
        "part99999999999.1.m4s",
        "part1.1000.m4s",
        "seg-1.m4s",
        "part-1.-1.m4s",
        "part1.-1.m4s",
        "seg1.5.m4s",
        "seg0x10.m4s",
        "seg%201.m4s",
        "seg１.m4s",
        "a" * 41,
        "a" * 5000,
        "",
    ]
    queries = [
        "_HLS_msn=99999999999999999999",
        "_HLS_msn=999999999999999999999999",
        "_HLS_msn=1&_HLS_part=99999",
        "_HLS_msn=0&_HLS_part=99999999999999999999",
        "_HLS_msn=-1",
        "_HLS_msn=0&_HLS_part=-1",
        "_HLS_part=1",
        "_HLS_msn=1e9",
        "_HLS_msn=0x10",
        "_HLS_msn=%00",
        "_HLS_msn=99999999&_HLS_msn=99999998&_HLS_msn=99999997",
        "_HLS_msn=99999999&_HLS_part=1&_HLS_part=2",
        "_HLS_msn=" + "9" * 5000,
    ]
    targets = []
    for prefix in (f"/hls/{sid}/", f"/hls/{sid}/t/{t}/"):
        targets += [prefix + p for p in traversal + names]
        targets += [prefix + "live.m3u8?" + q for q in queries]
    targets += [
        "/hls/%2e%2e/live.m3u8",
        "/hls/..%2f..%2f/live.m3u8",
        "/hls/../data/keys.json",
        f"/hls/{sid}/t/%2e%2e%2f%2e%2e/live.m3u8",
        f"/hls/{sid}/t/..%2f..%2fkeys.json/live.m3u8",
        f"/hls/{sid}%00/live.m3u8",
        f"/clips/{sid}/..%2f..%2fkeys.json",
        f"/clips/{sid}/..%2fcanary.m4a",
        f"/clips/{sid}/%2e%2e.m4a",
        f"/clips/{sid}/....m4a",
        "/clips/..%2f..%2f/canary.m4a",
        "/static/..%2f..%2f..%2fcanary.txt",
        "/static/../../canary.txt",
    ]
    return targets


def test_the_space_serves_media(media: Media) -> None:
    status, body, _ = raw_get(media.node.url, f"/hls/{media.space}/t/{media.ticket}/live.m3u8")
    assert status == 200 and b"#EXTM3U" in body


def test_hostile_media_paths_refused_fast_and_leak_nothing(media: Media) -> None:
    raw_get(media.node.url, f"/hls/{media.space}/live.m3u8")  # warm
    slow: list[tuple[str, float]] = []
    for target in hostile_targets(media):
        best = 1.0
        for _ in range(2):  # the better of two: one scheduler hiccup is not the route's
            status, body, elapsed = raw_get(media.node.url, target)
            best = min(best, elapsed)
            assert 400 <= status < 500, (target, status, body[:400])
            for canary in media.canaries:
                assert canary not in body, (target, body[:400])
            assert b"Traceback" not in body
            if best < FAST:
                break
        if best >= FAST:
            slow.append((target, best))
    assert not slow, slow
    assert media.node.process.poll() is None
    log = (media.node.data.parent / f"node-{media.node.url.rsplit(':', 1)[1]}.log").read_text()
    assert "unhandled error" not in log


def test_legitimate_names_still_work_after_the_storm(media: Media) -> None:
    status, body, _ = raw_get(media.node.url, f"/hls/{media.space}/init.mp4")
    assert status == 200 and b"ftyp" in body
