"""Scam patterns in titles and descriptions, including disguised spellings."""

from __future__ import annotations

import pytest

from townhall.trust.scam import find_scams

SCAMS = [
    ("Double your crypto LIVE", "double your crypto"),
    ("dоuble yоur bitcоin", "double your crypto"),  # Cyrillic о
    ("d0uble y0ur b1tcoin now", "double your crypto"),  # digits for letters
    ("DOUBLE YOUR ETH — limited time", "double your crypto"),
    ("2x your BTC in 30 minutes", "double your crypto"),
    ("Triple ur Ethereum tonight", "double your crypto"),
    ("Official BTC doubler event", "double your crypto"),
    ("D\u200bouble your Bitcoin", "double your crypto"),  # zero-width space
    ("Send 1 BTC get 2 BTC back", "send X, get 2X back"),
    ("send 0.5 ETH and receive 1 ETH", "send X, get 2X back"),
    ("Send any amount of crypto, we send double back", "send X, get 2X back"),
    ("Verify your wallet seed phrase to claim", "wallet secret request"),
    ("Enter your recovery phrase to sync rewards", "wallet secret request"),
    ("Tesla crypto giveaway — scan the QR code", "crypto giveaway with QR code or wallet"),
    ("Giant BTC giveaway: send to the address below", "crypto giveaway with QR code or wallet"),
    ("QR code giveaway, claim your prize", "QR code giveaway"),
    ("Airdrop claim is open", "airdrop claim"),
    ("Free airdrop, connect wallet", "airdrop claim"),
    ("Official giveaway: 5000 USDT", "official giveaway"),
    ("Hurry! Last chance, connect your wallet", "urgency with a wallet"),
    ("Only 10 spots left: send BTC to this address", "urgency with a wallet"),
    ("Еthеrеum giveaway — scan QR to claim", "crypto giveaway with QR code or wallet"),
    ("100% legit, not a scam: double your BTC", "double your crypto"),
]


@pytest.mark.parametrize(("text", "pattern"), SCAMS)
def test_scam_patterns_are_found(text: str, pattern: str) -> None:
    found = [m.pattern for m in find_scams(text)]
    assert pattern in found, (text, found)


HONEST = [
    "Bitcoin halving explained",
    "Ethereum staking Q&A",
    "Will bitcoin double in price by 2030?",
    "2x leverage on BTC: why it wipes people out",
    "How crypto wallets work: seed phrases 101",
    "Never share your seed phrase — security AMA",
    "How to spot crypto giveaway scams",
    "Why 'double your bitcoin' scams keep working",
    "Send us your questions and get answers live",
    "Concert ticket giveaway for listeners",
    "Our official giveaway winners announced",
    "QR codes in restaurant menus: a design chat",
    "Airdrops and tokenomics: research notes",
    "Limited time only: jazz night with the trio",
    "Hurry up and wait: the DMV podcast",
    "Weekly town hall",
    "Double feature: two films, one night",
    "Wallet design for the new app (leather craft)",
    "Crypto regulation in the EU",
]


@pytest.mark.parametrize("text", HONEST)
def test_honest_titles_are_not_flagged(text: str) -> None:
    assert find_scams(text) == [], text


def test_the_match_quotes_the_text_as_written() -> None:
    [match] = find_scams("Live now: dоuble yоur bitcоin!!")
    assert match.seen == "dоuble yоur bitcоin"
    assert match.start == len("Live now: ")
    assert 0 < match.score <= 1
