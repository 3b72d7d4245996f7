"""Seven surge and attack scenarios on loopback: a real ``townhall serve --redis`` node, a real
Varnish edge (``townhall edge run --redis --ops-key``: observations to the watch, blocks and
revocations from the node), and the declarative generator of
:mod:`townhall.loadgen.scenarios` with distinct 127.x sources.

Each scenario asserts: legitimate listeners served ≥ 99 % (admitted and got audio, or queued
with an ETA), none wrongly refused or blocked, the right verdict from ``GET /ops/watch``
(polled every 0.5 s) within 10 s of the attack's start (no attack named for the crowd
alone), and records the origin's media load from ``/metrics``. An operator loop applies the
watch's suggested mitigations (block sources, revoke tickets) as they appear.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from redis.asyncio import Redis

from conftest import Node, free_port, start_node
from townhall.auth import Grant, Keyring, TokenIssuer
from townhall.auth.apikeys import hash_api_key, new_api_key
from townhall.edge.keysync import sync_keys
from townhall.loadgen.scenarios import SCENARIOS, Mix, MixResult, Target, run_mix
from townhall.store import User
from townhall.store.redis import RedisStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("varnishd") is None, reason="needs Debian's varnish"),
]

RESULTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "surge_scenarios.json"
VERDICT_DEADLINE = 10.0


@dataclass
class Stack:
    node: Node
    edge: str
    space: str
    ops_key: str
    keys: Path
    edge_proc: subprocess.Popen[str]
    edge_log: list[str] = field(default_factory=list)


def _read_lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)
    out.put("")


async def _add_users(redis_url: str) -> tuple[str, str]:
    host, ops = new_api_key(), new_api_key()
    store = RedisStore(redis_url)
    try:
        now = time.time()
        await store.add_user(User("hana", hash_api_key(host), "Hana", True, False, now))
        await store.add_user(User("olga", hash_api_key(ops), "Olga", False, True, now))
    finally:
        await store.close()
    return host, ops


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    async def flush() -> None:
        r = Redis.from_url(redis_url)
        await r.flushdb()
        await r.aclose()

    asyncio.run(flush())
    host_key, ops_key = asyncio.run(_add_users(redis_url))
    node = start_node(tmp_path / "data", "--redis", redis_url)
    edge_proc: subprocess.Popen[str] | None = None
    try:
        r = httpx.post(
            node.url + "/api/spaces",
            json={"title": "surge"},
            headers={"Authorization": f"Bearer {host_key}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        space = r.json()["id"]
        deadline = time.monotonic() + 15
        while httpx.get(f"{node.url}/hls/{space}/live.m3u8", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the programme did not start"
            time.sleep(0.2)
        keys = sync_keys(redis_url, tmp_path / "edge-keys.json")
        port = free_port()
        edge_proc = subprocess.Popen(
            [sys.executable, "-m", "townhall", "edge", "run", "--origin", node.url]
            + ["--listen", f"127.0.0.1:{port}", "--keys", str(keys), "--redis", redis_url]
            + ["--name", "edge-s", "--ops-key", ops_key, "--log-level", "info"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert edge_proc.stdout is not None
        threading.Thread(target=_read_lines, args=(edge_proc.stdout, lines), daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while not any(" ready on " in line for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, f"edge exited: {''.join(seen)}"
            seen.append(line)
        st = Stack(node, f"http://127.0.0.1:{port}", space, ops_key, keys, edge_proc, seen)
        threading.Thread(target=_drain, args=(lines, seen), daemon=True).start()
        yield st
    finally:
        if edge_proc is not None:
            edge_proc.terminate()
            try:
                edge_proc.wait(15)
            except subprocess.TimeoutExpired:
                edge_proc.kill()
                edge_proc.wait(5)
            time.sleep(0.2)  # the reader thread sees EOF
            if edge_proc.stdout is not None:
                edge_proc.stdout.close()
        node.stop()


def _drain(lines: queue.Queue[str], seen: list[str]) -> None:
    while line := lines.get():
        seen.append(line)


def _origin_media_requests(text: str) -> float:
    total = 0.0
    for m in re.finditer(
        r'^townhall_http_requests_total\{route="(/hls/[^"]*)"[^}]*\} ([0-9.e+]+)$',
        text,
        re.MULTILINE,
    ):
        total += float(m.group(2))
    return total


@dataclass
class Observed:
    """What the operator loop saw and did."""

    first_named: dict[str, float] = field(default_factory=dict)
    """Attack kind (or ``flash_crowd``) → seconds after the attack start it was first named."""
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    polls: int = 0
    last_features: dict[str, Any] = field(default_factory=dict)


async def _operate(stack: Stack, mix: Mix, t0: float, stop: asyncio.Event, seen: Observed) -> None:
    """Poll the watch every 0.5 s; apply its mitigations like an operator would."""
    headers = {"Authorization": f"Bearer {stack.ops_key}"}
    async with httpx.AsyncClient(base_url=stack.node.url, headers=headers, timeout=5) as c:
        while not stop.is_set():
            await asyncio.sleep(0.5)
            try:
                r = await c.get("/ops/watch")
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                continue
            seen.polls += 1
            doc = r.json()
            verdict = doc.get("verdict") or {}
            seen.last_features = doc.get("features") or {}
            since = time.time() - (t0 + mix.attack_start)
            for kind in verdict.get("attacks", []):
                if kind in mix.expect_attacks:
                    seen.first_named.setdefault(kind, max(0.0, since))
                else:  # named, but not what this mix is about
                    seen.false_alarms.append({"at": round(since, 1), "kind": kind})
            if verdict.get("label") in ("flash_crowd", "both"):
                seen.first_named.setdefault("flash_crowd", max(0.0, since))
            m = doc.get("mitigations") or {}
            if not m.get("active"):
                continue
            for item in m.get("block_sources", []):
                src = item["source"]
                if src not in seen.blocked:
                    seen.blocked.add(src)
                    await c.post("/ops/blocks", json={"source": src, "reason": "watch"})
            for item in m.get("revoke_tickets", []):
                sub = item["listener"]
                if sub not in seen.revoked:
                    seen.revoked.add(sub)
                    await c.post("/ops/revocations", json={"subject": sub, "reason": "watch"})


def _expired_ticket(keys: Path, space: str) -> str:
    issuer = TokenIssuer(Keyring.load(keys))
    return issuer.issue(
        subject="anon:old",
        space_id=space,
        grants={Grant.LISTEN},
        ttl=60,
        now=time.time() - 3600,
    )


async def _scenario(stack: Stack, mix: Mix) -> tuple[MixResult, Observed, float]:
    target = Target(
        api=stack.node.url,
        edge=stack.edge,
        space=stack.space,
        expired_ticket=_expired_ticket(stack.keys, stack.space),
    )
    async with httpx.AsyncClient(timeout=5) as c:
        before = _origin_media_requests((await c.get(stack.node.url + "/metrics")).text)
        t0 = time.time() + 0.5
        stop = asyncio.Event()
        seen = Observed()
        operator = asyncio.create_task(_operate(stack, mix, t0, stop, seen))
        result = await run_mix(mix, target, t0=t0)
        await asyncio.sleep(1.0)
        stop.set()
        await operator
        after = _origin_media_requests((await c.get(stack.node.url + "/metrics")).text)
    origin_rps = (after - before) / (time.time() - t0)
    return result, seen, origin_rps


def _record(name: str, row: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    data: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = row
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True))


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario(stack: Stack, name: str) -> None:
    mix = SCENARIOS[name]
    result, seen, origin_rps = await _scenario(stack, mix)
    summary = result.summary()
    verdict_times = {k: round(v, 2) for k, v in seen.first_named.items()}
    row = {
        **summary,
        "verdict_seconds": verdict_times,
        "other_kinds_named": sorted({a["kind"] for a in seen.false_alarms}),
        "blocked_sources": sorted(seen.blocked),
        "revoked": sorted(seen.revoked),
        "origin_media_rps": round(origin_rps, 1),
        "last_watch_features": seen.last_features,
    }
    _record(name, row)
    print(json.dumps(row, indent=1, default=str))
    legit_sources = {f"127.10.{i}.{j}" for i in range(256) for j in range(256)}
    assert not (seen.blocked & legit_sources), "a legitimate listener was blocked"
    assert summary["wrongly_refused"] == 0, summary
    assert summary["server_errors"] == 0, summary
    assert summary["served_share"] >= 0.99, summary
    for kind in mix.expect_attacks:
        assert kind in seen.first_named, (kind, json.dumps(seen.last_features))
        assert seen.first_named[kind] <= VERDICT_DEADLINE, row
    if mix.expect_crowd:
        assert "flash_crowd" in seen.first_named, row
    if not mix.expect_attacks:
        assert not seen.false_alarms, seen.false_alarms[:3]
        assert not seen.blocked
