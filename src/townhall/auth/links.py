"""Signed listener links: the ticket form an nginx edge can check by itself.

An nginx edge has no HMAC-SHA256 of its own, but it has ``secure_link`` (an MD5 of a string
built from the request, compared with a MAC in the URL, plus an expiry). A listener link is
the same admission as a listener ticket (same ``sub``, ``jti``, ``exp``, space and key),
written as path segments the edge can check::

    /hls/{space}/l/{kid}/{exp}/{sub64}/{jti}/{mac}/{name}

* ``sub64`` is the listener id, base64url without padding (ids may hold any character);
* ``mac`` = base64url-nopad(MD5(``"{exp}/{space}/{sub64}/{jti}/{kid} {link_key}"``)), where
  ``link_key`` = hex(HMAC-SHA256(key secret, :data:`LINK_KEY_LABEL`)): the edge holds only
  this derived key, never the ticket key, so a leaked edge configuration cannot mint JWTs.

The secret comes *after* the signed fields, so MD5's length extension does not apply; a
forgery needs an MD5 second preimage of a string whose every field the issuer chose. A link
carries only the ``listen`` grant for one space. Pure: no I/O, ``now`` passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from .keys import Keyring, SigningKey
from .tokens import TokenError

LINK_KEY_LABEL = b"townhall-edge-link-v1"
"""What the link key is derived from (with the ticket key); changing it voids every link."""
KID_RE = r"[A-Za-z0-9_.-]{1,64}"
EXP_RE = r"[1-9][0-9]{0,11}"
SUB64_RE = r"[A-Za-z0-9_-]{1,172}"
"""Up to 128 bytes of listener id."""
JTI_RE = r"[A-Za-z0-9_-]{1,32}"
MAC_RE = r"[A-Za-z0-9_-]{22}"
LINK_PATH_RE = (
    rf"(?P<kid>{KID_RE})/(?P<exp>{EXP_RE})/(?P<sub64>{SUB64_RE})"
    rf"/(?P<jti>{JTI_RE})/(?P<mac>{MAC_RE})"
)
"""The five link segments (between ``/l/`` and the media name)."""
_LINK = re.compile(rf"^{LINK_PATH_RE}$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def derive_link_key(secret: bytes) -> str:
    """The derived key an edge holds for a ticket key's ``secret`` (64 hex characters)."""
    return hmac.new(secret, LINK_KEY_LABEL, hashlib.sha256).hexdigest()


def link_key(key: SigningKey) -> str:
    """The derived key an edge holds for ``key``."""
    return derive_link_key(key.secret)


def link_mac(link_key_hex: str, *, space_id: str, kid: str, exp: int, sub64: str, jti: str) -> str:
    """The 22-character MAC of a link (what nginx's ``secure_link_md5`` recomputes)."""
    signed = f"{exp}/{space_id}/{sub64}/{jti}/{kid} {link_key_hex}"
    return _b64(hashlib.md5(signed.encode("ascii"), usedforsecurity=True).digest())


def encode_subject(subject: str) -> str:
    """``sub64``: the listener id as base64url without padding."""
    return _b64(subject.encode("utf-8"))


def decode_subject(sub64: str) -> str | None:
    """The listener id in ``sub64``, or None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(sub64 + "=" * (-len(sub64) % 4))
        return raw.decode("utf-8") or None
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class Link:
    """A verified listener link."""

    space_id: str
    subject: str
    token_id: str
    expires_at: int


def sign_link(key: SigningKey, *, space_id: str, subject: str, jti: str, exp: int) -> str:
    """The link path segments ``{kid}/{exp}/{sub64}/{jti}/{mac}`` for one admission."""
    sub64 = encode_subject(subject)
    if not re.fullmatch(SUB64_RE, sub64) or not re.fullmatch(JTI_RE, jti):
        raise ValueError("listener id or ticket id too long for a link")
    mac = link_mac(link_key(key), space_id=space_id, kid=key.kid, exp=exp, sub64=sub64, jti=jti)
    return f"{key.kid}/{exp}/{sub64}/{jti}/{mac}"


def verify_link(keyring: Keyring, link: str, *, space_id: str, now: float) -> Link:
    """Check a link's shape, key, MAC, expiry and space; raise :class:`TokenError` with the
    same codes as tickets (``malformed_token``, ``unknown_key``, ``bad_signature``,
    ``expired_token``). A link for another space fails its MAC (the space is signed)."""
    m = _LINK.match(link)
    if m is None:
        raise TokenError("malformed_token", "listener link is not well formed")
    kid, sub64, jti, mac = m["kid"], m["sub64"], m["jti"], m["mac"]
    exp = int(m["exp"])
    key = keyring.get(kid)
    if key is None:
        raise TokenError("unknown_key", "link was signed with an unknown or retired key")
    expected = link_mac(link_key(key), space_id=space_id, kid=kid, exp=exp, sub64=sub64, jti=jti)
    if not hmac.compare_digest(expected, mac):
        raise TokenError("bad_signature", "link signature does not verify")
    if now >= exp:
        raise TokenError("expired_token", "link has expired")
    subject = decode_subject(sub64)
    if subject is None:
        raise TokenError("malformed_token", "link listener id is not understood")
    return Link(space_id=space_id, subject=subject, token_id=jti, expires_at=exp)
