"""Per-identity limits on the small POSTs one listener can repeat: reactions and requests
to speak (and their cancellations), so no single ticket can flood a host's console.

Keys are ``(space, ticket subject)``: one GCRA timestamp each (:class:`townhall.gate.gcra.Gcra`),
held per node. A refusal is a 429 problem document with ``Retry-After`` in whole seconds.
Reactions never reach the stage event stream at all (the reactions route stores a count and
publishes nothing); requests to speak do, and these limits bound how often one identity can
make the host console move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from starlette.requests import Request

from ..gate.gcra import Gcra
from .problems import Problem

REACTION_RATE = 5.0
"""Reactions per second, sustained, per identity."""
REACTION_BURST = 10
"""Reactions one identity may send at once."""
SPEAK_REQUEST_RATE = 3 / 60
"""Requests to speak (and, separately, cancellations) per second per identity: 3 a minute."""
SPEAK_REQUEST_BURST = 3
"""Requests to speak one identity may make back to back."""

LIMITED_STAGE_ACTIONS = frozenset({"request", "cancel-request"})
"""Stage actions any listener can repeat on their own; the others need a host or an invitation."""


@dataclass
class AbuseLimits:
    """The limiters of one node (pure apart from the dictionaries inside Gcra)."""

    reactions: Gcra = field(default_factory=lambda: Gcra(REACTION_RATE, REACTION_BURST))
    """Reactions per (space, identity)."""
    speak_requests: Gcra = field(
        default_factory=lambda: Gcra(SPEAK_REQUEST_RATE, SPEAK_REQUEST_BURST)
    )
    """``request`` and ``cancel-request`` per (action, space, identity)."""

    def check_reaction(self, space_id: str, identity: str, now: float) -> None:
        """Count a reaction; raise a 429 :class:`Problem` when over the limit."""
        verdict = self.reactions.check(f"{space_id}\x00{identity}", now)
        if not verdict.allowed:
            raise _too_many(
                f"too many reactions: at most {REACTION_RATE:g} a second "
                f"(bursts of {REACTION_BURST})",
                verdict.retry_after,
            )

    def check_stage_action(self, action: str, space_id: str, identity: str, now: float) -> None:
        """Count a ``request``/``cancel-request``; other actions pass untouched."""
        if action not in LIMITED_STAGE_ACTIONS:
            return
        verdict = self.speak_requests.check(f"{action}\x00{space_id}\x00{identity}", now)
        if not verdict.allowed:
            per_minute = round(SPEAK_REQUEST_RATE * 60)
            raise _too_many(
                f"too many '{action}' actions: at most {per_minute} a minute",
                verdict.retry_after,
            )


def _too_many(detail: str, retry_after: float) -> Problem:
    wait = max(1, math.ceil(retry_after))
    return Problem(
        429,
        f"{detail}; try again in {wait} s",
        code="rate_limited",
        headers={"Retry-After": str(wait)},
        extra={"retry_after": wait},
    )


def abuse_limits(request: Request) -> AbuseLimits:
    """The node's limits, made on first use and kept on the app's state."""
    state = request.app.state
    limits = getattr(state, "abuse_limits", None)
    if not isinstance(limits, AbuseLimits):
        limits = AbuseLimits()
        state.abuse_limits = limits
    return limits
