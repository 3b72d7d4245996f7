"""Small helpers the adapters use to describe what they answered to the watch."""

from __future__ import annotations

from ..auth import TokenError
from .observations import BAD_TICKET, EXPIRED_TICKET, FORGED_TICKET

_FORGED = {"bad_signature", "unknown_key", "bad_algorithm"}


def ticket_outcome(error: TokenError) -> str:
    """Map a refused token to the watch's ticket outcome."""
    if error.code in _FORGED:
        return FORGED_TICKET
    if error.code == "expired_token":
        return EXPIRED_TICKET
    return BAD_TICKET
