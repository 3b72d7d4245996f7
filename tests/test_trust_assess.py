"""Whole-space assessments: which spaces get flagged, and which honest ones do not."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from townhall.trust.assess import Flag, assess_space
from townhall.trust.lookalike import VerifiedHost, VerifiedIndex

VERIFIED = [
    VerifiedHost("elonmusk", "Elon Musk"),
    VerifiedHost("tesla", "Tesla"),
    VerifiedHost("spacex", "SpaceX"),
    VerifiedHost("vitalik", "Vitalik Buterin"),
    VerifiedHost("coinbase", "Coinbase"),
    VerifiedHost("ana", "Ana"),
    VerifiedHost("hana", "Hana Kim"),
]
INDEX = VerifiedIndex.build(VERIFIED)


@dataclass(frozen=True)
class Case:
    title: str
    host_display: str = "Bob"
    host_name: str = "bob"
    verified: bool = False
    description: str | None = None


def run(case: Case) -> tuple[Flag, ...]:
    return assess_space(
        case.title, case.description, case.host_display, case.verified, case.host_name, INDEX
    ).flags


IMPERSONATION = [
    (Case("Ask me anything", "Elon Musk Official", "elon_official"), "Elon Musk"),
    (Case("Ask me anything", "Еlon Musk", "elon2"), "Elon Musk"),
    (Case("Evening chat", "El0n Musk", "el0n"), "Elon Musk"),
    (Case("Evening chat", "elonmusk_", "someone"), "Elon Musk"),
    (Case("Evening chat", "Bob", "elonmusk_"), "Elon Musk"),
    (Case("Evening chat", "E\u200blon Musk", "zw"), "Elon Musk"),
    (Case("Evening chat", "𝐄𝐥𝐨𝐧 𝐌𝐮𝐬𝐤", "fancy"), "Elon Musk"),
    (Case("Product news", "teslа", "tesla_x"), "Tesla"),
    (Case("Product news", "Tesla Support", "tsupport"), "Tesla"),
    (Case("Launch", "SpaceX Live 🚀", "launcher"), "SpaceX"),
    (Case("Ethereum roadmap", "Vitalik Buterln", "vb"), "Vitalik Buterin"),
    (Case("Ethereum roadmap", "Vitalik Butarin", "vb2"), "Vitalik Buterin"),
    (Case("Account help", "Coinbаse Help Desk", "cbhelp"), "Coinbase"),
    (Case("Hello", "Аna", "ana2"), "Ana"),
    (Case("Tesla Fan Club", "Tеsla Fan Club", "fans"), "Tesla"),  # disguised: not excused
    (Case("SpaceX Live 🚀"), "SpaceX"),
    (Case("Еlon Musk AMA"), "Elon Musk"),
    (Case("Elon Musk"), "Elon Musk"),
    (Case("Official Tesla announcement"), "Tesla"),
    (Case("Vitalik Buterln on the merge"), "Vitalik Buterin"),
    (Case("Coinbase support — account recovery"), "Coinbase"),
    (Case("Live with Hana Kim"), "Hana Kim"),
    # a verified host disguising someone else's name
    (Case("Chat with Еlon Musk", "Hana Kim", "hana", verified=True), "Elon Musk"),
]


@pytest.mark.parametrize(("case", "target"), IMPERSONATION)
def test_impersonation_is_flagged(case: Case, target: str) -> None:
    flags = [f for f in run(case) if f.kind == "impersonation"]
    assert [f.target for f in flags][:1] == [target], (case, flags)
    assert flags[0].target_handle in {h.handle for h in VERIFIED}
    assert 0 < flags[0].score <= 1 and flags[0].detail


SCAMS = [
    Case("dоuble yоur bitcоin"),
    Case("Send 1 BTC get 2 BTC back"),
    Case("Giveaway!", description="Scan the QR code to get free BTC"),
    Case("Airdrop claim live now"),
    Case("Official giveaway", description="5,000 ETH for our listeners: claim now"),
    Case("Wallet check", description="Hurry, limited time: connect your wallet to claim ETH"),
]


@pytest.mark.parametrize("case", SCAMS)
def test_scam_spaces_are_flagged(case: Case) -> None:
    flags = run(case)
    assert any(f.kind == "scam" and f.target is None for f in flags), (case, flags)


HONEST = [
    Case("Weekly town hall"),
    Case("Bitcoin halving explained"),
    Case("Why Elon Musk bought Twitter"),
    Case("Tesla earnings live discussion"),
    Case("Twitter spaces tips"),
    Case("Nikola Tesla's inventions"),
    Case("Ethereum after the merge", "Anna", "anna"),  # Anna is not the verified Ana
    Case("Cooking with Ana", "Ana Lopez", "analopez"),  # short name, plain: not flagged
    Case("Book club", "Hanna", "hanna"),
    Case("Book club", "Hana", "hana2"),
    Case("Tesla owners meetup", "Tesla Fan Club", "teslafans"),
    Case("Parody hour", "Elon Musk (parody)", "parody1"),
    Case("Rocket science for kids", "Space Camp", "spacecamp"),
    Case("Base jumping stories", "Coin Collector", "coins"),
    Case("Crypto regulation in the EU", "Vitaly", "vitaly"),
    Case("How to spot crypto giveaway scams", "Safety Team", "safety"),
    Case("Never share your seed phrase"),
    Case("Muskoka cottage life", "Elena Muskova", "elena"),
    # verified hosts in their own spaces, by name
    Case("Elon Musk AMA", "Elon Musk", "elonmusk", verified=True),
    Case("SpaceX Live 🚀", "SpaceX", "spacex", verified=True),
    Case("Tesla Support", "Tesla", "tesla", verified=True),
    Case("Vitalik Buterin on rollups", "Vitalik Buterin", "vitalik", verified=True),
    # a verified host naming another verified host plainly
    Case("Live with Elon Musk", "Hana Kim", "hana", verified=True),
    Case("Ana", "Ana", "ana", verified=True),
    Case("Ethereum staking Q&A", "Vitalik Buterin", "vitalik", verified=True),
]


@pytest.mark.parametrize("case", HONEST)
def test_honest_spaces_are_not_flagged(case: Case) -> None:
    assert run(case) == (), case


def test_detail_names_the_host_and_the_look_alike() -> None:
    [flag] = run(Case("Еlon Musk AMA"))
    assert flag.detail == 'title imitates verified host "Elon Musk" (look-alike: "Еlon Musk")'
    assert flag.public() == {"kind": "impersonation", "detail": flag.detail, "target": "Elon Musk"}


def test_both_kinds_together_and_impersonation_first() -> None:
    flags = run(Case("Tesla giveaway: double your BTC", "Tesla Support", "tsupport"))
    assert [f.kind for f in flags] == ["impersonation", "scam"]


def test_accepts_a_plain_list_and_remembers_answers() -> None:
    flags = assess_space("Еlon Musk", None, "Bob", False, "bob", VERIFIED).flags
    assert flags and flags[0].target == "Elon Musk"
    index = VerifiedIndex.build(VERIFIED)
    first = assess_space("Еlon Musk", None, "Bob", False, "bob", index)
    assert assess_space("Еlon Musk", None, "Bob", False, "bob", index) is first
    assert assess_space("Hello", None, "Bob", False, "bob", []).flags == ()
