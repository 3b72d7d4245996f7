"""Listener tickets signed on the join fast path, byte-compatible with :class:`TokenIssuer`.

``jwt.encode`` spends most of its ≈ 48 µs building and re-encoding the header and checking
arguments. A listener ticket always has the same header (HS256 with the active key id) and
the same claim layout, so the header is encoded once, the payload is one ``json.dumps`` and
the signature is a copy of a keyed HMAC-SHA256 state. The result is an ordinary HS256 JWT
with the same claims (``iss``, ``sub``, ``sid``, ``grants``, ``iat``, ``exp``, ``jti``) and
the same ``kid``: :meth:`TokenIssuer.verify`, the HLS routes and the edges accept it as is.

The same admission as a listener link (:mod:`townhall.auth.links`) is signed by
:class:`ListenerLinkSigner`, with the link key derived once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import orjson

from ..auth import SigningKey
from ..auth.links import encode_subject, link_key, link_mac
from ..auth.tokens import ALGORITHM, ISSUER

MAX_LINK_SUBJECT = 172
"""Longest ``sub64`` a link carries (``SUB64_RE``: up to 129 bytes of listener id)."""


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


class ListenerLinkSigner:
    """Signs listener links byte-for-byte like :func:`townhall.auth.links.sign_link`, with the
    active key's link key derived once (one MD5 per join)."""

    def __init__(self, key: SigningKey) -> None:
        self._kid = key.kid
        self._link_key = link_key(key)

    def sign(self, subject: str, space_id: str, jti: bytes, exp: int) -> str | None:
        """The link segments ``{kid}/{exp}/{sub64}/{jti}/{mac}`` for the listener ticket whose
        ``jti`` is these 9 bytes (as :meth:`ListenerTicketSigner.issue` got them) and whose
        expiry is ``exp``; None when the listener id is too long for a link."""
        sub64 = encode_subject(subject)
        if len(sub64) > MAX_LINK_SUBJECT:
            return None
        token_id = _b64(jti).decode("ascii")
        mac = link_mac(
            self._link_key, space_id=space_id, kid=self._kid, exp=exp, sub64=sub64, jti=token_id
        )
        return f"{self._kid}/{exp}/{sub64}/{token_id}/{mac}"
