"""Pure core of the listener log shipper and the shared Redis key scheme."""

from __future__ import annotations

import base64
import json

from townhall.edge.seen import HllWrite, SeenBatch, listener_of, parse_line
from townhall.watch.edge_counts import all_key, bucket_key, bucket_keys


def payload(claims: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


P_ANN = payload({"iss": "townhall", "sub": "user:ann", "sid": "s1", "exp": 9})
P_BOB = payload({"sub": "anon:bob"})


def test_bucket_keys_cover_the_window_oldest_first() -> None:
    assert bucket_keys("s1", 1000.0) == [
        "th:seen:s1:97",
        "th:seen:s1:98",
        "th:seen:s1:99",
        "th:seen:s1:100",
    ]
    assert bucket_keys("s1", 1009.9, window=10) == ["th:seen:s1:99", "th:seen:s1:100"]
    assert bucket_key("s1", 1009.9) == "th:seen:s1:100"
    assert all_key("s1") == "th:seen:s1:all"


def test_listener_of_decodes_the_sub_claim() -> None:
    assert listener_of(P_ANN) == "user:ann"
    assert listener_of(P_BOB) == "anon:bob"
    assert listener_of(payload({"sub": 5})) is None
    assert listener_of(payload(["sub"])) is None
    assert listener_of("!!!") is None
    assert listener_of("") is None
    assert listener_of("A" * 5000) is None


def test_parse_line_keeps_successful_media_fetches_only() -> None:
    fetch = parse_line(f"s1 {P_ANN} 200 1700000005", now=1.0)
    assert fetch is not None
    assert (fetch.space, fetch.listener, fetch.at) == ("s1", "user:ann", 1700000005.0)
    assert parse_line(f"s1 {P_ANN} 304 -", now=7.0) is not None
    assert parse_line(f"s1 {P_ANN} 206 -", now=7.0).at == 7.0  # type: ignore[union-attr]
    for line in (
        f"s1 {P_ANN} 503 1700000005",
        f"s1 {P_ANN} 404 1700000005",
        "- - 200 1700000005",
        f"- {P_ANN} 200 1700000005",
        f"s1 {P_ANN} 200",
        "",
        "garbage",
        f"s1 {P_ANN} ok 1700000005",
    ):
        assert parse_line(line, now=1.0) is None, line


def test_batch_dedupes_per_bucket_and_drains() -> None:
    batch = SeenBatch()
    for line in (
        f"s1 {P_ANN} 200 1000",
        f"s1 {P_ANN} 200 1001",
        f"s1 {P_BOB} 200 1009",
        f"s1 {P_BOB} 200 1010",
        f"s2 {P_BOB} 200 1010",
    ):
        fetch = parse_line(line, now=0)
        assert fetch is not None
        batch.add(fetch)
    assert len(batch) == 4
    assert batch.drain() == [
        HllWrite("th:seen:s1:100", ("anon:bob", "user:ann"), 120),
        HllWrite("th:seen:s1:101", ("anon:bob",), 120),
        HllWrite("th:seen:s2:101", ("anon:bob",), 120),
        HllWrite("th:seen:s1:all", ("anon:bob", "user:ann"), None),
        HllWrite("th:seen:s2:all", ("anon:bob",), None),
    ]
    assert batch.drain() == []
    assert len(batch) == 0
