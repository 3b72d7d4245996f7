"""Hostile WHIP against a real server: malformed and huge SDP, offers without audio, wrong
codecs, repeated POSTs, DELETE of someone else's session. Every refusal is a clean 4xx problem
document, and no peer connection leaks: the UDP sockets the server process holds (its
``/proc/PID/fd`` links matched against ``/proc/PID/net/udp*``) are counted before and after.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import Node, start_node

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"

FINGERPRINT = (
    "a=fingerprint:sha-256 81:15:46:F7:98:09:FD:9A:4E:FE:DE:37:05:84:B9:AF:BE:DB:04:12:71:BC:"
    "AB:59:9C:47:5F:68:22:04:B1:06"
)


def offer(
    *,
    m_line: str = "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
    rtpmaps: tuple[str, ...] = ("a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000"),
    direction: str = "a=sendrecv",
    ice: bool = True,
    fingerprint: bool = True,
    extra_media: tuple[str, ...] = (),
) -> str:
    lines = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        m_line,
        "c=IN IP4 0.0.0.0",
        "a=candidate:2 1 udp 2113937151 127.0.0.1 9 typ host",
        *(["a=ice-ufrag:Yx7a", "a=ice-pwd:Zm9vYmFyYmF6cXV4cXV1eHh4eXk"] if ice else []),
        *([FINGERPRINT] if fingerprint else []),
        "a=setup:actpass",
        "a=mid:0",
        direction,
        "a=rtcp-mux",
        *rtpmaps,
        *extra_media,
    ]
    return "\r\n".join(lines) + "\r\n"


VALID = offer()


@dataclass
class Stage:
    node: Node
    space: str
    host_token: str
    guest_token: str
    ticket: str


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    node = start_node(tmp_path_factory.mktemp("whip") / "data")
    try:
        host = node.add_user("hana")
        guest = node.add_user("sam")
        with httpx.Client(base_url=node.url, timeout=10) as c:
            space = c.post("/api/spaces", json={"title": "W"}, headers=bearer(host)).json()
            sid = space["id"]
            r = c.post(
                f"/api/spaces/{sid}/stage/invite", json={"target": "user:sam"}, headers=bearer(host)
            )
            assert r.status_code == 200, r.text
            r = c.post(f"/api/spaces/{sid}/stage/accept-invite", headers=bearer(guest))
            assert r.status_code == 200, r.text
            guest_token = c.post(f"/api/spaces/{sid}/stage/token", headers=bearer(guest)).json()
            ticket = c.post(f"/api/spaces/{sid}/join").json()["ticket"]
        yield Stage(node, sid, space["host_token"], guest_token["token"], ticket)
    finally:
        node.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def udp_sockets(pid: int) -> int:
    """UDP sockets held by ``pid``: its socket fds whose inode is in its net/udp tables."""
    inodes: set[str] = set()
    for table in ("udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9:
                    inodes.add(fields[9])
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            held += 1
    return held


def settle(pid: int, want: int, seconds: float = 5.0) -> int:
    deadline = time.monotonic() + seconds
    count = udp_sockets(pid)
    while count > want and time.monotonic() < deadline:
        time.sleep(0.1)
        count = udp_sockets(pid)
    return count


def post(
    c: httpx.Client, s: Stage, body: bytes | str, token: str | None = None, **h: str
) -> httpx.Response:
    headers = {"Content-Type": "application/sdp", **bearer(token or s.host_token), **h}
    return c.post(f"/api/spaces/{s.space}/whip", content=body, headers=headers)


def assert_problem(r: httpx.Response, *statuses: int) -> None:
    assert r.status_code in statuses, (r.status_code, r.text[:400])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    assert r.json()["detail"] and "Traceback" not in r.text


HOSTILE: dict[str, tuple[bytes | str, tuple[int, ...]]] = {
    "empty": (b"", (400,)),
    "garbage": (b"hello, stage", (400,)),
    "v=0 only": ("v=0\r\n", (400, 422)),
    "unparseable m-line": ("v=0\r\nm=audio x y z\r\n", (400, 422)),
    "NUL bytes": (VALID.replace("s=-", "s=\x00\x00"), (400,)),
    "not UTF-8": (VALID.encode() + b"\xff\xfe\xc0\xaf", (400,)),
    "huge (200 KB)": ("v=0\r\n" + "a=x-pad:" + "x" * 200_000 + "\r\n", (413,)),
    "just under the limit, junk lines": (
        VALID + "".join(f"a=x-junk-{i}:{'y' * 50}\r\n" for i in range(1100)),
        (400, 413, 422),
    ),
    "huge line count": (VALID + "a=z\r\n" * 15_000, (400, 413, 422)),
    "video only": (
        offer(m_line="m=video 9 UDP/TLS/RTP/SAVPF 96", rtpmaps=("a=rtpmap:96 VP8/90000",)),
        (422,),
    ),
    "audio plus video": (
        VALID + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n",
        (422,),
    ),
    "two audio m-lines": (
        VALID + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n",
        (422,),
    ),
    "data channel only": (
        offer(m_line="m=application 9 UDP/DTLS/SCTP webrtc-datachannel", rtpmaps=()),
        (422,),
    ),
    "PCMU only": (
        offer(m_line="m=audio 9 UDP/TLS/RTP/SAVPF 0", rtpmaps=("a=rtpmap:0 PCMU/8000",)),
        (422,),
    ),
    "G722 and PCMA": (
        offer(
            m_line="m=audio 9 UDP/TLS/RTP/SAVPF 9 8",
            rtpmaps=("a=rtpmap:9 G722/8000", "a=rtpmap:8 PCMA/8000"),
        ),
        (422,),
    ),
    "opus named but no rtpmap": (
        offer(m_line="m=audio 9 UDP/TLS/RTP/SAVPF 111", rtpmaps=()),
        (400, 422),
    ),
    "recvonly": (offer(direction="a=recvonly"), (422,)),
    "inactive": (offer(direction="a=inactive"), (422,)),
    "port 0": (offer(m_line="m=audio 0 UDP/TLS/RTP/SAVPF 111 0"), (422,)),
    "no ICE credentials": (offer(ice=False), (400,)),
    "no DTLS fingerprint": (offer(fingerprint=False), (400,)),
    "bad fingerprint": (VALID.replace("sha-256 81:15", "sha-256 ZZ:15"), (400, 422)),
    "absurd payload type": (
        offer(
            m_line="m=audio 9 UDP/TLS/RTP/SAVPF 99999999999999999999",
            rtpmaps=("a=rtpmap:99999999999999999999 opus/48000/2",),
        ),
        (400, 422),
    ),
    "negative port": (offer(m_line="m=audio -5 UDP/TLS/RTP/SAVPF 111"), (400, 422)),
    "candidate with a huge port": (
        VALID.replace("127.0.0.1 9 typ", "127.0.0.1 999999999 typ"),
        (400, 422, 201),
    ),
}


def test_hostile_offers_are_clean_4xx_and_leak_no_socket(stage: Stage) -> None:
    pid = stage.node.process.pid
    before = udp_sockets(pid)
    with httpx.Client(base_url=stage.node.url, timeout=20) as c:
        for name, (body, statuses) in HOSTILE.items():
            r = post(c, stage, body)
            if r.status_code == 201:  # accepted by the stage after all: close it again
                assert 201 in statuses, name
                assert (
                    c.delete(r.headers["location"], headers=bearer(stage.host_token)).status_code
                    == 200
                )
                continue
            assert r.status_code in statuses, (name, r.status_code, r.text[:300])
            assert_problem(r, *statuses)
        # wrong content type, no credential, a listener ticket, a space that does not exist
        assert_problem(post(c, stage, VALID, **{"Content-Type": "text/plain"}), 415)
        assert_problem(
            c.post(
                f"/api/spaces/{stage.space}/whip",
                content=VALID,
                headers={"Content-Type": "application/sdp"},
            ),
            401,
        )
        assert_problem(post(c, stage, VALID, token=stage.ticket), 403)
        r = c.post(
            "/api/spaces/nosuchspace/whip",
            content=VALID,
            headers={"Content-Type": "application/sdp", **bearer(stage.host_token)},
        )
        assert_problem(r, 403, 404)
    assert settle(pid, before) == before, "a refused offer left a socket open"
    assert stage.node.process.poll() is None


def test_repeated_posts_replace_and_delete_frees_everything(stage: Stage) -> None:
    pid = stage.node.process.pid
    before = udp_sockets(pid)
    with httpx.Client(base_url=stage.node.url, timeout=20) as c:
        locations = []
        for _ in range(6):
            r = post(c, stage, VALID)
            assert r.status_code == 201, r.text
            assert r.headers["content-type"].startswith("application/sdp")
            locations.append(r.headers["location"])
        assert len(set(locations)) == 6
        # one speaker, one session: the five replaced ones were closed
        during = settle(pid, before + 1)
        assert before < during <= before + 1, (before, during)
        # the replaced sessions are gone
        assert_problem(c.delete(locations[0], headers=bearer(stage.host_token)), 404)
        # someone else's session: refused, and still open afterwards
        assert_problem(c.delete(locations[-1], headers=bearer(stage.guest_token)), 403)
        assert_problem(c.delete(locations[-1], headers=bearer(stage.ticket)), 403)
        assert_problem(c.delete(locations[-1]), 401)
        assert udp_sockets(pid) == during
        # an unknown or malformed session id
        base = f"/api/spaces/{stage.space}/whip"
        assert_problem(c.delete(f"{base}/nosuchsession", headers=bearer(stage.host_token)), 404)
        assert_problem(
            c.delete(f"{base}/..%2f..%2f", headers=bearer(stage.host_token)), 404, 405, 422
        )
        assert_problem(c.delete(f"{base}/{'x' * 65}", headers=bearer(stage.host_token)), 422)
        # trickle ICE is refused
        r = c.patch(locations[-1], headers=bearer(stage.host_token))
        assert_problem(r, 405)
        assert r.headers["allow"] == "DELETE"
        # the owner leaves: everything is freed
        assert c.delete(locations[-1], headers=bearer(stage.host_token)).status_code == 200
        assert_problem(c.delete(locations[-1], headers=bearer(stage.host_token)), 404)
    assert settle(pid, before) == before


def test_a_burst_of_concurrent_posts_leaks_nothing(stage: Stage) -> None:
    import concurrent.futures

    pid = stage.node.process.pid
    before = udp_sockets(pid)
    with httpx.Client(base_url=stage.node.url, timeout=30) as c:

        def one(_: int) -> httpx.Response:
            return post(c, stage, VALID)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(one, range(8)))
        assert all(r.status_code == 201 for r in answers), [r.status_code for r in answers]
        # one speaker: one session survives the race, its socket the only one added
        assert settle(pid, before + 1) == before + 1
        deleted = [
            c.delete(r.headers["location"], headers=bearer(stage.host_token)).status_code
            for r in answers
        ]
        assert sorted(deleted) == [200] + [404] * 7, deleted
    assert settle(pid, before) == before
