"""Identity and tokens: API keys for accounts, signed expiring tokens with grants."""

from .apikeys import hash_api_key, looks_like_api_key, new_api_key
from .keys import Keyring, SigningKey
from .tokens import Grant, TokenClaims, TokenError, TokenIssuer

__all__ = [
    "Grant",
    "Keyring",
    "SigningKey",
    "TokenClaims",
    "TokenError",
    "TokenIssuer",
    "hash_api_key",
    "looks_like_api_key",
    "new_api_key",
]
