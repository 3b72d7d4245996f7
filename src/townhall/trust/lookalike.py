"""Look-alike names: a confusable skeleton of text, and matching against verified hosts.

``skeleton`` follows Unicode TR39 (``skeleton(X)``: decompose, map each character to its
prototype, recompose), with the data cut down to what imitates Latin letters and digits
(``_confusables.py``, generated from Unicode's confusables.txt) and three deliberate changes
for names shown to people:

- NFKC first (fullwidth and mathematical letters become ASCII), combining marks and format
  characters (zero-width spaces and joiners, bidi controls, soft hyphens) are dropped;
- it is case-insensitive: everything is casefolded, and the TR39 ASCII confusions
  ``I l 1 |`` all become ``l`` (so ``i`` does too), ``0`` becomes ``o`` and ``rn`` becomes
  ``m`` (TR39 maps ``m`` to ``rn``; the other way round keeps keys readable);
- the usual number-for-letter swaps of scam handles (``3 4 5 7 @ $``) fold to letters.

Text is cut into words on anything that does not skeleton to a letter or digit (spaces,
punctuation, ``_``, emoji); a word's key is its skeleton. A verified host is matched by a run
of consecutive words whose joined keys equal its key (``Elon Musk``, ``elonmusk_``,
``Еlon Musk`` with a Cyrillic Е, ``El0n Musk``) or are within a small, length-aware edit
distance of it (``Vitalik Buterln``). Pure: no I/O, no clock.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from ._confusables import LOOKALIKES

DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})
"""Combining marks and format characters (zero-width space/joiners, bidi controls)."""

ASCII_CONFUSIONS = {
    "i": "l",
    "1": "l",
    "|": "l",
    "0": "o",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "@": "a",
    "$": "s",
}
"""Confusions inside ASCII, applied after casefolding (TR39's plus number-for-letter swaps)."""

MULTI_CONFUSIONS = (("rn", "m"), ("vv", "w"))
"""Letter pairs read as one letter; applied to each word's key."""

MIN_KEY = 3
"""Verified names whose key is shorter are not matched at all (too many honest collisions)."""

DISTINCTIVE_KEY = 5
"""Shorter single-word names match only when disguised with confusable characters."""

MAX_WINDOW = 6
"""Longest run of words compared with a verified name."""

MatchKind = Literal["exact", "confusable", "near"]


@lru_cache(maxsize=8192)
def fold_char(char: str) -> str:
    """One character folded to what it looks like: NFKC, marks and format characters
    dropped, non-ASCII look-alikes mapped to ASCII, casefolded. May be empty or longer."""
    text = unicodedata.normalize("NFKC", char)
    kept = (
        c
        for c in unicodedata.normalize("NFD", text)
        if unicodedata.category(c) not in DROPPED_CATEGORIES
    )
    return "".join(LOOKALIKES.get(c, c) for c in kept).casefold()


@lru_cache(maxsize=8192)
def skeleton_char(char: str) -> str:
    """:func:`fold_char` plus the ASCII confusions: what a character collapses to in a key."""
    return "".join(ASCII_CONFUSIONS.get(c, c) for c in fold_char(char))


def fold(text: str) -> str:
    """Text as it reads: look-alikes replaced, casefolded, invisible characters removed.
    Digits stay digits (for pattern matching on titles)."""
    return "".join(fold_char(c) for c in text)


def fold_with_origins(text: str) -> tuple[str, list[int]]:
    """:func:`fold` and, for each output character, the index of the input character."""
    out: list[str] = []
    origins: list[int] = []
    for index, char in enumerate(text):
        piece = fold_char(char)
        out.append(piece)
        origins.extend([index] * len(piece))
    return "".join(out), origins


def _collapse(key: str) -> str:
    for pair, single in MULTI_CONFUSIONS:
        key = key.replace(pair, single)
    return key


def skeleton(text: str) -> str:
    """The confusable skeleton of ``text`` (see the module docstring)."""
    return _collapse("".join(skeleton_char(c) for c in text))


@dataclass(frozen=True)
class Word:
    """A word of some text: where it is and its skeleton key."""

    start: int
    """Index of its first character in the original text."""
    end: int
    """Index after its last character."""
    key: str
    """Skeleton of the word (letters and digits only)."""


def words(text: str) -> list[Word]:
    """Split ``text`` into words on whatever does not skeleton to a letter or digit; invisible
    characters inside a word do not split it."""
    found: list[Word] = []
    start = -1
    pieces: list[str] = []
    end = 0
    for index, char in enumerate(text):
        piece = skeleton_char(char)
        if piece == "":
            continue  # dropped mark or zero-width character: neither splits nor adds
        if piece.isalnum():
            if start < 0:
                start = index
            pieces.append(piece)
            end = index + 1
            continue
        if start >= 0:
            found.append(Word(start, end, _collapse("".join(pieces))))
            start, pieces = -1, []
    if start >= 0:
        found.append(Word(start, end, _collapse("".join(pieces))))
    return found


def name_key(text: str) -> str:
    """The skeleton of a name with everything but letters and digits removed."""
    return "".join(w.key for w in words(text))


def plain_key(text: str) -> str:
    """A name as written: NFC, casefolded, letters, digits and invisible characters only (to
    tell a plain mention of a name from one disguised with look-alike, styled or hidden
    characters)."""
    normal = unicodedata.normalize("NFC", text).casefold()
    return "".join(
        c for c in normal if c.isalnum() or unicodedata.category(c) in DROPPED_CATEGORIES
    )


def edit_threshold(length: int) -> int:
    """Edits allowed between a key and a verified key of ``length`` characters."""
    if length < 8:
        return 0
    if length < 12:
        return 1
    if length <= 16:
        return 2
    return 3


def bounded_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (edits and adjacent swaps), or ``limit + 1`` as soon
    as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    if a == b:
        return 0
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        best = current[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[len(b)], limit + 1)


@dataclass(frozen=True)
class VerifiedHost:
    """A verified account whose name others might imitate."""

    handle: str
    """Account name (``elonmusk``)."""
    display_name: str
    """Name shown on pages (``Elon Musk``)."""


def bigrams(key: str) -> frozenset[str]:
    """Distinct adjacent pairs of characters: one edit or swap removes at most three of them,
    so a key with more than ``3k`` of a name's pairs missing is more than ``k`` edits away."""
    return frozenset(key[i : i + 2] for i in range(len(key) - 1))


def char_mask(key: str) -> int:
    """A bit per distinct character (in 64 buckets): keys ``k`` edits apart differ in at most
    ``2k`` bits, so most keys are ruled out without computing a distance."""
    mask = 0
    for char in key:
        mask |= 1 << (ord(char) % 64)
    return mask


@dataclass(frozen=True)
class Target:
    """One name of a verified host, ready to compare."""

    host: VerifiedHost
    """Whose name it is."""
    key: str
    """Skeleton key of the name."""
    plain: str
    """:func:`plain_key` of the name."""
    word_count: int
    """Words in the name."""
    mask: int = 0
    """:func:`char_mask` of the key."""
    pairs: frozenset[str] = frozenset()
    """:func:`bigrams` of the key."""

    @property
    def distinctive(self) -> bool:
        return len(self.key) >= DISTINCTIVE_KEY or self.word_count > 1


@dataclass(frozen=True)
class Match:
    """A run of words that imitates a verified host."""

    target: Target
    """The verified name matched."""
    seen: str
    """The words as written in the text."""
    first: int
    """Index of the first word of the run."""
    last: int
    """Index of the last word of the run."""
    kind: MatchKind
    """``exact``: the name itself; ``confusable``: same skeleton, different characters;
    ``near``: a few edits away."""
    distance: int
    """Edits between the keys (0 unless ``near``)."""

    @property
    def score(self) -> float:
        if self.kind == "near":
            return round(max(0.0, 1 - self.distance / max(1, len(self.target.key))), 3)
        return 1.0


@dataclass
class VerifiedIndex:
    """Skeleton keys of every verified host's names, built once and shared by assessments."""

    by_key: dict[str, list[Target]] = field(default_factory=dict)
    """Exact lookups."""
    near: dict[int, list[Target]] = field(default_factory=dict)
    """Targets long enough for edit-distance matches, by key length."""
    longest: int = 0
    """Length of the longest key (longer runs of words cannot match)."""
    hosts: tuple[VerifiedHost, ...] = ()
    """What it was built from (to tell whether a rebuild changes anything)."""
    memo: dict[tuple[object, ...], object] = field(default_factory=dict)
    """Assessments already made against this index (bounded by the assessor)."""

    @classmethod
    def build(cls, hosts: Iterable[VerifiedHost]) -> VerifiedIndex:
        listed = tuple(hosts)
        index = cls(hosts=listed)
        for host in listed:
            seen: set[str] = set()
            for name in (host.display_name, host.handle):
                split = words(name)
                key = "".join(w.key for w in split)
                if len(key) < MIN_KEY or key in seen:
                    continue
                seen.add(key)
                target = Target(
                    host, key, plain_key(name), len(split), char_mask(key), bigrams(key)
                )
                index.by_key.setdefault(key, []).append(target)
                index.longest = max(index.longest, len(key) + edit_threshold(len(key)))
                if edit_threshold(len(key)) > 0:
                    index.near.setdefault(len(key), []).append(target)
        return index

    def __len__(self) -> int:
        return len(self.hosts)

    def matches(self, text: str, *, exclude_handle: str | None = None) -> list[Match]:
        """Every run of words in ``text`` that imitates a verified host other than
        ``exclude_handle``, best first, at most one per verified host."""
        split = words(text)
        best: dict[str, Match] = {}
        for first in range(len(split)):
            key = ""
            for last in range(first, min(len(split), first + MAX_WINDOW)):
                key += split[last].key
                if len(key) > self.longest:
                    break
                for target, distance in self._candidates(key):
                    if target.host.handle == exclude_handle:
                        continue
                    seen = text[split[first].start : split[last].end]
                    kind = _kind(seen, target, distance)
                    if kind != "confusable" and not target.distinctive:
                        continue
                    match = Match(target, seen, first, last, kind, distance)
                    held = best.get(target.host.handle)
                    if held is None or _rank(match) > _rank(held):
                        best[target.host.handle] = match
        return sorted(best.values(), key=_rank, reverse=True)

    def whole(self, text: str, *, exclude_handle: str | None = None) -> Match | None:
        """The verified host whose name ``text`` is, as a whole (same skeleton), if any."""
        for match in self.matches(text, exclude_handle=exclude_handle):
            if match.distance == 0 and match.first == 0 and match.last == len(words(text)) - 1:
                return match
        return None

    def _candidates(self, key: str) -> list[tuple[Target, int]]:
        found = [(t, 0) for t in self.by_key.get(key, ())]
        mask = char_mask(key)
        pairs: frozenset[str] | None = None
        for length in range(max(1, len(key) - 3), len(key) + 4):
            limit = edit_threshold(length)
            if limit == 0 or abs(length - len(key)) > limit:
                continue
            for target in self.near.get(length, ()):
                if target.key == key or (target.mask ^ mask).bit_count() > 2 * limit:
                    continue
                pairs = bigrams(key) if pairs is None else pairs
                if len(target.pairs - pairs) > 3 * limit:
                    continue
                distance = bounded_distance(key, target.key, limit)
                if distance <= limit:
                    found.append((target, distance))
        return found


def _kind(seen: str, target: Target, distance: int) -> MatchKind:
    if distance > 0:
        return "near"
    return "exact" if plain_key(seen) == target.plain else "confusable"


def _rank(match: Match) -> tuple[int, int]:
    """Longer names matched first (``Vitalik Buterin`` over the handle ``vitalik``), then
    disguised over misspelt over plain."""
    order = {"confusable": 2, "near": 1, "exact": 0}
    return (len(match.target.key) - match.distance, order[match.kind])


def index_of(hosts: VerifiedIndex | Sequence[VerifiedHost]) -> VerifiedIndex:
    """An index, building one when given a plain list of hosts."""
    return hosts if isinstance(hosts, VerifiedIndex) else VerifiedIndex.build(hosts)
