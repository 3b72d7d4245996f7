"""The gate in process (httpx ASGITransport, one source address per client): limits,
shedding, blocks, the pre-queue shuffle, queue tickets, the fast path against the route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from townhall.api.app import create_app
from townhall.auth import Grant, hash_api_key, new_api_key
from townhall.config import Config
from townhall.gate.queue_ticket import QueueTicket, QueueTicketError, QueueTicketSigner
from townhall.store import MemoryStore, User
from townhall.watch.observations import Observation


class Env:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.svc = app.state.services
        self.seen: list[Observation] = []
        gate = self.svc.gate
        told = gate.observe

        def observe(obs: Observation) -> None:  # what the watch is told, kept for asserts
            self.seen.append(obs)
            told(obs)

        gate.observe = observe

    def client(self, source: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(source, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://gate.test", timeout=30)

    async def user(self, name: str, *, operator: bool = False) -> str:
        key = new_api_key()
        await self.svc.store.add_user(
            User(name, hash_api_key(key), name, True, operator, time.time())
        )
        return key

    async def space(self, key: str, *, scheduled: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"title": "gate"}
        if scheduled:
            body["scheduled_start"] = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        async with self.client() as c:
            r = await c.post("/api/spaces", json=body, headers=_auth(key))
        assert r.status_code == 201, r.text
        return dict(r.json())


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Any]:
    def make(**settings: Any) -> Env:
        config = Config(data=tmp_path / "data", **settings)
        config.data.mkdir(parents=True, exist_ok=True)
        return Env(create_app(config, MemoryStore(), media=False))

    yield make


@pytest.fixture
async def env(make_env: Any) -> AsyncIterator[Env]:
    yield make_env(admit_rate=1000.0)


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = dict(r.json())
    assert body["status"] == status and body["code"] == code and body["detail"]
    return body


async def test_per_source_and_per_network_limits_answer_429_with_retry_after(
    make_env: Any,
) -> None:
    env = make_env(admit_rate=1000.0, join_rate_source=1.0, join_rate_network=3.0)
    sid = (await env.space(await env.user("h")))["id"]
    async with env.client("127.1.1.1") as c:
        codes = [(await c.post(f"/api/spaces/{sid}/join")).status_code for _ in range(4)]
        assert codes == [200] * 4  # burst: 4 s worth of 1/s
        r = await c.post(f"/api/spaces/{sid}/join")
        body = _problem(r, 429, "rate_limited")
        assert "address" in body["detail"] and 1 <= int(r.headers["retry-after"]) <= 2
    # another address of the same /24 still gets in until the network's burst (12) is spent
    statuses = []
    for i in range(2, 14):
        async with env.client(f"127.1.1.{i}") as c:
            statuses.append((await c.post(f"/api/spaces/{sid}/join")).status_code)
    assert statuses.count(200) == 8 and statuses[-1] == 429
    async with env.client("127.1.1.99") as c:
        body = _problem(await c.post(f"/api/spaces/{sid}/join"), 429, "rate_limited")
        assert "network" in body["detail"]
    assert sum(o.outcome == "limited" for o in env.seen) == 6  # 1 + 4 + 1 refusals
    async with env.client("127.1.2.1") as c:  # another network is untouched
        assert (await c.post(f"/api/spaces/{sid}/join")).status_code == 200


async def test_host_and_speakers_are_never_limited_or_queued(make_env: Any) -> None:
    env = make_env(admit_rate=1.0, join_rate_source=1.0)
    host_key = await env.user("h")
    space = await env.space(host_key)
    sid = space["id"]
    async with env.client("127.1.1.1") as c:
        answers = [await c.post(f"/api/spaces/{sid}/join") for _ in range(6)]
        assert {a.status_code for a in answers} >= {202, 429}  # audience: queued, limited
        for _ in range(5):  # the host, from the same address: straight in, every time
            r = await c.post(f"/api/spaces/{sid}/join", headers=_auth(space["host_token"]))
            assert r.status_code == 200 and r.json()["listener_id"] == "user:h"
            r = await c.post(f"/api/spaces/{sid}/join", headers=_auth(host_key))
            assert r.status_code == 200
        r = await c.post(f"/api/spaces/{sid}/end", headers=_auth(host_key))
        assert r.status_code == 200  # lifecycle routes are not behind the join limiter


async def test_shedding_answers_503_quickly_under_a_slow_handler(make_env: Any) -> None:
    env = make_env(admit_rate=1e6, join_rate_source=None, join_rate_network=None,
                   gate_test_delay=0.004)  # fmt: skip
    sid = (await env.space(await env.user("h")))["id"]

    async def one(c: httpx.AsyncClient) -> tuple[int, float, str | None]:
        t = time.perf_counter()
        r = await c.post(f"/api/spaces/{sid}/join")
        return r.status_code, time.perf_counter() - t, r.headers.get("retry-after")

    async with env.client("127.1.1.1") as c:
        results = await asyncio.gather(*(one(c) for _ in range(300)))
    shed = [r for r in results if r[0] == 503]
    ok = [r for r in results if r[0] == 200]
    assert len(shed) + len(ok) == 300 and shed and ok
    assert all(r[2] is not None and int(r[2]) >= 1 for r in shed)
    slowest_ok = max(r[1] for r in ok)
    assert env.svc.gate.shed.refused == len(shed)
    assert sum(o.outcome == "shed" for o in env.seen) == len(shed)
    # a refusal costs no wait inside the handler: far quicker than an admitted join
    assert sorted(r[1] for r in shed)[len(shed) // 2] < slowest_ok


async def test_blocks_at_the_gate_are_operator_controlled(env: Env) -> None:
    sid = (await env.space(await env.user("h")))["id"]
    op = _auth(await env.user("op", operator=True))
    async with env.client() as c:
        r = await c.post("/ops/blocks", json={"source": "127.4.4.4"}, headers=_auth("th_nope"))
        assert r.status_code == 401
        plain = await env.user("plain")
        r = await c.post("/ops/blocks", json={"source": "127.4.4.4"}, headers=_auth(plain))
        _problem(r, 403, "not_allowed")
        r = await c.post("/ops/blocks", json={"source": "127.4.4.4"}, headers=op)
        assert r.status_code == 201
        source_block = r.json()["id"]
        r = await c.post("/ops/blocks", json={"network": "127.5.5.9/24", "ttl": 60}, headers=op)
        assert r.status_code == 201 and r.json()["network"] == "127.5.5.0/24"
        _problem(
            await c.post("/ops/blocks", json={"source": "nope"}, headers=op), 422, "invalid_request"
        )
        for ttl in (True, "60"):  # a number of seconds, not something that coerces to one
            r = await c.post("/ops/blocks", json={"source": "127.4.4.9", "ttl": ttl}, headers=op)
            _problem(r, 422, "invalid_request")
        listed = (await c.get("/ops/blocks", headers=op)).json()["blocks"]
        assert {b["source"] or b["network"] for b in listed} == {"127.4.4.4", "127.5.5.0/24"}
        acl = await c.get("/ops/blocks.acl", headers=op)
        assert acl.text == "127.4.4.4/32\n127.5.5.0/24\n"
    for source in ("127.4.4.4", "127.5.5.77"):
        async with env.client(source) as c:
            _problem(await c.post(f"/api/spaces/{sid}/join"), 403, "blocked")
    async with env.client("127.4.4.5") as c:
        assert (await c.post(f"/api/spaces/{sid}/join")).status_code == 200
    async with env.client() as c:
        assert (await c.delete(f"/ops/blocks/{source_block}", headers=op)).status_code == 204
        assert (await c.delete(f"/ops/blocks/{source_block}", headers=op)).status_code == 404
    async with env.client("127.4.4.4") as c:
        assert (await c.post(f"/api/spaces/{sid}/join")).status_code == 200
    told = [(o.source, o.outcome) for o in env.seen]
    assert ("127.4.4.4", "blocked") in told and ("127.5.5.77", "blocked") in told
    assert ("127.4.4.4", "admitted") in told


async def test_admission_can_be_tightened_by_an_operator(env: Env) -> None:
    sid = (await env.space(await env.user("h")))["id"]
    op = _auth(await env.user("op", operator=True))
    async with env.client() as c:
        r = await c.post(
            f"/ops/spaces/{sid}/admission", json={"rate": 1, "capacity": 50}, headers=op
        )
        assert r.status_code == 200 and r.json() == {"space_id": sid, "rate": 1.0, "capacity": 50}
    statuses = []
    for i in range(5):
        async with env.client(f"127.6.{i}.1") as c:
            statuses.append((await c.post(f"/api/spaces/{sid}/join")).status_code)
    assert statuses[0] == 200 and statuses.count(202) >= 3


async def test_prequeue_is_shuffled_at_the_start(make_env: Any) -> None:
    env = make_env(admit_rate=2.0, join_rate_source=None, join_rate_network=None)
    host = await env.user("h")
    space = await env.space(host, scheduled=True)
    sid = space["id"]
    tickets = []
    async with env.client() as c:
        for _ in range(40):
            r = await c.post(f"/api/spaces/{sid}/join")
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["eta_seconds"] > 250 and 1 <= body["poll_after"] <= 30
            assert r.headers["retry-after"] == str(body["poll_after"])
            tickets.append(body["queue_ticket"])
        r = await c.post(f"/api/spaces/{sid}/start", headers=_auth(host))
        assert r.status_code == 200
        places = []
        for t in tickets:
            r = await c.post(f"/api/spaces/{sid}/join", json={"queue_ticket": t})
            assert r.status_code in (200, 202)
            places.append(0 if r.status_code == 200 else r.json()["position"])
        # a late arrival stands behind the whole pre-queue
        late = (await c.post(f"/api/spaces/{sid}/join")).json()
        assert late["position"] >= 35
    assert places != sorted(places)  # arrival order is not queue order
    early, later = places[:20], places[20:]
    assert min(early) <= 10 and max(early) >= 25 and min(later) <= 10  # spread both ways


async def test_queue_tickets_cannot_be_forged_or_moved(make_env: Any) -> None:
    env = make_env(admit_rate=1.0, join_rate_source=None)
    sid = (await env.space(await env.user("h")))["id"]
    other = (await env.space(await env.user("h2")))["id"]
    async with env.client() as c:
        answers = [(await c.post(f"/api/spaces/{sid}/join")).json() for _ in range(6)]
        last = answers[-1]
        assert "queue_ticket" in last and last["position"] >= 3
        ticket = last["queue_ticket"]
        parts = ticket.split(".")
        parts[3] = "s0"  # jump to the front
        jumped = ".".join(parts)
        r = await c.post(f"/api/spaces/{sid}/join", json={"queue_ticket": jumped})
        _problem(r, 403, "forged_queue_ticket")
        r = await c.post(f"/api/spaces/{sid}/join", json={"queue_ticket": ticket[:-3] + "AAA"})
        _problem(r, 403, "forged_queue_ticket")
        r = await c.post(f"/api/spaces/{sid}/join", json={"queue_ticket": "garbage"})
        _problem(r, 400, "bad_queue_ticket")
        r = await c.post(f"/api/spaces/{other}/join", json={"queue_ticket": ticket})
        _problem(r, 403, "wrong_space")
        again = await c.post(f"/api/spaces/{sid}/join", json={"queue_ticket": ticket})
        assert again.status_code == 202 and again.json()["position"] <= last["position"]


def test_queue_ticket_signer_round_trip_and_expiry() -> None:
    signer = QueueTicketSigner({"k1": b"a" * 32, "k2": b"b" * 32}, "k2")
    t = QueueTicket("space1", None, 123456, "ab" * 8, 2000)
    text = signer.sign(t)
    assert signer.verify(text, space_id="space1", now=1000) == t
    with pytest.raises(QueueTicketError) as err:
        signer.verify(text, space_id="space1", now=2000)
    assert err.value.status == 410 and err.value.outcome == "expired_ticket"
    rotated = QueueTicketSigner({"k2": b"b" * 32, "k3": b"c" * 32}, "k3")
    assert rotated.verify(text, space_id="space1", now=1000) == t  # older key still verifies
    with pytest.raises(QueueTicketError):
        QueueTicketSigner({"k2": b"x" * 32}, "k2").verify(text, space_id="space1", now=1000)


async def test_fast_path_answers_what_the_route_answers(env: Env) -> None:
    sid = (await env.space(await env.user("h")))["id"]

    async def chunked() -> AsyncIterator[bytes]:
        yield b"{}"

    async with env.client() as c:
        fast = await c.post(f"/api/spaces/{sid}/join", json={})
        routed = await c.post(  # no length: the route answers
            f"/api/spaces/{sid}/join",
            content=chunked(),
            headers={"content-type": "application/json"},
        )
    assert fast.status_code == routed.status_code == 200
    assert fast.json().keys() == routed.json().keys() == {
        "listener_id", "ticket", "expires_at", "playlist_url", "std_playlist_url", "state_url"
    }  # fmt: skip
    for r in (fast, routed):
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        claims = env.svc.issuer.verify(body["ticket"], now=time.time(), space_id=sid)
        assert claims.grants == frozenset({Grant.LISTEN}) and claims.subject == body["listener_id"]
        assert claims.expires_at == body["expires_at"]
        assert body["playlist_url"].endswith(f"/hls/{sid}/t/{body['ticket']}/live.m3u8")
        # the listener link is the same admission: same listener, ticket id and expiry
        prefix, link = body["std_playlist_url"].split(f"/hls/{sid}/l/")
        assert prefix == env.svc.config.base_url and link.endswith("/std.m3u8")
        verified = env.svc.verify_link(link.removesuffix("/std.m3u8"), space_id=sid)
        assert (verified.subject, verified.token_id, verified.expires_at) == (
            claims.subject,
            claims.token_id,
            claims.expires_at,
        )
    # unusual bodies go to the route, which explains
    async with env.client() as c:
        r = await c.post(f"/api/spaces/{sid}/join", json={"oops": 1})
        _problem(r, 422, "invalid_request")
        r = await c.post(
            f"/api/spaces/{sid}/join", content=b"{", headers={"content-type": "application/json"}
        )
        _problem(r, 400, "invalid_request")
        _problem(await c.post("/api/spaces/nope/join"), 404, "no_such_space")
