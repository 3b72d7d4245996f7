"""Trust flags on a real server: space view, state document, listings, /ops/flags, pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from conftest import Node


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(client: httpx.Client, key: str, title: str, **extra: Any) -> httpx.Response:
    at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = {"title": title, "scheduled_start": at, **extra}
    return client.post("/api/spaces", json=body, headers=auth(key))


def test_flags_in_views_state_listing_and_ops(node: Node, client: httpx.Client) -> None:
    elon = node.add_user("elonmusk", "--verified", "--display-name", "Elon Musk")
    fake = node.add_user("support-team", "--display-name", "Еlon Musk")  # Cyrillic Е
    bob = node.add_user("bob", "--display-name", "Bob")
    operator = node.add_user("opal", "--operator")

    r = create(client, fake, "Weekly AMA")
    assert r.status_code == 201, r.text
    faked = r.json()
    assert faked["trust"]["verified_host"] is False
    [flag] = faked["trust"]["flags"]
    assert flag["kind"] == "impersonation" and flag["target"] == "Elon Musk"
    assert "imitates verified host" in flag["detail"] and "Еlon Musk" in flag["detail"]

    r = create(client, bob, "dоuble yоur bitcоin", description="send to the address below")
    assert r.status_code == 201, r.text
    scam = r.json()
    assert [f["kind"] for f in scam["trust"]["flags"]] == ["scam"]

    r = create(client, elon, "Elon Musk AMA")
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["trust"] == {"verified_host": True, "flags": []}
    assert own["host"]["verified"] is True  # existing keys unchanged

    honest = create(client, bob, "Bitcoin halving explained").json()
    assert honest["trust"] == {"verified_host": False, "flags": []}

    # the state document carries the same
    state = client.get(f"/api/spaces/{faked['id']}/state").json()
    assert state["trust"]["flags"][0]["target"] == "Elon Musk"
    assert client.get(f"/api/spaces/{own['id']}/state").json()["trust"]["verified_host"] is True
    # and so do listings and single views
    listed = {s["id"]: s for s in client.get("/api/spaces?status=upcoming").json()["spaces"]}
    assert listed[scam["id"]]["trust"]["flags"][0]["kind"] == "scam"
    assert client.get(f"/api/spaces/{honest['id']}").json()["trust"]["flags"] == []

    # /ops/flags is for operators only
    assert client.get("/ops/flags").status_code == 401
    forbidden = client.get("/ops/flags", headers=auth(bob))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")
    r = client.get("/ops/flags", headers=auth(operator))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    report = r.json()
    flagged = {s["id"]: s for s in report["spaces"]}
    assert set(flagged) == {faked["id"], scam["id"]}
    assert report["verified_hosts"] == 1
    entry = flagged[faked["id"]]
    assert entry["host"] == {"id": "user:support-team", "name": "Еlon Musk", "verified": False}
    assert entry["flags"][0]["target_handle"] == "elonmusk" and entry["flags"][0]["score"] > 0.5
    assert entry["page_url"].endswith(f"/s/{faked['id']}")


def test_taking_a_verified_name_as_title_is_refused(node: Node, client: httpx.Client) -> None:
    node.add_user("tesla", "--verified", "--display-name", "Tesla")
    bob = node.add_user("bob")
    for title in ("Tesla", "teslа", "TESLA 🚀"):
        r = create(client, bob, title)
        assert r.status_code == 422, (title, r.text)
        problem = r.json()
        assert problem["code"] == "impersonation" and "verified host" in problem["detail"]
    # mentioning the name is not refused (plain mention without a cue: not even flagged)
    r = create(client, bob, "Tesla owners meetup")
    assert r.status_code == 201 and r.json()["trust"]["flags"] == []
    r = create(client, bob, "Tesla Support live")
    assert r.status_code == 201 and r.json()["trust"]["flags"][0]["kind"] == "impersonation"


def test_pages_carry_the_badge_and_the_warning(node: Node, client: httpx.Client) -> None:
    page = client.get("/s/abc123").text
    assert 'id="trust-warning"' in page and 'aria-labelledby="trust-warning-h"' in page
    assert 'id="c-trust"' in client.get("/host").text
    for script in ("space.js", "home.js", "host.js"):
        js = client.get(f"/static/{script}").text
        assert '"verified-badge"' in js and '" Verified"' in js, script
        assert "trust" in js
    for script in ("space.js", "home.js"):
        js = client.get(f"/static/{script}").text
        assert "Possible impersonation of verified host" in js
        assert "This space matches known scam patterns" in js
    assert ".verified-badge" in client.get("/static/app.css").text
