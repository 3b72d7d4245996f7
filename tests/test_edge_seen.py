"""Pure core of the listener log shipper and the shared Redis key scheme."""

from __future__ import annotations

import base64
import json

import orjson

from townhall.edge.logship import MAX_REPORT_LISTENERS, logged_name, media_fetch, report_bodies
from townhall.edge.seen import HllWrite, MediaFetched, SeenBatch, listener_of
from townhall.watch.edge_counts import all_key, bucket_key, bucket_keys
from townhall.watch.ingest import edge_row


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


def line(
    status: str,
    name: str,
    payload: str,
    *,
    space: str = "s1",
    when: str = "1700000005",
    code: str = "",
    handling: str = "hit",
) -> str:
    """An edge log line in the reader's format (``OBS_FORMAT``)."""
    path = f"/hls/{space}/t/h.{payload}.sig/{name}"
    return f"127.1.0.9 {status} {handling} {when} {path} |{code}|{name}|{payload}\n"


def fetch_of(text: str, now: float = 1.0) -> MediaFetched | None:
    row = edge_row(text, now)
    return None if row is None else media_fetch(row, logged_name(text))


def test_served_media_fetches_are_counted_and_nothing_else() -> None:
    fetch = fetch_of(line("200", "part3.1.m4s", P_ANN))
    assert fetch == MediaFetched("s1", "user:ann", 1700000005.0)
    assert fetch_of(line("304", "seg3.m4s", P_ANN, handling="miss")) is not None
    assert fetch_of(line("206", "part3.2.m4s", P_ANN, when="-"), now=7.0) == MediaFetched(
        "s1", "user:ann", 7.0
    )
    for text in (
        line("503", "part3.1.m4s", P_ANN),
        line("404", "part3.1.m4s", P_ANN),
        line("200", "live.m3u8", P_ANN),  # playlists and init are not listening
        line("200", "init.mp4", P_ANN),
        line("401", "part3.1.m4s", P_ANN, code="bad_signature"),
        line("200", "part3.1.m4s", ""),
        line("200", "part3.1.m4s", "!!!"),
        "127.0.0.1 204 synth 1700000005 /_edge/probe |probe||\n",
        "",
        "garbage",
        "127.1.0.9 ok hit 1700000005 /hls/s1/t/x/part3.1.m4s |||" + P_ANN,
    ):
        assert fetch_of(text) is None, text


def test_batch_dedupes_per_bucket_and_drains() -> None:
    batch = SeenBatch()
    for text in (
        line("200", "part1.0.m4s", P_ANN, when="1000"),
        line("200", "part1.1.m4s", P_ANN, when="1001"),
        line("200", "part1.2.m4s", P_BOB, when="1009"),
        line("200", "part1.3.m4s", P_BOB, when="1010"),
        line("200", "part1.3.m4s", P_BOB, when="1010", space="s2"),
    ):
        fetch = fetch_of(text, now=0)
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


def test_a_large_second_is_split_into_bounded_reports() -> None:
    ids = [f"anon:{i}" for i in range(MAX_REPORT_LISTENERS + 10)]
    bodies = report_bodies({"a": ids[:10], "b": ids[10:]}, b'{"r":[]}')
    docs = [orjson.loads(b) for b in bodies]
    assert len(docs) == 2
    assert docs[0]["observations"] == {"r": []} and "observations" not in docs[1]
    sizes = [sum(len(v) for v in d["listeners"].values()) for d in docs]
    assert sizes == [MAX_REPORT_LISTENERS, 10]
    merged: dict[str, list[str]] = {}
    for d in docs:
        for space, members in d["listeners"].items():
            merged.setdefault(space, []).extend(members)
    assert merged == {"a": ids[:10], "b": ids[10:]}


def test_listeners_drain_per_space_for_an_origin_without_redis() -> None:
    batch = SeenBatch()
    for space, who, at in (("s1", "anon:b", 1.0), ("s1", "anon:a", 15.0), ("s2", "anon:b", 2.0)):
        batch.add(MediaFetched(space=space, listener=who, at=at))
    batch.add(MediaFetched(space="s1", listener="anon:a", at=16.0))
    assert batch.drain_listeners() == {"s1": ["anon:a", "anon:b"], "s2": ["anon:b"]}
    assert batch.drain_listeners() == {} and batch.drain() == []
