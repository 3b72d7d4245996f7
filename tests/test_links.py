"""Listener links: the signed path form of a listener ticket that an nginx edge can check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest

from townhall.auth import Keyring, SigningKey, TokenError
from townhall.auth.links import (
    LINK_KEY_LABEL,
    Link,
    decode_subject,
    encode_subject,
    link_key,
    sign_link,
    verify_link,
)
from townhall.gate.ticket_signer import ListenerLinkSigner, ListenerTicketSigner

NOW = 1_750_000_000
KEY = SigningKey("k1", b"s" * 32, 1.0)
RING = Keyring([KEY])


def link(space: str = "space1", subject: str = "anon:0123abcd", exp: int = NOW + 60) -> str:
    return sign_link(KEY, space_id=space, subject=subject, jti="AbC_d-12", exp=exp)


def refused(text: str, code: str, space: str = "space1", now: float = NOW) -> None:
    with pytest.raises(TokenError) as err:
        verify_link(RING, text, space_id=space, now=now)
    assert err.value.code == code and err.value.status == 401


def test_round_trip() -> None:
    text = link()
    kid, exp, sub64, jti, mac = text.split("/")
    assert (kid, exp, jti, len(mac)) == ("k1", str(NOW + 60), "AbC_d-12", 22)
    assert verify_link(RING, text, space_id="space1", now=NOW) == Link(
        "space1", "anon:0123abcd", "AbC_d-12", NOW + 60
    )


def test_mac_is_what_nginx_secure_link_md5_computes() -> None:
    text = link()
    kid, exp, sub64, jti, mac = text.split("/")
    key_hex = hmac.new(KEY.secret, LINK_KEY_LABEL, hashlib.sha256).hexdigest()
    assert link_key(KEY) == key_hex
    signed = f"{exp}/space1/{sub64}/{jti}/{kid} {key_hex}".encode()
    assert mac == base64.urlsafe_b64encode(hashlib.md5(signed).digest()).rstrip(b"=").decode()


def test_wrong_space_fails_the_signature() -> None:
    refused(link(space="space1"), "bad_signature", space="space2")


def test_expired() -> None:
    text = link(exp=NOW + 60)
    verify_link(RING, text, space_id="space1", now=NOW + 59.9)
    refused(text, "expired_token", now=NOW + 60)
    refused(text, "expired_token", now=NOW + 3600)


def test_unknown_or_retired_key() -> None:
    other = Keyring([SigningKey("k2", b"t" * 32, 2.0)])
    with pytest.raises(TokenError) as err:
        verify_link(other, link(), space_id="space1", now=NOW)
    assert err.value.code == "unknown_key"
    # a rotated ring that still holds k1 verifies it
    both = Keyring([KEY, SigningKey("k2", b"t" * 32, 2.0)])
    assert verify_link(both, link(), space_id="space1", now=NOW).subject == "anon:0123abcd"


@pytest.mark.parametrize("field", range(5))
def test_tampered_fields_fail(field: int) -> None:
    parts = link().split("/")
    original = parts[field]
    changed = "B" if original[-1] != "B" else "C"
    parts[field] = original[:-1] + changed if field != 1 else str(int(original) + 1)
    tampered = "/".join(parts)
    code = "unknown_key" if field == 0 else "bad_signature"
    refused(tampered, code)


def test_another_subject_or_jti_cannot_reuse_a_mac() -> None:
    kid, exp, _, jti, mac = link().split("/")
    refused(f"{kid}/{exp}/{encode_subject('anon:other')}/{jti}/{mac}", "bad_signature")
    refused(f"{kid}/{exp}/{encode_subject('anon:0123abcd')}/XYZ/{mac}", "bad_signature")
    # a MAC made with the key of another kid does not verify either
    forged = sign_link(
        SigningKey("k1", b"x" * 32, 1.0), space_id="space1", subject="a", jti="j", exp=NOW + 9
    )
    refused(forged, "bad_signature")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "k1",
        "k1/123/abc/jti",
        "k1/0123/YWJj/jti/AAAAAAAAAAAAAAAAAAAAAA",  # leading zero in exp
        "k1/-5/YWJj/jti/AAAAAAAAAAAAAAAAAAAAAA",
        "k1/123/YW=j/jti/AAAAAAAAAAAAAAAAAAAAAA",  # padding is not base64url-nopad
        "k1/123/YWJj/j.ti/AAAAAAAAAAAAAAAAAAAAAA",
        "k1/123/YWJj/jti/AAAAAAAAAAAAAAAAAAAAA",  # 21-character MAC
        "k1/123/YWJj/jti/AAAAAAAAAAAAAAAAAAAAAAA",  # 23
        "k 1/123/YWJj/jti/AAAAAAAAAAAAAAAAAAAAAA",
        "k1/123/YWJj/jti/AAAAAAAAAAAAAAAAAAAAAA/extra",
        "k1/1234567890123/YWJj/jti/AAAAAAAAAAAAAAAAAAAAAA",  # exp beyond 12 digits
        "k1/123/" + "A" * 173 + "/jti/AAAAAAAAAAAAAAAAAAAAAA",
        "k1/123/YWJj/" + "j" * 33 + "/AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_shapes(text: str) -> None:
    refused(text, "malformed_token")


def test_signed_but_unreadable_subject_is_malformed() -> None:
    # a subject that is not UTF-8 (or decodes to nothing) is refused even with a good MAC
    from townhall.auth.links import link_mac

    sub64 = base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode()
    mac = link_mac(link_key(KEY), space_id="space1", kid="k1", exp=NOW + 9, sub64=sub64, jti="j")
    refused(f"k1/{NOW + 9}/{sub64}/j/{mac}", "malformed_token")
    assert decode_subject("A") is None  # not a base64 length


def test_non_ascii_subject_round_trips() -> None:
    subject = "user:Zoë 🎙️ / ?#%"
    text = link(subject=subject)
    assert all(c.isascii() for c in text) and text.count("/") == 4
    assert verify_link(RING, text, space_id="space1", now=NOW).subject == subject
    assert decode_subject(encode_subject(subject)) == subject


def test_long_subjects_and_ticket_ids_are_refused_at_signing() -> None:
    sign_link(KEY, space_id="s", subject="x" * 129, jti="j", exp=NOW)  # 172 base64 characters
    with pytest.raises(ValueError):
        sign_link(KEY, space_id="s", subject="x" * 130, jti="j", exp=NOW)
    with pytest.raises(ValueError):
        sign_link(KEY, space_id="s", subject="x", jti="j" * 33, exp=NOW)
    with pytest.raises(ValueError):
        sign_link(KEY, space_id="s", subject="x", jti="j.k", exp=NOW)


def test_the_gates_link_signer_signs_what_sign_link_signs() -> None:
    """The join fast path's signer: the same link as sign_link, for the same admission as the
    ticket issued with the same 9 random bytes (same subject, jti and expiry)."""
    import jwt

    tickets = ListenerTicketSigner(KEY, 3600)
    links = ListenerLinkSigner(KEY)
    for subject in ("anon:0123456789abcdef", "user:Zoë", "x" * 129):
        raw = os.urandom(9)
        ticket, expires = tickets.issue(subject, "space1", NOW, raw)
        claims = jwt.decode(ticket, KEY.secret, algorithms=["HS256"], options={"verify_exp": False})
        text = links.sign(subject, "space1", raw, expires)
        assert text == sign_link(
            KEY, space_id="space1", subject=subject, jti=claims["jti"], exp=expires
        )
        verified = verify_link(RING, text, space_id="space1", now=NOW)
        assert (verified.subject, verified.token_id, verified.expires_at) == (
            claims["sub"],
            claims["jti"],
            claims["exp"],
        )
    assert links.sign("x" * 130, "space1", os.urandom(9), NOW) is None  # too long for a link
