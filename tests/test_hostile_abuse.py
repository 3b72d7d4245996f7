"""One client must not flood a host: reactions and requests to speak are limited per ticket
subject (429 + Retry-After + problem document), reactions never reach the stage event stream,
and a request/cancel storm moves the host console a bounded number of times.
Real server, real HTTP, real SSE."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import Node, start_node
from townhall.api.abuse import (
    REACTION_BURST,
    REACTION_RATE,
    SPEAK_REQUEST_BURST,
    AbuseLimits,
)

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


@dataclass
class Stage:
    node: Node
    space: str
    host_token: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str]]:
    node = start_node(tmp_path_factory.mktemp("abuse") / "data")
    try:
        yield node, node.add_user("hana")
    finally:
        node.stop()


@pytest.fixture
def stage(server: tuple[Node, str]) -> Stage:
    """A fresh live space on the shared server (limits are per space and identity)."""
    node, host = server
    r = httpx.post(
        f"{node.url}/api/spaces",
        json={"title": "Abuse"},
        headers={"Authorization": f"Bearer {host}"},
        timeout=10,
    )
    return Stage(node, r.json()["id"], r.json()["host_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def join(c: httpx.Client, space: str) -> str:
    return str(c.post(f"/api/spaces/{space}/join").json()["ticket"])


def assert_limited(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["status"] == 429 and body["code"] == "rate_limited" and body["detail"]
    return dict(body)


def test_reactions_are_limited_per_identity(stage: Stage) -> None:
    with httpx.Client(base_url=stage.node.url, timeout=10) as c:
        ticket = join(c, stage.space)
        started = time.monotonic()
        answers = [
            c.post(
                f"/api/spaces/{stage.space}/reactions", json={"emoji": "🔥"}, headers=bearer(ticket)
            )
            for _ in range(REACTION_BURST + 15)
        ]
        refilled = math.ceil(REACTION_RATE * (time.monotonic() - started))
        accepted = [r for r in answers if r.status_code == 202]
        limited = [r for r in answers if r.status_code != 202]
        # a burst of 10, plus what 5/s refills while the loop runs
        assert REACTION_BURST <= len(accepted) <= REACTION_BURST + refilled, len(accepted)
        assert limited and all(assert_limited(r) for r in limited)
        # the count holds only what was accepted
        state = c.get(f"/api/spaces/{stage.space}/state").json()
        assert state["reactions"] == {"🔥": len(accepted)}
        # somebody else is not affected
        other = join(c, stage.space)
        r = c.post(
            f"/api/spaces/{stage.space}/reactions", json={"emoji": "👏"}, headers=bearer(other)
        )
        assert r.status_code == 202


def test_speak_request_cycles_are_limited(stage: Stage) -> None:
    with httpx.Client(base_url=stage.node.url, timeout=10) as c:
        ticket = join(c, stage.space)
        base = f"/api/spaces/{stage.space}/stage"
        for _ in range(SPEAK_REQUEST_BURST):
            assert c.post(f"{base}/request", headers=bearer(ticket)).status_code == 200
            assert c.post(f"{base}/cancel-request", headers=bearer(ticket)).status_code == 200
        body = assert_limited(c.post(f"{base}/request", headers=bearer(ticket)))
        assert "a minute" in body["detail"]
        assert_limited(c.post(f"{base}/cancel-request", headers=bearer(ticket)))
        # refused attempts count too: hammering does not shorten the wait
        r = c.post(f"{base}/request", headers=bearer(ticket))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 10
        # the host's queue is empty and another listener can still ask
        other = join(c, stage.space)
        assert c.post(f"{base}/request", headers=bearer(other)).status_code == 200
        queue = c.get(base, headers=bearer(stage.host_token)).json()
        assert len(queue["requests"]) == 1


async def test_host_console_stream_is_not_floodable(stage: Stage) -> None:
    seen: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def read_console(c: httpx.AsyncClient) -> None:
        url = f"/api/spaces/{stage.space}/events"
        async with c.stream("GET", url, headers=bearer(stage.host_token)) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))

    async with httpx.AsyncClient(base_url=stage.node.url, timeout=10) as c:
        reader = asyncio.create_task(read_console(c))
        await asyncio.wait_for(connected.wait(), 5)
        ticket = str((await c.post(f"/api/spaces/{stage.space}/join")).json()["ticket"])
        base = f"/api/spaces/{stage.space}"
        statuses: list[int] = []
        for _ in range(40):
            r = await c.post(f"{base}/reactions", json={"emoji": "😂"}, headers=bearer(ticket))
            statuses.append(r.status_code)
        for _ in range(20):
            for action in ("request", "cancel-request"):
                r = await c.post(f"{base}/stage/{action}", headers=bearer(ticket))
                statuses.append(r.status_code)
        await asyncio.sleep(1.0)
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
    assert statuses.count(429) >= 40, statuses
    kinds = [e["kind"] for e in seen]
    assert "reaction_added" not in kinds
    assert kinds.count("speak_requested") == SPEAK_REQUEST_BURST, kinds
    assert kinds.count("speak_request_cancelled") == SPEAK_REQUEST_BURST, kinds
    assert len(kinds) <= 2 * SPEAK_REQUEST_BURST


def test_limits_core_retry_after_and_reset() -> None:
    limits = AbuseLimits()
    for i in range(REACTION_BURST):  # a burst, microseconds apart as on a real clock
        limits.check_reaction("s", "anon:1", now=100.0 + i * 1e-6)
    with pytest.raises(Exception) as err:
        limits.check_reaction("s", "anon:1", now=100.0 + REACTION_BURST * 1e-6)
    assert getattr(err.value, "status", None) == 429
    assert getattr(err.value, "headers", {}).get("Retry-After") == "1"
    limits.check_reaction("s", "anon:1", now=100.25)  # 5/s refills one in 0.2 s
    limits.check_reaction("s", "anon:2", now=100.0)  # per identity
    limits.check_reaction("t", "anon:1", now=100.0)  # per space
    for i in range(SPEAK_REQUEST_BURST):
        limits.check_stage_action("request", "s", "anon:1", now=i * 1e-6)
    with pytest.raises(Exception) as err:
        limits.check_stage_action("request", "s", "anon:1", now=1e-5)
    assert getattr(err.value, "headers", {}).get("Retry-After") == "20"
    limits.check_stage_action("request", "s", "anon:1", now=20.0)
    for _ in range(50):  # host actions are not limited here
        limits.check_stage_action("accept", "s", "user:hana", now=0.0)
