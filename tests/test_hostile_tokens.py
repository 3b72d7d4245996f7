"""Hostile tokens against a real server, at the API (Bearer) and at the media path
(``/hls/{id}/t/{ticket}/…``): forged, expired, misbound, downgraded, confused, oversized and
malformed tokens are all refused with a problem document, never a 2xx and never a 5xx.

Several tokens are signed with the node's real key (read from its data folder) to show that
a valid signature alone does not make odd claims acceptable (``exp`` as a string, missing
claims, unexpected header members).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from conftest import Node, start_node

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


@dataclass
class World:
    node: Node
    client: httpx.Client
    host_key: str
    space: str
    """A live public space."""
    other_space: str
    """Another live space (for wrong-space tokens)."""
    host_token: str
    ticket: str
    listener: str
    kid: str
    secret: bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = start_node(tmp_path_factory.mktemp("tokens") / "data")
    try:
        host = node.add_user("hana", "--verified")
        with httpx.Client(base_url=node.url, timeout=10) as c:
            auth = {"Authorization": f"Bearer {host}"}
            a = c.post("/api/spaces", json={"title": "A"}, headers=auth).json()
            b = c.post("/api/spaces", json={"title": "B"}, headers=auth).json()
            joined = c.post(f"/api/spaces/{a['id']}/join").json()
            keys = json.loads((node.data / "keys.json").read_text())["keys"]
            newest = max(keys, key=lambda k: k["created_at"])
            yield World(
                node,
                c,
                host,
                a["id"],
                b["id"],
                a["host_token"],
                joined["ticket"],
                joined["listener_id"],
                newest["kid"],
                bytes.fromhex(newest["secret"]),
            )
    finally:
        node.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: bytes, secret: bytes, alg: str = "sha256") -> str:
    """A JWS built by hand (so header and payload can be anything), HMAC-signed."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    sig = hmac.new(secret, signing_input.encode(), getattr(hashlib, alg)).digest()
    return f"{signing_input}.{b64(sig)}"


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."


