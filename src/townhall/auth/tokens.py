"""Signed, expiring tokens that carry a space, a subject and grants.

Verifying a token needs no store read: the signature, the expiry, the space binding and
the grants are all in the token. Keys carry ids (JWT ``kid``) so they can rotate: new tokens
are signed with the newest key and tokens signed by an older key still verify until it is
retired from the keyring.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from .keys import Keyring

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "townhall"
MAX_TOKEN_CHARS = 4096
"""Longer tokens are refused before any decoding."""
ALLOWED_HEADERS = frozenset({"alg", "kid", "typ"})
"""The JOSE header members townhall writes; anything else (``jku``, ``x5u``, ``jwk``, ``x5c``,
``crit``, ...) is refused rather than ignored."""


class Grant(StrEnum):
    """What a token allows."""

    LISTEN = "listen"
    SPEAK = "speak"
    HOST = "host"
    OPERATOR = "operator"


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    subject: str
    """Identity the token was issued to (``user:NAME`` or ``anon:ID``)."""
    space_id: str | None
    """Space the token is bound to; None only for operator tokens."""
    grants: frozenset[Grant]
    """Grants carried."""
    issued_at: int
    """Unix time of issue."""
    expires_at: int
    """Unix time after which the token is refused."""
    token_id: str
    """Unique id of this token (the ``jti``)."""

    def has(self, grant: Grant) -> bool:
        return grant in self.grants


class TokenError(Exception):
    """A token was refused; ``detail`` says why in words a client can act on."""

    def __init__(self, code: str, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class TokenIssuer:
    """Issues and verifies tokens with the keys of a :class:`Keyring`."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        """The keys this issuer signs and verifies with (listener links verify with them too)."""
        return self._keyring

    def issue(
        self,
        *,
        subject: str,
        space_id: str | None,
        grants: frozenset[Grant] | set[Grant],
        ttl: int,
        now: float,
    ) -> str:
        key = self._keyring.active
        issued = int(now)
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "sid": space_id,
            "grants": sorted(g.value for g in grants),
            "iat": issued,
            "exp": issued + int(ttl),
            "jti": secrets.token_urlsafe(9),
        }
        return jwt.encode(payload, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verify(
        self,
        token: str,
        *,
        now: float,
        space_id: str | None = None,
        grant: Grant | None = None,
    ) -> TokenClaims:
        """Check signature, expiry, space binding and grant; raise :class:`TokenError`."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("malformed_token", "token is missing or too long")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenError("malformed_token", "token is not a well-formed JWT") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError("bad_algorithm", f"token algorithm must be {ALGORITHM}")
        unexpected = set(header) - ALLOWED_HEADERS
        if unexpected or header.get("typ", "JWT") != "JWT":
            raise TokenError("malformed_token", "token header has members townhall never writes")
        kid = header.get("kid")
        key = self._keyring.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_key", "token was signed with an unknown or retired key")
        try:
            payload = jwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "iat", "sub", "jti"],
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature", "token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenError("malformed_token", f"token refused: {exc}") from None
        if not _claims_well_typed(payload):
            raise TokenError("malformed_token", "token claims are not understood")
        try:
            claims = TokenClaims(
                subject=str(payload["sub"]),
                space_id=payload.get("sid"),
                grants=frozenset(Grant(g) for g in payload.get("grants", [])),
                issued_at=int(payload["iat"]),
                expires_at=int(payload["exp"]),
                token_id=str(payload["jti"]),
            )
        except (ValueError, TypeError):
            raise TokenError("malformed_token", "token claims are not understood") from None
        if now >= claims.expires_at:
            raise TokenError("expired_token", "token has expired")
        if space_id is not None and claims.space_id != space_id:
            if not (claims.space_id is None and Grant.OPERATOR in claims.grants):
                raise TokenError("wrong_space", "token was issued for another space", 403)
        if grant is not None and grant not in claims.grants and Grant.OPERATOR not in claims.grants:
            raise TokenError("missing_grant", f"token does not carry the '{grant}' grant", 403)
        return claims


def _claims_well_typed(payload: dict[str, Any]) -> bool:
    """Every claim has the type townhall writes (``exp`` as a string, a bool ``iat``, grants
    that are not a list of strings, an empty subject: all refused, even when signed)."""

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    grants = payload.get("grants", [])
    return (
        isinstance(payload.get("sub"), str)
        and bool(payload["sub"])
        and isinstance(payload.get("jti"), str)
        and is_int(payload.get("iat"))
        and is_int(payload.get("exp"))
        and (payload.get("sid") is None or isinstance(payload.get("sid"), str))
        and isinstance(grants, list)
        and all(isinstance(g, str) for g in grants)
    )
