"""The stage event stream (SSE) on the real server: the host sees requests to speak; a
listener sees only what concerns them."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx

from conftest import Node


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def collect(url: str, token: str, out: queue.Queue[dict[str, Any]], ready: threading.Event) -> None:
    with httpx.Client(timeout=httpx.Timeout(10, read=20)) as c:
        with c.stream("GET", url, params={"token": token}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "text/event-stream"
            )
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    out.put(event)
                    if event["kind"] == "space_ended":
                        return


def test_stage_events(node: Node, client: httpx.Client) -> None:
    key = node.add_user("ivy")
    space = client.post("/api/spaces", json={"title": "Events"}, headers=auth(key)).json()
    sid = space["id"]
    a = client.post(f"/api/spaces/{sid}/join").json()
    b = client.post(f"/api/spaces/{sid}/join").json()
    url = f"{node.url}/api/spaces/{sid}/events"
    host_q: queue.Queue[dict[str, Any]] = queue.Queue()
    b_q: queue.Queue[dict[str, Any]] = queue.Queue()
    ready_host, ready_b = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=collect, args=(url, space["host_token"], host_q, ready_host)),
        threading.Thread(target=collect, args=(url, b["ticket"], b_q, ready_b)),
    ]
    for t in threads:
        t.start()
    assert ready_host.wait(10) and ready_b.wait(10)
    assert (
        client.post(f"/api/spaces/{sid}/stage/request", headers=auth(a["ticket"])).status_code
        == 200
    )
    assert (
        client.post(f"/api/spaces/{sid}/stage/request", headers=auth(b["ticket"])).status_code
        == 200
    )
    r = client.post(
        f"/api/spaces/{sid}/stage/accept", json={"target": b["listener_id"]}, headers=auth(key)
    )
    assert r.status_code == 200
    assert client.post(f"/api/spaces/{sid}/end", headers=auth(key)).status_code == 200
    for t in threads:
        t.join(20)
    host_kinds = [e["kind"] for e in list(host_q.queue)]
    assert host_kinds.count("speak_requested") == 2
    assert "speak_request_accepted" in host_kinds and host_kinds[-1] == "space_ended"
    b_events = list(b_q.queue)
    # b sees their own request and acceptance, never a's request
    assert all(a["listener_id"] not in json.dumps(e) for e in b_events)
    assert "speak_request_accepted" in [e["kind"] for e in b_events]


def test_events_need_credentials(node: Node, client: httpx.Client) -> None:
    key = node.add_user("jo")
    sid = client.post("/api/spaces", json={"title": "E"}, headers=auth(key)).json()["id"]
    r = client.get(f"/api/spaces/{sid}/events")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    r = client.get(f"/api/spaces/{sid}/events", params={"token": "nonsense"})
    assert r.status_code == 401
