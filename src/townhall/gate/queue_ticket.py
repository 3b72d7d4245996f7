"""Queue tickets: a signed, expiring note of where someone stands in a space's waiting room.

A queue ticket carries the space, either a sequence number (arrived after the start) or a
pre-queue draw (arrived before it; ordered by the draw at the start), a random nonce that
becomes the listener id once admitted, and an expiry. It is signed with an HMAC-SHA256 key
derived from the token keyring for this one purpose (so a queue ticket is never a valid
token and no token is a valid queue ticket), and names the key id, so keys rotate as tokens
do. Changing any field breaks the MAC: nobody can skip ahead or forge a position.

Format (URL-safe, no padding): ``q1.<kid>.<space>.<s<seq>|d<draw µ>>.<nonce>.<exp>.<mac>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

PURPOSE = b"townhall/queue-ticket/v1"
VERSION = "q1"
DRAW_SCALE = 1_000_000
"""Draws travel as integers in ``0..DRAW_SCALE-1`` (micro-units of the 0..1 draw)."""
MAC_BYTES = 16
MAX_LENGTH = 512


@dataclass(frozen=True)
class QueueTicket:
    """What a valid queue ticket says."""

    space_id: str
    """Space whose waiting room issued it."""
    seq: int | None
    """Sequence number (arrived after the start); None for a pre-queue ticket."""
    draw: int | None
    """Pre-queue draw in ``0..DRAW_SCALE-1`` (arrived before the start); None otherwise."""
    nonce: str
    """Random hex; the admitted listener's id is ``anon:<nonce>``."""
    expires_at: int
    """Unix time after which the ticket is refused."""


class QueueTicketError(Exception):
    """A queue ticket was refused; ``outcome`` is the watch's word for it."""

    def __init__(self, code: str, detail: str, status: int, outcome: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.outcome = outcome


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class QueueTicketSigner:
    """Signs and verifies queue tickets with purpose keys derived from the token keys."""

    def __init__(self, secrets_by_kid: Mapping[str, bytes], active_kid: str) -> None:
        if active_kid not in secrets_by_kid:
            raise ValueError("the active key id must be among the keys")
        self._macs = {
            kid: hmac.new(hmac.new(secret, PURPOSE, hashlib.sha256).digest(), None, hashlib.sha256)
            for kid, secret in secrets_by_kid.items()
        }
        self._active = active_kid

    def _mac(self, kid: str, text: str) -> str:
        mac = self._macs[kid].copy()
        mac.update(text.encode("ascii"))
        return _b64(mac.digest()[:MAC_BYTES])

    def sign(self, ticket: QueueTicket) -> str:
        if (ticket.seq is None) == (ticket.draw is None):
            raise ValueError("a queue ticket holds either a sequence number or a draw")
        place = f"s{ticket.seq}" if ticket.seq is not None else f"d{ticket.draw}"
        text = ".".join(
            (VERSION, self._active, ticket.space_id, place, ticket.nonce, str(ticket.expires_at))
        )
        return f"{text}.{self._mac(self._active, text)}"

    def verify(self, token: str, *, space_id: str, now: float) -> QueueTicket:
        """The ticket's contents, or :class:`QueueTicketError` (forged, expired, elsewhere)."""
        parts = token.split(".") if 0 < len(token) <= MAX_LENGTH else []
        if len(parts) != 7 or parts[0] != VERSION:
            raise QueueTicketError(
                "bad_queue_ticket", "queue_ticket is not a queue ticket", 400, "bad_ticket"
            )
        _, kid, space, place, nonce, exp, mac = parts
        if kid not in self._macs or not hmac.compare_digest(
            mac.encode("ascii", "replace"), self._mac(kid, token[: -len(mac) - 1]).encode()
        ):
            raise QueueTicketError(
                "forged_queue_ticket",
                "queue_ticket does not verify: it was altered or not issued here",
                403,
                "forged_ticket",
            )
        try:
            number = int(place[1:])
            expires = int(exp)
        except ValueError:  # signed by us, so never; but never trust a parse
            raise QueueTicketError(
                "bad_queue_ticket", "queue_ticket is not understood", 400, "bad_ticket"
            ) from None
        if space != space_id:
            raise QueueTicketError(
                "wrong_space", "queue_ticket was issued for another space", 403, "bad_ticket"
            )
        if now >= expires:
            raise QueueTicketError(
                "expired_queue_ticket",
                "queue_ticket has expired; join again without it",
                410,
                "expired_ticket",
            )
        is_seq = place[0] == "s"
        return QueueTicket(
            space, number if is_seq else None, None if is_seq else number, nonce, expires
        )
