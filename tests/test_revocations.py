"""Revoked tickets and blocks: the pure list, the list shared by two nodes through a real
Redis, and an embedded node keeping both in its data folder across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cluster_helpers import fresh_db
from conftest import start_node
from townhall.gate import revocations as revmod
from townhall.gate.blocks import Blocks
from townhall.gate.revocations import Revocation, RevocationList, Revocations
from townhall.store.redis_client import redis_client


def rev(subject: str | None = None, jti: str | None = None, *, at: float = 0.0) -> Revocation:
    return Revocation(subject, jti, at, at + 100.0, "test")


def test_a_subject_revokes_all_its_tickets_and_a_jti_one() -> None:
    revs = Revocations()
    revs.add(rev("anon:a"), now=0.0)
    revs.add(rev(jti="t1"), now=0.0)
    assert revs.revoked("anon:a", "any", now=1.0)
    assert revs.revoked("anon:b", "t1", now=1.0)
    assert not revs.revoked("anon:b", "t2", now=1.0)
    assert not revs.revoked("anon:a", "any", now=100.0)  # lapsed
    assert revs.active(100.0) == []


def test_the_list_is_bounded_but_renewing_is_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(revmod, "MAX_REVOCATIONS", 2)
    revs = Revocations()
    revs.add(rev("anon:a"), now=0.0)
    revs.add(rev("anon:b"), now=0.0)
    with pytest.raises(ValueError):
        revs.add(rev("anon:c"), now=0.0)
    revs.add(rev("anon:a", at=50.0), now=50.0)  # same key: renewed
    revs.add(rev("anon:c", at=120.0), now=120.0)  # anon:b lapsed meanwhile
    assert [r.subject for r in revs.active(120.0)] == ["anon:a", "anon:c"]


async def test_two_nodes_share_revocations_through_redis(redis_url: str) -> None:
    url = fresh_db(redis_url, 5)
    r1, r2 = redis_client(url, decode_responses=True), redis_client(url, decode_responses=True)
    one, two = RevocationList(r1), RevocationList(r2)
    try:
        await one.start()
        await two.start()
        await one.add(rev("anon:x", at=1000.0), now=1000.0)
        for _ in range(30):
            if two.revoked("anon:x", "t", now=1001.0):
                break
            await asyncio.sleep(0.1)
        assert two.revoked("anon:x", "t", now=1001.0)
        await two.prune(now=2000.0)  # lapsed: gone from Redis too
        await one.start()  # no-op when running
        for _ in range(30):
            if not one.revoked("anon:x", "t", now=1001.0):
                break
            await asyncio.sleep(0.1)
        assert not one.revoked("anon:x", "t", now=1001.0)
    finally:
        await one.close()
        await two.close()
        await r1.aclose()
        await r2.aclose()


async def test_an_embedded_node_keeps_blocks_and_revocations_in_its_data_folder(
    tmp_path: Path,
) -> None:
    blocks_file, revs_file = tmp_path / "m" / "blocks.json", tmp_path / "m" / "revocations.json"
    blocks, revs = Blocks(path=blocks_file), RevocationList(path=revs_file)
    await blocks.start()
    await revs.start()
    kept = await blocks.add(source="127.9.0.1", network=None, ttl=None, now=0.0)
    dropped = await blocks.add(source=None, network="127.8.0.0/24", ttl=None, now=0.0)
    assert await blocks.remove(dropped.id)
    await revs.add(rev("anon:z", at=0.0), now=0.0)

    again, revs_again = Blocks(path=blocks_file), RevocationList(path=revs_file)  # a restart
    await again.start()
    await revs_again.start()
    assert again.list.blocked("127.9.0.1", now=1.0) == kept
    assert again.list.blocked("127.8.0.5", now=1.0) is None
    assert revs_again.revoked("anon:z", "t", now=1.0)
    assert not list(blocks_file.parent.glob(".*"))  # no temporary files left behind


async def test_a_block_holds_in_memory_when_its_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    blocks = Blocks(path=blocker / "blocks.json")
    await blocks.start()
    block = await blocks.add(source="127.9.0.2", network=None, ttl=None, now=0.0)
    assert blocks.list.blocked("127.9.0.2", now=1.0) == block


def test_the_node_restarts_with_its_blocks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = start_node(data)
    try:
        operator = {"Authorization": f"Bearer {node.add_user('opal', '--operator')}"}
        r = httpx.post(f"{node.url}/ops/blocks", json={"source": "127.7.0.9"}, headers=operator)
        assert r.status_code == 201, r.text
        r = httpx.post(f"{node.url}/ops/revocations", json={"subject": "anon:x"}, headers=operator)
        assert r.status_code == 201, r.text
    finally:
        node.stop()
    node = start_node(data)
    try:
        listed = httpx.get(f"{node.url}/ops/blocks", headers=operator).json()
        assert [b["source"] for b in listed["blocks"]] == ["127.7.0.9"]
        listed = httpx.get(f"{node.url}/ops/revocations", headers=operator).json()
        assert [r["subject"] for r in listed["revocations"]] == ["anon:x"]
    finally:
        node.stop()
