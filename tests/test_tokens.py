"""Tokens: grants, expiry, space binding, rotation, and the classic attacks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest

from townhall.auth import Grant, Keyring, TokenError, TokenIssuer

NOW = 1_800_000_000.0


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(Keyring.generate())


def listen(issuer: TokenIssuer, space: str = "s1", ttl: int = 60) -> str:
    return issuer.issue(subject="anon:1", space_id=space, grants={Grant.LISTEN}, ttl=ttl, now=NOW)


def test_round_trip(issuer: TokenIssuer) -> None:
    claims = issuer.verify(listen(issuer), now=NOW + 1, space_id="s1", grant=Grant.LISTEN)
    assert claims.subject == "anon:1" and claims.space_id == "s1"
    assert claims.grants == {Grant.LISTEN} and claims.expires_at == int(NOW) + 60


def test_expired(issuer: TokenIssuer) -> None:
    with pytest.raises(TokenError) as err:
        issuer.verify(listen(issuer), now=NOW + 61)
    assert err.value.code == "expired_token" and err.value.status == 401


def test_other_space_refused(issuer: TokenIssuer) -> None:
    with pytest.raises(TokenError) as err:
        issuer.verify(listen(issuer, "s1"), now=NOW, space_id="s2")
    assert err.value.code == "wrong_space" and err.value.status == 403


def test_missing_grant(issuer: TokenIssuer) -> None:
    with pytest.raises(TokenError) as err:
        issuer.verify(listen(issuer), now=NOW, space_id="s1", grant=Grant.SPEAK)
    assert err.value.code == "missing_grant"


def test_forged_signature(issuer: TokenIssuer) -> None:
    other = TokenIssuer(Keyring([Keyring.new_key()]))
    forged = listen(other)
    with pytest.raises(TokenError) as err:
        issuer.verify(forged, now=NOW)
    assert err.value.code == "unknown_key"
    head, payload, sig = listen(issuer).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["grants"] = ["listen", "host"]
    tampered = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        issuer.verify(f"{head}.{tampered}.{sig}", now=NOW)
    assert err.value.code == "bad_signature"


def test_alg_none_refused(issuer: TokenIssuer) -> None:
    kid = issuer._keyring.active.kid
    token = jwt.encode(
        {
            "iss": "townhall",
            "sub": "x",
            "sid": "s1",
            "grants": ["host"],
            "iat": 1,
            "exp": 2**40,
            "jti": "j",
        },
        key=None,
        algorithm="none",
        headers={"kid": kid},
    )
    with pytest.raises(TokenError) as err:
        issuer.verify(token, now=NOW)
    assert err.value.code == "bad_algorithm"


def test_garbage_refused(issuer: TokenIssuer) -> None:
    for junk in ["", "abc", "a.b.c", "x" * 5000]:
        with pytest.raises(TokenError):
            issuer.verify(junk, now=NOW)


def test_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "keys.json")
    old = TokenIssuer(ring)
    token = listen(old)
    rotated = ring.rotated()
    rotated.save(tmp_path / "keys.json")
    new = TokenIssuer(Keyring.load(tmp_path / "keys.json"))
    assert new.verify(token, now=NOW).subject == "anon:1"
    fresh = listen(new)
    assert jwt.get_unverified_header(fresh)["kid"] != jwt.get_unverified_header(token)["kid"]
    retired = TokenIssuer(Keyring([Keyring.new_key()]))
    with pytest.raises(TokenError):
        retired.verify(token, now=NOW)
