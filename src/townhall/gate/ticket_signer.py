"""Listener tickets signed on the join fast path, byte-compatible with :class:`TokenIssuer`.

``jwt.encode`` spends most of its ≈ 48 µs building and re-encoding the header and checking
arguments. A listener ticket always has the same header (HS256 with the active key id) and
the same claim layout, so the header is encoded once, the payload is one ``json.dumps`` and
the signature is a copy of a keyed HMAC-SHA256 state. The result is an ordinary HS256 JWT
with the same claims (``iss``, ``sub``, ``sid``, ``grants``, ``iat``, ``exp``, ``jti``) and
the same ``kid``: :meth:`TokenIssuer.verify`, the HLS routes and the edges accept it as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import orjson

from ..auth import SigningKey
from ..auth.tokens import ALGORITHM, ISSUER


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


class ListenerTicketSigner:
    """Issues listen-only tickets with one precomputed header and keyed MAC."""

    def __init__(self, key: SigningKey, ttl: int) -> None:
        header = json.dumps(
            {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, separators=(",", ":")
        ).encode()
        self._header = _b64(header) + b"."
        self._mac = hmac.new(key.secret, None, hashlib.sha256)
        self.ttl = ttl

    def issue(
        self, subject: str, space_id: str, now: float, jti: bytes | None = None
    ) -> tuple[str, int]:
        """A listener ticket for ``subject`` in ``space_id`` and its expiry (Unix time);
        ``jti`` is 9 random bytes (drawn here when not given)."""
        issued = int(now)
        expires = issued + self.ttl
        payload = orjson.dumps(
            {
                "iss": ISSUER,
                "sub": subject,
                "sid": space_id,
                "grants": ["listen"],
                "iat": issued,
                "exp": expires,
                "jti": _b64(jti if jti is not None else os.urandom(9)).decode("ascii"),
            }
        )
        signing_input = self._header + _b64(payload)
        mac = self._mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64(mac.digest())).decode("ascii"), expires