def claims(w: World, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "townhall",
        "sub": w.listener,
        "sid": w.space,
        "grants": ["listen"],
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def signed(w: World, payload: dict[str, Any], **header: Any) -> str:
    head = {"alg": "HS256", "typ": "JWT", "kid": w.kid, **header}
    return raw_token(head, json.dumps(payload).encode(), w.secret)


def assert_refused(r: httpx.Response, statuses: tuple[int, ...] = (401, 403)) -> None:
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == r.status_code and body["detail"]
    assert "Traceback" not in r.text


def at_api(w: World, token: str) -> httpx.Response:
    """A route that answers 202 to any valid ticket of the space: reactions."""
    return w.client.post(
        f"/api/spaces/{w.space}/reactions",
        json={"emoji": "👏"},
        headers={"Authorization": f"Bearer {token}"},
    )


def at_media(w: World, token: str) -> httpx.Response:
    return w.client.get(f"/hls/{w.space}/t/{quote(token, safe='')}/live.m3u8")


def hostile_tokens(w: World) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (token, acceptable refusal statuses)."""
    good = w.ticket
    head, payload, sig = good.split(".")
    forged_sig = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    lifted = json.loads(base64.urlsafe_b64decode(payload + "=="))
    lifted["grants"] = ["listen", "host", "operator"]
    other_key = b"\x01" * 32
    now = int(time.time())
    rs256 = raw_token(
        {"alg": "RS256", "typ": "JWT", "kid": w.kid}, json.dumps(claims(w)).encode(), w.secret
    )
    unauth = (401,)
    return {
        "forged signature": (f"{head}.{payload}.{forged_sig}", unauth),
        "grants raised, old signature": (
            f"{head}.{b64(json.dumps(lifted).encode())}.{sig}",
            unauth,
        ),
        "signed with another key, real kid": (
            raw_token(
                {"alg": "HS256", "typ": "JWT", "kid": w.kid},
                json.dumps(claims(w)).encode(),
                other_key,
            ),
            unauth,
        ),
        "expired": (signed(w, claims(w, iat=now - 7200, exp=now - 3600)), unauth),
        "wrong space": (signed(w, claims(w, sid=w.other_space)), (403,)),
        "bound to no space": (signed(w, claims(w, sid=None)), (403,)),
        "alg none": (
            unsigned({"alg": "none", "kid": w.kid}, claims(w)),
            unauth,
        ),
        "alg None (case)": (
            unsigned({"alg": "None", "kid": w.kid}, claims(w)),
            unauth,
        ),
        "alg RS256 with our kid (key confusion)": (rs256, unauth),
        "HS256 keyed with the kid string": (
            raw_token(
                {"alg": "HS256", "typ": "JWT", "kid": w.kid},
                json.dumps(claims(w)).encode(),
                w.kid.encode(),
            ),
            unauth,
        ),
        "alg HS512 with the real secret": (
            raw_token(
                {"alg": "HS512", "typ": "JWT", "kid": w.kid},
                json.dumps(claims(w)).encode(),
                w.secret,
                "sha512",
            ),
            unauth,
        ),
        "kid is a path": (
            raw_token(
                {"alg": "HS256", "kid": "../../keys.json"}, json.dumps(claims(w)).encode(), b""
            ),
            unauth,
        ),
        "kid is /dev/null": (
            raw_token({"alg": "HS256", "kid": "/dev/null"}, json.dumps(claims(w)).encode(), b""),
            unauth,
        ),
        "kid is a URL": (
            raw_token(
                {"alg": "HS256", "kid": "http://127.0.0.1:9/k"}, json.dumps(claims(w)).encode(), b""
            ),
            unauth,
        ),
        "kid is not a string": (
            raw_token(
                {"alg": "HS256", "kid": {"$ne": None}}, json.dumps(claims(w)).encode(), w.secret
            ),
            unauth,
        ),
        "jku header (real signature)": (
            signed(w, claims(w), jku="http://127.0.0.1:9/jwks"),
            unauth,
        ),
        "x5u header (real signature)": (
            signed(w, claims(w), x5u="http://127.0.0.1:9/c.pem"),
            unauth,
        ),
        "jwk header (real signature)": (
            signed(w, claims(w), jwk={"kty": "oct", "k": "AA"}),
            unauth,
        ),
        "crit header (real signature)": (signed(w, claims(w), crit=["exp"]), unauth),
        "typ not JWT": (signed(w, claims(w), typ="at+jwt"), unauth),
        "non-JSON payload": (
            raw_token({"alg": "HS256", "typ": "JWT", "kid": w.kid}, b"not json at all", w.secret),
            unauth,
        ),
        "payload is a JSON list": (
            raw_token({"alg": "HS256", "typ": "JWT", "kid": w.kid}, b'["sub"]', w.secret),
            unauth,
        ),
        "header is a JSON list": (
            raw_token(["HS256"], json.dumps(claims(w)).encode(), w.secret),
            unauth,
        ),
        "exp as a string": (signed(w, claims(w, exp=str(now + 600))), unauth),
        "exp as a float string far ahead": (signed(w, claims(w, exp="1e30")), unauth),
        "exp as true": (signed(w, claims(w, exp=True)), unauth),
        "iat as a string": (signed(w, claims(w, iat=str(now))), unauth),
        "missing sub": (signed(w, claims(w, sub=_DROP)), unauth),
        "empty sub": (signed(w, claims(w, sub="")), unauth),
        "sub as object": (signed(w, claims(w, sub={"id": 1})), unauth),
        "missing exp": (signed(w, claims(w, exp=_DROP)), unauth),
        "missing jti": (signed(w, claims(w, jti=_DROP)), unauth),
        "wrong issuer": (signed(w, claims(w, iss="someone-else")), unauth),
        "grants as a string": (signed(w, claims(w, grants="listen")), unauth),
        "unknown grant": (signed(w, claims(w, grants=["listen", "root"])), unauth),
        "sid as a number": (signed(w, claims(w, sid=12345)), unauth),
        "three dots": ("a.b.c.d", unauth),
        "not base64": ("!!!.@@@.###", unauth),
        "4097 characters": ("x" * 4097, unauth),
    }


def test_valid_ticket_is_accepted_on_both_paths(world: World) -> None:
    assert at_api(world, world.ticket).status_code == 202
    r = at_media(world, world.ticket)
    assert r.status_code == 200 and r.text.startswith("#EXTM3U")


def test_hostile_tokens_refused_at_the_api(world: World) -> None:
    for name, (token, statuses) in hostile_tokens(world).items():
        r = at_api(world, token)
        assert r.status_code in statuses, (name, r.status_code, r.text[:300])
        assert_refused(r, statuses)


def test_hostile_tokens_refused_at_the_media_path(world: World) -> None:
    for name, (token, statuses) in hostile_tokens(world).items():
        r = at_media(world, token)
        # outside the path's 10 to 2048 characters the route itself answers 422
        allowed = (*statuses, 422) if not 10 <= len(token) <= 2048 else statuses
        if "/" in token:  # cannot be a single path segment; the router answers 404
            allowed = (*allowed, 404)
        assert r.status_code in allowed, (name, r.status_code, r.text[:300])
        assert_refused(r, allowed)


def test_wrong_grant(world: World) -> None:
    speak_only = signed(world, claims(world, grants=["speak"]))
    assert_refused(at_media(world, speak_only), (403,))
    # a listener ticket is not a speak token: WHIP refuses it before reading the offer
    r = world.client.post(
        f"/api/spaces/{world.space}/whip",
        content=b"v=0\r\n",
        headers={"Authorization": f"Bearer {world.ticket}", "Content-Type": "application/sdp"},
    )
    assert_refused(r, (403,))
    # a listener ticket is not a host credential
    r = world.client.post(
        f"/api/spaces/{world.space}/end", headers={"Authorization": f"Bearer {world.ticket}"}
    )
    assert_refused(r, (403,))


def test_huge_and_odd_authorization_headers(world: World) -> None:
    for value in ("Basic abc", "Bearer", "Bearer \t x", "bearer " + "y" * 5000, "Token abc"):
        r = world.client.post(
            f"/api/spaces/{world.space}/reactions",
            json={"emoji": "👏"},
            headers={"Authorization": value},
        )
        assert_refused(r, (401,))
    # far past any header limit: refused by the server, which stays up
    r = world.client.post(
        f"/api/spaces/{world.space}/reactions",
        json={"emoji": "👏"},
        headers={"Authorization": "Bearer " + "z" * 200_000},
    )
    assert 400 <= r.status_code < 500
    assert world.client.get("/healthz").status_code == 200


def test_ticket_replayed_after_block_is_refused(world: World) -> None:
    c = world.client
    joined = c.post(f"/api/spaces/{world.space}/join").json()
    ticket, who = joined["ticket"], joined["listener_id"]
    assert at_api(world, ticket).status_code == 202
    assert at_media(world, ticket).status_code == 200
    r = c.post(
        f"/api/spaces/{world.space}/stage/block",
        json={"target": who},
        headers={"Authorization": f"Bearer {world.host_token}"},
    )
    assert r.status_code == 200, r.text
    assert_refused(at_api(world, ticket), (403,))
    assert_refused(at_media(world, ticket), (403,))
    r = c.post(
        f"/api/spaces/{world.space}/stage/request", headers={"Authorization": f"Bearer {ticket}"}
    )
    assert_refused(r, (403,))
    # its signature is still good: the refusal is the block, checked on every use
    assert at_api(world, world.ticket).status_code == 202
