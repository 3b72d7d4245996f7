"""Scam patterns in a space's title and description (crypto doubling, giveaways, wallet grabs).

Patterns run on folded text (:func:`lookalike.fold`: look-alike letters from other scripts
become ASCII, case and invisible characters go), and again with digits inside words read as
letters, so ``dоuble yоur bitcоin`` (Cyrillic о) and ``d0uble y0ur b1tcoin`` are caught like
``double your bitcoin``. Talk *about* scams ("how to spot crypto giveaway scams") is not
flagged. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lookalike import fold_with_origins

CRYPTO = (
    r"(?:crypto(?:currency|currencies|s)?|bitcoins?|btc|eth(?:ereum)?|ether|usdt|usdc|tether"
    r"|sol(?:ana)?|doge(?:coin)?|xrp|bnb|shib|coins?|tokens?)"
)
WALLET = (
    r"(?:wallets?|(?:btc |eth |crypto |wallet )?address(?:es)?|metamask|seed phrase|private key)"
)
NUMBER = r"\d+(?:[.,]\d+)?"

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a"})
_WORD = re.compile(r"[\w@]+")


@dataclass(frozen=True)
class Pattern:
    """One known scam shape."""

    name: str
    """Shown to operators and in the flag's detail."""
    anchor: re.Pattern[str]
    """What must match (its text is quoted in the detail)."""
    context: tuple[re.Pattern[str], ...]
    """Each of these must also match somewhere in the text."""
    score: float
    """How sure a match is, 0..1."""


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "double your crypto",
        _re(
            rf"\b(?:double|triple|2x|3x|x2|x3|10x|multiply)\s+(?:all\s+)?(?:your|ur)\s+{CRYPTO}\b"
            rf"|\b{CRYPTO}\s+(?:doubler|doubling\s+event|multiplier)\b"
        ),
        (),
        0.95,
    ),
    Pattern(
        "send X, get 2X back",
        _re(
            rf"\bsend\s+(?:(?:us|me)\s+)?(?:any\s+amount|{NUMBER})\s*(?:of\s+)?{CRYPTO}?\b"
            r"[^.!?\n]{0,50}?\b(?:get|receive|recieve|send|return)\b[^.!?\n]{0,30}?"
            rf"(?:\bback\b|\bdouble\b|\btwice\b|\b2x\b|{NUMBER}\s*{CRYPTO})"
        ),
        (_re(rf"\b{CRYPTO}\b"),),
        0.95,
    ),
    Pattern(
        "wallet secret request",
        _re(
            r"\b(?:enter|share|send|verify|validate|sync|submit|type|paste|import)\s+"
            r"(?:in\s+)?(?:your|ur|the)?\s*(?:wallet\s+)?"
            r"(?:(?:seed|recovery|secret)\s+(?:phrase|words)|private\s+keys?)\b"
        ),
        (),
        0.95,
    ),
    Pattern(
        "crypto giveaway with QR code or wallet",
        _re(r"\bgive\s?aways?\b|\bgiving\s+away\b"),
        (_re(rf"\b{CRYPTO}\b"), _re(rf"\bqr\b|\bscan\b|\b{WALLET}\b|\bsend\b")),
        0.85,
    ),
    Pattern(
        "QR code giveaway",
        _re(r"\bqr(?:\s*-?\s*code)?\b|\bscan\s+(?:the|this)\s+code\b"),
        (
            _re(
                rf"\bgive\s?aways?\b|\bgiving\s+away\b|\bclaim\b|\bbonus\b|\breward\b|\bfree\b"
                rf"|\b{CRYPTO}\b"
            ),
        ),
        0.8,
    ),
    Pattern(
        "airdrop claim",
        _re(r"\bair\s?drops?\b"),
        (_re(r"\bclaim\w*\b|\bconnect\b|\beligib\w*\b|\bfree\b|\bwallets?\b"),),
        0.8,
    ),
    Pattern(
        "official giveaway",
        _re(r"\bofficial\s+(?:\w+\s+){0,2}give\s?aways?\b|\bgive\s?aways?\s+official\b"),
        (_re(rf"\b{CRYPTO}\b|\b{WALLET}\b|\bqr\b|\bclaim\b|\bcash\b|\busd\b|\$|\bmoney\b"),),
        0.8,
    ),
    Pattern(
        "urgency with a wallet",
        _re(
            r"\b(?:urgent|hurry|act\s+now|right\s+now|limited\s+time|last\s+chance"
            r"|only\s+\d+\s+(?:minutes?|mins?|hours?|spots?|left)|ends\s+(?:soon|in)"
            r"|before\s+it\s+ends|first\s+\d+|today\s+only|now\s+or\s+never|expires?)\b"
        ),
        (_re(rf"\b{WALLET}\b"), _re(rf"\b{CRYPTO}\b|\bsend\b|\bconnect\b|\bclaim\b")),
        0.8,
    ),
)

ABOUT_SCAMS = _re(r"\b(?:scams?|scammers?|fraud|phishing|beware|how\s+to\s+spot)\b")
CLAIMS_LEGIT = _re(r"\b(?:not\s+a|no|zero)\s+scams?\b|\blegit\b|\b100\s*%")
NEGATED = _re(r"\b(?:never|don'?t|do\s+not|not)\s+(?:\w+\s+)?$")


@dataclass(frozen=True)
class ScamMatch:
    """A scam pattern found in a text."""

    pattern: str
    """The pattern's name."""
    seen: str
    """The anchor's text as written (at most 80 characters)."""
    start: int
    """Index of the anchor in the text."""
    score: float
    """The pattern's score."""


def _letters(folded: str) -> str:
    """Digits and ``@`` inside words that have letters read as the letters they imitate
    (same length as the input)."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        return word.translate(_LEET) if re.search(r"[a-z]", word) else word

    return _WORD.sub(swap, folded)


def find_scams(text: str) -> list[ScamMatch]:
    """The scam patterns ``text`` matches, best first; empty for talk about scams."""
    folded, origins = fold_with_origins(text)
    views = (folded, _letters(folded))
    if any(ABOUT_SCAMS.search(v) for v in views) and not any(CLAIMS_LEGIT.search(v) for v in views):
        return []
    found: list[ScamMatch] = []
    for pattern in PATTERNS:
        hit = _first_hit(pattern, views)
        if hit is None:
            continue
        start, end = origins[hit[0]], origins[hit[1] - 1] + 1
        seen = " ".join(text[start:end].split())
        found.append(ScamMatch(pattern.name, seen[:80], start, pattern.score))
    return sorted(found, key=lambda m: -m.score)


def _first_hit(pattern: Pattern, views: tuple[str, str]) -> tuple[int, int] | None:
    for view in views:
        if not all(c.search(view) for c in pattern.context):
            continue
        for match in pattern.anchor.finditer(view):
            if match.end() == match.start():
                continue
            if NEGATED.search(view[max(0, match.start() - 24) : match.start()]):
                continue
            return match.start(), match.end()
    return None
