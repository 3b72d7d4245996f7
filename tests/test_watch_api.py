"""``GET /ops/watch``: operators only (API key or operator token), problem documents
otherwise; the body is the watch's JSON picture, filtered by ``?space=``."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import traffic as tr
from townhall.api.app import build_services
from townhall.api.problems import install_problem_handlers
from townhall.api.routes_watch import router
from townhall.auth import Grant, hash_api_key, new_api_key
from townhall.config import Config
from townhall.store.base import User
from townhall.store.memory import MemoryStore
from townhall.watch.watch import Watch

T0 = 1_700_000_000.0


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], FastAPI]]:
    store = MemoryStore()
    keys: dict[str, str] = {}
    for name, operator in (("olga", True), ("hank", False)):
        key = new_api_key()
        keys[name] = key
        await store.add_user(User(name, hash_api_key(key), name, False, operator, time.time()))
    services = build_services(Config(data=tmp_path), store)
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    app.state.services = services
    watch = Watch()
    rng = random.Random(3)
    obs = tr.merge(
        tr.audience(rng, T0, 60.0, listeners=10),
        tr.join_flood(rng, T0 + 30, 30.0),
    )
    tr.replay(watch, obs, T0 + 60, T0)
    app.state.watch = watch
    keys["listener"] = services.issuer.issue(
        subject="anon:x", space_id="sp1", grants={Grant.LISTEN}, ttl=600, now=time.time()
    )
    keys["op-token"] = services.issuer.issue(
        subject="user:olga", space_id=None, grants={Grant.OPERATOR}, ttl=600, now=time.time()
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, keys, app


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_anonymous_gets_401_problem(
    setup: tuple[httpx.AsyncClient, dict[str, str], FastAPI],
) -> None:
    client, _, _ = setup
    r = await client.get("/ops/watch")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unauthenticated"


async def test_non_operators_get_403(
    setup: tuple[httpx.AsyncClient, dict[str, str], FastAPI],
) -> None:
    client, keys, _ = setup
    for who in ("hank", "listener"):
        r = await client.get("/ops/watch", headers=auth(keys[who]))
        assert r.status_code == 403, who
        assert r.json()["code"] == "not_allowed"
    r = await client.get("/ops/watch", headers=auth("th_" + "x" * 40))
    assert r.status_code == 401


async def test_operator_sees_verdict_timeline_and_mitigations(
    setup: tuple[httpx.AsyncClient, dict[str, str], FastAPI],
) -> None:
    client, keys, _ = setup
    for who in ("olga", "op-token"):
        r = await client.get("/ops/watch", headers=auth(keys[who]))
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["verdict"]["label"] == "attack"
        assert body["verdict"]["attacks"] == ["join_flood"]
        assert body["headline"].startswith("Attack (join flood)")
        assert len(body["timeline"]) == 6
        assert [row["label"] for row in body["timeline"]][:3] == ["normal"] * 3
        assert body["mitigations"]["block_sources"][0]["source"].startswith("198.51.100.")
        assert body["features"]["joins"]["attempts"] > 100


async def test_space_filter_and_validation(
    setup: tuple[httpx.AsyncClient, dict[str, str], FastAPI],
) -> None:
    client, keys, _ = setup
    r = await client.get("/ops/watch?space=sp1", headers=auth(keys["olga"]))
    assert r.status_code == 200
    rows = r.json()["timeline"]
    assert r.json()["space"] == "sp1"
    assert rows[-1]["joins"]["refused"] > 100 and 10 <= rows[0]["listeners"] <= 25
    r = await client.get("/ops/watch?space=other", headers=auth(keys["olga"]))
    assert all(row["joins"]["attempts"] == 0 for row in r.json()["timeline"])
    r = await client.get("/ops/watch?space=bad%20id", headers=auth(keys["olga"]))
    assert r.status_code == 422


async def test_no_watch_is_503(setup: tuple[httpx.AsyncClient, dict[str, str], FastAPI]) -> None:
    client, keys, app = setup
    app.state.watch = None
    r = await client.get("/ops/watch", headers=auth(keys["olga"]))
    assert r.status_code == 503
    assert r.json()["code"] == "watch_unavailable"
