"""Revoked tickets: the pure list, and the list shared by two nodes through a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from cluster_helpers import fresh_db
from townhall.gate import revocations as revmod
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
