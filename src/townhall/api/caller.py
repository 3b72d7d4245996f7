"""Who is calling: an account (API key) or a token holder, resolved from ``Authorization``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from ..auth import Grant, TokenClaims, hash_api_key, looks_like_api_key
from ..store import Store, User
from .problems import Problem


@dataclass(frozen=True)
class Caller:
    """The identity behind a request and what it carries."""

    identity: str
    """``user:NAME`` for accounts, the token subject otherwise."""
    user: User | None
    """The account, when the caller used an API key."""
    claims: TokenClaims | None
    """The verified token, when the caller used one."""

    def has(self, grant: Grant) -> bool:
        return self.claims is not None and (
            grant in self.claims.grants or Grant.OPERATOR in self.claims.grants
        )

    @property
    def is_operator(self) -> bool:
        return (self.user is not None and self.user.operator) or self.has(Grant.OPERATOR)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Problem(401, "Authorization must be 'Bearer <api key or token>'", code="bad_auth")
    return value.strip()


async def resolve(
    request: Request,
    *,
    store: Store,
    verify: object,
    space_id: str | None,
    token: str | None = None,
) -> Caller | None:
    """Resolve the caller, or None when no credential was sent.

    ``verify`` is ``TokenIssuer.verify`` bound with the clock by the caller.
    """
    value = token if token is not None else bearer(request)
    if value is None:
        return None
    if looks_like_api_key(value):
        user = await store.find_user_by_key(hash_api_key(value))
        if user is None:
            raise Problem(401, "API key is not recognised", code="bad_api_key")
        return Caller(identity=user.identity, user=user, claims=None)
    assert callable(verify)
    claims = verify(value, space_id=space_id)
    assert isinstance(claims, TokenClaims)
    return Caller(identity=claims.subject, user=None, claims=claims)
