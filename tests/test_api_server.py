"""The real ``townhall serve`` process over HTTP: the whole control-plane journey and the
bad inputs that must come back as clear 4xx problem documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Node, run_cli

PROBLEM = "application/problem+json"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(r: httpx.Response, status: int, needle: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"]
    assert needle.lower() in body["detail"].lower(), body
    assert "Traceback" not in r.text
    return dict(body)


def test_journey_create_start_join_stage_end(node: Node, client: httpx.Client) -> None:
    host = node.add_user("hana", "--verified")
    c = client
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = c.post(
        "/api/spaces", json={"title": "Town hall", "scheduled_start": at}, headers=auth(host)
    )
    assert r.status_code == 201, r.text
    space = r.json()
    sid = space["id"]
    assert space["status"] == "scheduled" and space["host"]["verified"] is True
    for key in ("state_url", "playlist_url", "whip_url", "page_url"):
        assert space["urls"][key].startswith(node.url)
    upcoming = c.get("/api/spaces", params={"status": "upcoming"}).json()["spaces"]
    assert [s["id"] for s in upcoming] == [sid]

    # a listener who arrives before the start waits in the pre-queue with a signed place
    early = c.post(f"/api/spaces/{sid}/join")
    assert early.status_code == 202, early.text
    assert early.json()["queue_ticket"] and "position" in early.json()

    # the host starts with the host token
    r = c.post(f"/api/spaces/{sid}/start", headers=auth(space["host_token"]))
    assert r.status_code == 200 and r.json()["status"] == "live"

    # the early listener polls with their queue ticket and is admitted
    r = c.post(f"/api/spaces/{sid}/join", json={"queue_ticket": early.json()["queue_ticket"]})
    assert r.status_code == 200, r.text
    joined = r.json()
    ticket = joined["ticket"]
    assert joined["playlist_url"].endswith("/live.m3u8")
    assert joined["listener_id"].startswith("anon:")
    # a listener cannot end the space
    assert_problem(c.post(f"/api/spaces/{sid}/end", headers=auth(ticket)), 403)

    # the listener asks to speak, the host accepts, the new speaker gets a speak token
    r = c.post(f"/api/spaces/{sid}/stage/request", headers=auth(ticket))
    assert r.status_code == 200, r.text
    assert c.get(f"/api/spaces/{sid}/state").json()["requests"] == 1
    listener = joined["listener_id"]
    queue = c.get(f"/api/spaces/{sid}/stage", headers=auth(host)).json()
    assert [r["id"] for r in queue["requests"]] == [listener]
    assert_problem(c.get(f"/api/spaces/{sid}/stage", headers=auth(ticket)), 403)
    r = c.post(f"/api/spaces/{sid}/stage/accept", json={"target": listener}, headers=auth(host))
    assert r.status_code == 200, r.text
    r = c.post(f"/api/spaces/{sid}/stage/token", headers=auth(ticket))
    assert r.status_code == 200 and "speak" in r.json()["grants"]

    # new speakers join muted; they unmute themselves; the host mutes them again
    speakers = {s["id"]: s for s in c.get(f"/api/spaces/{sid}/state").json()["speakers"]}
    assert speakers[listener]["muted"] is True
    r = c.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(ticket))
    assert r.status_code == 200, r.text
    assert_problem(
        c.post(f"/api/spaces/{sid}/stage/unmute", json={"target": listener}, headers=auth(host)),
        403,
    )
    r = c.post(f"/api/spaces/{sid}/stage/mute", json={"target": listener}, headers=auth(host))
    assert r.status_code == 200
    st = c.get(f"/api/spaces/{sid}/state")
    assert "max-age=1" in st.headers["cache-control"]
    speakers = {s["id"]: s for s in st.json()["speakers"]}
    assert speakers[listener]["muted"] is True and st.json()["status"] == "live"

    # reactions add up
    for _ in range(3):
        assert (
            c.post(
                f"/api/spaces/{sid}/reactions", json={"emoji": "🔥"}, headers=auth(ticket)
            ).status_code
            == 202
        )
    assert c.get(f"/api/spaces/{sid}/state").json()["reactions"] == {"🔥": 3}
    assert_problem(
        c.post(f"/api/spaces/{sid}/reactions", json={"emoji": "💩"}, headers=auth(ticket)), 422
    )

    # block: removed and barred for good
    r = c.post(f"/api/spaces/{sid}/stage/block", json={"target": listener}, headers=auth(host))
    assert r.status_code == 200
    assert_problem(c.post(f"/api/spaces/{sid}/stage/request", headers=auth(ticket)), 403, "blocked")
    assert_problem(c.post(f"/api/spaces/{sid}/stage/token", headers=auth(ticket)), 403)

    # the host console's watch panel: the verdict, the admission settings, this space's joins
    panel = c.get(f"/api/spaces/{sid}/watch", headers=auth(host))
    assert panel.status_code == 200, panel.text
    assert panel.json()["headline"] and panel.json()["admission"]["rate_per_second"] > 0
    assert_problem(c.get(f"/api/spaces/{sid}/watch", headers=auth(ticket)), 403)

    # only the host ends
    r = c.post(f"/api/spaces/{sid}/end", headers=auth(host))
    assert r.status_code == 200 and r.json()["status"] == "ended"
    assert_problem(c.post(f"/api/spaces/{sid}/start", headers=auth(host)), 409)
    assert_problem(c.post(f"/api/spaces/{sid}/join"), 409, "ended")


def test_bad_inputs_are_clear_4xx(node: Node, client: httpx.Client) -> None:
    key = node.add_user("olga")
    other = node.add_user("pete")
    c = client
    h = {**auth(key), "Content-Type": "application/json"}
    assert_problem(c.post("/api/spaces", content=b"{not json", headers=h), 400, "json")
    assert_problem(
        c.post("/api/spaces", json={"title": "x", "colour": "red"}, headers=auth(key)),
        422,
        "unknown field",
    )
    assert_problem(
        c.post(
            "/api/spaces", json={"title": "x", "scheduled_start": "tomorrow"}, headers=auth(key)
        ),
        422,
    )
    assert_problem(
        c.post(
            "/api/spaces",
            json={"title": "x", "scheduled_start": "2031-01-01T10:00:00"},
            headers=auth(key),
        ),
        422,
        "timezone",
    )
    assert_problem(
        c.post(
            "/api/spaces",
            json={"title": "x", "scheduled_start": "2001-01-01T10:00:00Z"},
            headers=auth(key),
        ),
        422,
    )
    assert_problem(c.post("/api/spaces", json={"title": ""}, headers=auth(key)), 422)
    assert_problem(c.post("/api/spaces", content=b"x" * 200_000, headers=h), 413)
    assert_problem(c.post("/api/spaces", json={"title": "x"}), 401)
    assert_problem(c.post("/api/spaces", json={"title": "x"}, headers=auth("th_" + "z" * 40)), 401)
    assert_problem(
        c.post("/api/spaces", json={"title": "x"}, headers={"Authorization": "Basic abc"}), 401
    )
    assert_problem(c.get("/api/spaces/doesnotexist"), 404)
    assert_problem(c.get("/api/spaces/bad$id"), 422)

    a = c.post("/api/spaces", json={"title": "A"}, headers=auth(key)).json()
    b = c.post("/api/spaces", json={"title": "B"}, headers=auth(other)).json()
    # a token of space A does not work on space B
    assert_problem(
        c.post(f"/api/spaces/{b['id']}/end", headers=auth(a["host_token"])), 403, "another space"
    )
    # another account cannot end someone else's space
    assert_problem(c.post(f"/api/spaces/{a['id']}/end", headers=auth(other)), 403)
    # a forged token
    forged = a["host_token"][:-4] + ("AAAA" if not a["host_token"].endswith("AAAA") else "BBBB")
    assert_problem(c.post(f"/api/spaces/{a['id']}/end", headers=auth(forged)), 401)
    assert_problem(c.post(f"/api/spaces/{a['id']}/stage/dance", headers=auth(key)), 422)
    assert_problem(c.post(f"/api/spaces/{a['id']}/stage/invite", headers=auth(key)), 422, "target")
    # operations endpoints
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.get("/readyz").status_code == 200
    assert "townhall_http_requests_total" in c.get("/metrics").text
    spec = c.get("/openapi.json").json()
    assert "/api/spaces/{space_id}/join" in spec["paths"]
    assert c.get("/docs").status_code == 200


def test_cli_space_commands(node: Node) -> None:
    key = node.add_user("carl")
    out = run_cli("space", "create", "--title", "CLI", "--server", node.url, "--key", key, "--json")
    created = json.loads(out.stdout)
    for field in ("id", "host_token", "state_url", "playlist_url", "whip_url", "page_url"):
        assert created[field]
    sid = created["id"]
    assert (
        json.loads(
            run_cli("space", "start", sid, "--server", node.url, "--key", key, "--json").stdout
        )["status"]
        == "live"
    )
    shown = json.loads(run_cli("space", "show", sid, "--server", node.url, "--json").stdout)
    assert shown["state"]["status"] == "live"
    listed = json.loads(
        run_cli("space", "list", "--status", "live", "--server", node.url, "--json").stdout
    )
    assert [s["id"] for s in listed] == [sid]
    assert (
        json.loads(
            run_cli("space", "end", sid, "--server", node.url, "--key", key, "--json").stdout
        )["status"]
        == "ended"
    )
    bad = run_cli(
        "space",
        "create",
        "--title",
        "x",
        "--at",
        "soon",
        "--server",
        node.url,
        "--key",
        key,
        check=False,
    )
    assert bad.returncode != 0 and "ISO 8601" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("space", "start", "nope", "--server", node.url, "--key", key, check=False)
    assert bad.returncode != 0 and "404" in bad.stderr
    dup = run_cli("user", "add", "carl", "--data", str(node.data), check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    for server in ("http://[::1", "http://127.0.0.1:1"):  # a typo, a server that is down
        bad = run_cli("space", "list", "--server", server, check=False)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
        assert "not a valid URL" in bad.stderr or "cannot reach" in bad.stderr, bad.stderr


@pytest.mark.parametrize("cmd", [[], ["serve"], ["user", "add"], ["space", "create"]])
def test_help(cmd: list[str]) -> None:
    out = run_cli(*cmd, "--help")
    assert "Usage" in out.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "port must be 0..65535"),
        (["--admit-rate", "-1"], "admit rate must be a positive number"),
        (["--admit-rate", "nan"], "admit rate must be a positive number"),
        (["--capacity", "0"], "capacity must be at least 1"),
        (["--join-rate-source", "nan"], "join rate source must be >= 0"),
        (["--log-level", "loud"], "log level must be one of"),
        (["--redis", "redis://127.0.0.1:1/0"], "cannot reach Redis at redis://127.0.0.1:1/0"),
        (["--redis", "notaurl"], "--redis 'notaurl'"),
        (["--data", "/proc/townhall"], "cannot use /proc/townhall as the data folder"),
    ],
)
def test_serve_refuses_settings_it_cannot_run_with(
    tmp_path: Path, args: list[str], says: str
) -> None:
    extra = [] if "--data" in args else ["--data", str(tmp_path / "data")]
    proc = run_cli("serve", "--port", "0", *extra, *args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_user_commands_say_which_store_they_cannot_use(tmp_path: Path) -> None:
    for args, says in (
        (["--redis", "redis://127.0.0.1:1/0"], "cannot use the store at redis://127.0.0.1:1/0"),
        (["--data", "/proc/townhall"], "cannot use the store at /proc/townhall"),
    ):
        proc = run_cli("user", "add", "zed", *args, check=False)
        assert proc.returncode != 0 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
