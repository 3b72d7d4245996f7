"""Look-alike names: skeletons, words, edit distance and matching against verified hosts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.trust._confusables import LOOKALIKES
from townhall.trust.lookalike import (
    VerifiedHost,
    VerifiedIndex,
    bounded_distance,
    edit_threshold,
    fold,
    name_key,
    skeleton,
    words,
)

VERIFIED = [
    VerifiedHost("elonmusk", "Elon Musk"),
    VerifiedHost("tesla", "Tesla"),
    VerifiedHost("spacex", "SpaceX"),
    VerifiedHost("vitalik", "Vitalik Buterin"),
    VerifiedHost("coinbase", "Coinbase"),
    VerifiedHost("ana", "Ana"),
    VerifiedHost("nasa", "NASA"),
]
INDEX = VerifiedIndex.build(VERIFIED)


@pytest.mark.parametrize(
    ("disguised", "plain"),
    [
        ("Еlon Musk", "Elon Musk"),  # Cyrillic capital Ie
        ("teslа", "tesla"),  # Cyrillic small a
        ("ΤΕSLA", "TESLA"),  # Greek Tau and Epsilon
        ("El0n Musk", "Elon Musk"),  # digit zero
        ("EIon Musk", "Elon Musk"),  # capital I for small l
        ("E1on Musk", "Elon Musk"),  # digit one
        ("Elon Rnusk", "Elon Musk"),  # rn for m
        ("𝐄𝐥𝐨𝐧 𝐌𝐮𝐬𝐤", "Elon Musk"),  # mathematical bold
        ("Ｅｌｏｎ　Ｍｕｓｋ", "Elon Musk"),  # fullwidth
        ("E\u200blon Mu\u200dsk", "Elon Musk"),  # zero-width space and joiner
        ("Éloń Musk", "Elon Musk"),  # accents
        ("Vitalik Buterln", "Vitalik Buterin"),
        ("Coinbаse", "Coinbase"),
        ("ЅрасеХ", "SpaceX"),  # all Cyrillic
    ],
)
def test_disguises_share_the_skeleton(disguised: str, plain: str) -> None:
    assert skeleton(disguised) == skeleton(plain)
    assert name_key(disguised) == name_key(plain)


@pytest.mark.parametrize(
    ("a", "b"),
    [("Ana", "Anna"), ("Tesla", "Testa"), ("Mark", "Mack"), ("SpaceX", "Spaces"), ("Bob", "Rob")],
)
def test_different_names_keep_different_skeletons(a: str, b: str) -> None:
    assert skeleton(a) != skeleton(b)


def test_skeleton_is_idempotent_and_fold_keeps_digits() -> None:
    for text in ("Еlon Musk 2024", "dоuble yоur bitcоin", "Send 1 BTC"):
        assert skeleton(skeleton(text)) == skeleton(text)
    assert fold("Send 1 BТС") == "send 1 btc"
    assert fold("dоuble\u200b yоur") == "double your"


def test_table_is_generated_from_unicode_data() -> None:
    assert LOOKALIKES["\u0430"] == "a"  # CYRILLIC SMALL LETTER A
    assert LOOKALIKES["\u03bf"] == "o"  # GREEK SMALL LETTER OMICRON
    assert all(not k.isascii() and v.isascii() and v.isalnum() for k, v in LOOKALIKES.items())


def test_words_split_on_punctuation_emoji_and_underscores_not_on_invisibles() -> None:
    assert [w.key for w in words("elon_musk.official 🚀")] == ["elon", "musk", "offlclal"]
    assert [w.key for w in words("E\u200blon")] == ["elon"]
    text = "Hi Еlon!"
    span = words(text)[1]
    assert text[span.start : span.end] == "Еlon"


def test_bounded_distance() -> None:
    assert bounded_distance("elonmusk", "elonmusk", 1) == 0
    assert bounded_distance("elonmusk", "elonmask", 1) == 1
    assert bounded_distance("elonmusk", "eolnmusk", 1) == 1  # adjacent swap is one edit
    assert bounded_distance("elonmusk", "jeffbezos", 2) == 3  # capped at limit + 1
    assert bounded_distance("abc", "abcdef", 1) == 2
    assert [edit_threshold(n) for n in (3, 7, 8, 11, 12, 16, 17)] == [0, 0, 1, 1, 2, 2, 3]


POSITIVE = [
    ("Elon Musk Official", "elonmusk", "exact"),
    ("Еlon Musk", "elonmusk", "confusable"),
    ("El0n Musk", "elonmusk", "confusable"),
    ("elonmusk_", "elonmusk", "exact"),
    ("ElonMusk", "elonmusk", "exact"),
    ("Elon Mask", "elonmusk", "near"),
    ("Eoln Musk", "elonmusk", "near"),
    ("teslа", "tesla", "confusable"),
    ("Tesla Support", "tesla", "exact"),
    ("SpaceX Live 🚀", "spacex", "exact"),
    ("Vitalik Buterln", "vitalik", "confusable"),
    ("Vitalik Butterin", "vitalik", "near"),
    ("Vitallk Buterin", "vitalik", "confusable"),
    ("Coinbаse Help Desk", "coinbase", "confusable"),
    ("Аna", "ana", "confusable"),
    ("ΝΑЅΑ", "nasa", "confusable"),
]


@pytest.mark.parametrize(("text", "handle", "kind"), POSITIVE)
def test_look_alikes_match_their_verified_host(text: str, handle: str, kind: str) -> None:
    found = INDEX.matches(text)
    assert found, text
    assert found[0].target.host.handle == handle
    assert found[0].kind == kind


NEGATIVE = [
    "Anna",  # one letter from the verified "Ana", but a different name
    "Ana Lopez",  # a short verified name matches only when disguised
    "Testa",
    "Spaces",
    "Twitter spaces tips",
    "Elon",
    "Musk ox documentary",
    "Coinage history",
    "Elonora Muskat",
    "Bitcoin halving explained",
    "Alice Smith",
    "Vitamin Butter",
    "NASDAQ",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_other_names_do_not_match(text: str) -> None:
    assert INDEX.matches(text) == [], text


def test_a_verified_host_is_not_matched_against_itself() -> None:
    assert INDEX.matches("Elon Musk", exclude_handle="elonmusk") == []
    assert INDEX.whole("Еlon Musk") is not None
    assert INDEX.whole("Еlon Musk live") is None


def test_index_prunes_before_computing_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    """With thousands of verified hosts, only a handful of edit distances are computed per
    title (length buckets and character masks rule the rest out), so views stay cheap."""
    import townhall.trust.lookalike as lookalike

    hosts = [VerifiedHost(f"host{i}", f"Person Number{i} Surname{i}") for i in range(2000)]
    index = VerifiedIndex.build([*hosts, *VERIFIED])
    calls = 0
    real = lookalike.bounded_distance

    def counting(a: str, b: str, limit: int) -> int:
        nonlocal calls
        calls += 1
        return real(a, b, limit)

    monkeypatch.setattr(lookalike, "bounded_distance", counting)
    for i in range(20):
        assert index.matches(f"Weekly chat about things number {i} with friends") == []
    assert calls < 200, calls
    assert index.matches("Person Numbr7 Surname7")[0].target.host.handle == "host7"
    assert index.matches("Еlon Musk")[0].target.host.handle == "elonmusk"


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(alphabet="abcdefghjkmnopqrstuvwxyz", min_size=8, max_size=20),
    edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30), st.sampled_from("bcdxyz"))),
)
def test_pruning_never_hides_a_name_within_the_edit_threshold(
    name: str, edits: list[tuple[int, int, str]]
) -> None:
    index = VerifiedIndex.build([VerifiedHost("target", name)])
    limit = edit_threshold(len(name))
    changed = name
    for op, at, char in edits[:limit]:
        at %= len(changed)
        if op == 0:
            changed = changed[:at] + char + changed[at + 1 :]
        elif op == 1:
            changed = changed[:at] + char + changed[at:]
        elif len(changed) > 1:
            changed = changed[:at] + changed[at + 1 :]
    if skeleton(name) != name or skeleton(changed) != changed:
        return  # an edit made "rn" or "vv": a different key, not what is tested here
    found = index.matches(changed)
    assert found and found[0].target.host.handle == "target", (name, changed)
