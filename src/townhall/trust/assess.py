"""Assess a space: does it imitate a verified host, does it look like a scam? Pure and fast.

Impersonation rules (a verified host's own names never count against their own spaces):

- **host name** (display name, and handle) of an account that is not verified: any run of
  words that is a verified host's name, a disguised copy of it (confusable characters) or a
  few edits away. ``Elon Musk Official``, ``Tesla Support``, ``elonmusk_``, ``El0n Musk``.
  A plain copy is excused when the name says it is a fan or parody account
  (``Tesla Fan Club``); a disguised copy never is.
- **title**: a disguised or misspelt verified name is flagged (``Еlon Musk AMA``); a plain
  mention only when the title *is* the name or presents the space as theirs, with a word such
  as *live*, *official*, *support* or *giveaway* right next to the name (``SpaceX Live 🚀``).
  Talking about someone (``Why Elon Musk bought Twitter``) is not flagged. Verified hosts'
  titles are checked for disguised names only.

Scam rules are in :mod:`scam`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .lookalike import Match, VerifiedHost, VerifiedIndex, index_of, name_key, words
from .scam import find_scams

FlagKind = Literal["impersonation", "scam"]

CUE_WORDS = frozenset(
    name_key(w)
    for w in """live official support team giveaway giveaways announcement announces event ceo
    real hq helpdesk help customer service care verified presents ama stream airdrop""".split()
)
"""Words (as skeleton keys) next to a name that present a space as that person's or brand's
own."""

FILLERS = frozenset(name_key(w) for w in "with by from featuring feat ft and x".split())
"""Words skipped when looking for a cue next to a name."""

DISCLAIMERS = frozenset(name_key(w) for w in "fan fans fanclub parody unofficial tribute".split())
"""Words (as skeleton keys) with which a host name says it is not the person it names."""

MEMO_LIMIT = 4096


@dataclass(frozen=True)
class Flag:
    """One reason to warn about a space."""

    kind: FlagKind
    """``impersonation`` or ``scam``."""
    detail: str
    """A sentence for people: what matched and why."""
    target: str | None
    """Display name of the verified host imitated (impersonation), else None."""
    score: float
    """How sure, 0..1."""
    target_handle: str | None = None
    """Account name of the verified host imitated."""

    def public(self) -> dict[str, str | None]:
        return {"kind": self.kind, "detail": self.detail, "target": self.target}

    def to_dict(self) -> dict[str, str | float | None]:
        return {
            "kind": self.kind,
            "detail": self.detail,
            "target": self.target,
            "target_handle": self.target_handle,
            "score": self.score,
        }


@dataclass(frozen=True)
class TrustAssessment:
    """What the trust checks found about one space."""

    flags: tuple[Flag, ...]
    """Reasons to warn, impersonation first, most certain first."""

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def of_kind(self, kind: FlagKind) -> tuple[Flag, ...]:
        return tuple(f for f in self.flags if f.kind == kind)


def assess_space(
    title: str,
    description: str | None,
    host_display_name: str,
    host_verified: bool,
    host_name: str,
    verified_hosts: VerifiedIndex | Sequence[VerifiedHost],
) -> TrustAssessment:
    """Assess a space. Pass a :class:`VerifiedIndex` when assessing many spaces: it is built
    once and remembers answers."""
    index = index_of(verified_hosts)
    memo_key = (title, description, host_display_name, host_verified, host_name)
    held = index.memo.get(memo_key)
    if isinstance(held, TrustAssessment):
        return held
    flags = [
        *_impersonation(index, title, host_display_name, host_verified, host_name),
        *_scam(title, description),
    ]
    result = TrustAssessment(tuple(flags))
    if len(index.memo) >= MEMO_LIMIT:
        index.memo.clear()
    index.memo[memo_key] = result
    return result


def _impersonation(
    index: VerifiedIndex, title: str, display: str, verified: bool, handle: str
) -> list[Flag]:
    found: dict[str, Flag] = {}

    def add(flag: Flag) -> None:
        key = flag.target_handle or ""
        if key not in found or flag.score > found[key].score:
            found[key] = flag

    if not verified:
        for field, text in (("host name", display), ("host handle", handle)):
            disclaimed = bool(DISCLAIMERS & {w.key for w in words(text)})
            for m in index.matches(text, exclude_handle=handle):
                if m.kind == "exact" and disclaimed:
                    continue
                add(_flag(m, f'{field} "{text}"'))
    for m in index.matches(title, exclude_handle=handle):
        if m.kind == "exact" and (verified or not _presents_as(m, title)):
            continue
        add(_flag(m, "title"))
    return sorted(found.values(), key=lambda f: -f.score)


def _presents_as(match: Match, title: str) -> bool:
    split = words(title)
    if match.first == 0 and match.last == len(split) - 1:
        return True
    around: set[str] = set()
    for start, step in ((match.first - 1, -1), (match.last + 1, 1)):
        at = start
        while 0 <= at < len(split):
            around.add(split[at].key)
            if split[at].key not in FILLERS:
                break
            at += step  # look past "with", "by", … ("Live with Hana Kim")
    return bool(around & CUE_WORDS)


def _flag(match: Match, where: str) -> Flag:
    name = match.target.host.display_name
    if match.kind == "exact" and where == "title":
        detail = f'title presents the space as verified host "{name}" ("{match.seen}")'
        score = 0.8
    elif match.kind == "exact":
        detail = f'{where} uses the name of verified host "{name}"'
        score = 0.8
    else:
        what = "look-alike" if match.kind == "confusable" else "near spelling"
        detail = f'{where} imitates verified host "{name}" ({what}: "{match.seen}")'
        score = match.score
    return Flag("impersonation", detail, name, score, match.target.host.handle)


def _scam(title: str, description: str | None) -> list[Flag]:
    flags: list[Flag] = []
    seen: set[str] = set()
    for field, text in (("title", title), ("description", description or "")):
        for hit in find_scams(text):
            if hit.pattern in seen:
                continue
            seen.add(hit.pattern)
            detail = f'{field} matches scam pattern "{hit.pattern}" ("{hit.seen}")'
            flags.append(Flag("scam", detail, None, hit.score))
    if not flags and description:
        for hit in find_scams(f"{title}\n{description}"):  # the parts may only add up together
            if hit.pattern not in seen:
                seen.add(hit.pattern)
                detail = f'title and description match scam pattern "{hit.pattern}"'
                flags.append(Flag("scam", detail, None, hit.score))
    return flags
