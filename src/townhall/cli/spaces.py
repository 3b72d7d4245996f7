"""``townhall space …``: create, start, end, show, list over the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from .common import JsonOpt, KeyOpt, ServerOpt, call, fail, out, print_json

app = typer.Typer(help="Create and drive spaces through a server's API.", no_args_is_help=True)


def _flatten(view: dict[str, Any]) -> dict[str, Any]:
    flat = dict(view)
    flat.update(view.get("urls", {}))
    return flat


def _summary(view: dict[str, Any]) -> None:
    out.print(f"[bold]{view['title']}[/] ({view['id']}) — {view['status']}")
    if view.get("scheduled_start"):
        out.print(f"  scheduled: {view['scheduled_start']}")
    for member in view.get("stage", []):
        mute = " (muted)" if member.get("muted") else ""
        out.print(f"  {member['role']:<8} {member['name']}{mute}")
    for k, v in view.get("urls", {}).items():
        out.print(f"  {k:<13} {v}")


@app.command("create")
def create(
    title: str = typer.Option(..., "--title", help="Space title."),
    at: str = typer.Option(None, "--at", help="Scheduled start, ISO 8601 with timezone."),
    description: str = typer.Option(None, "--description"),
    visibility: str = typer.Option("public", "--visibility", help="public, unlisted, ticketed."),
    server: str = ServerOpt,
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a space; prints id, host_token, state_url, playlist_url, whip_url, page_url."""
    if not key:
        fail("--key (or TOWNHALL_KEY) is required: an account's API key")
    if visibility not in ("public", "unlisted", "ticketed"):
        fail(f"--visibility must be public, unlisted or ticketed, not {visibility!r}")
    body: dict[str, Any] = {"title": title, "visibility": visibility}
    if description:
        body["description"] = description
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r} is not an ISO 8601 date-time")
        if when.tzinfo is None:
            fail(f"--at {at!r} has no timezone; add e.g. +00:00 or Z")
        body["scheduled_start"] = when.isoformat()
    view = _flatten(call("POST", server, "/api/spaces", key=key, body=body))
    if as_json:
        print_json(view)
    else:
        _summary(view)
        out.print(f"  host_token    {view['host_token']}")


def _action(verb: str, space_id: str, server: str, key: str | None, as_json: bool) -> None:
    if not key:
        fail("--key (or TOWNHALL_KEY) is required")
    view = _flatten(call("POST", server, f"/api/spaces/{space_id}/{verb}", key=key))
    print_json(view) if as_json else _summary(view)


@app.command("start")
def start(
    space_id: str, server: str = ServerOpt, key: str = KeyOpt, as_json: bool = JsonOpt
) -> None:
    """Go live now (host or co-host)."""
    _action("start", space_id, server, key, as_json)


@app.command("end")
def end(space_id: str, server: str = ServerOpt, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """End the space (host)."""
    _action("end", space_id, server, key, as_json)


@app.command("show")
def show(
    space_id: str, server: str = ServerOpt, key: str = KeyOpt, as_json: bool = JsonOpt
) -> None:
    """Show a space and its public state document."""
    view = _flatten(call("GET", server, f"/api/spaces/{space_id}", key=key))
    state = call("GET", server, f"/api/spaces/{space_id}/state")
    if as_json:
        print_json({**view, "state": state})
        return
    _summary(view)
    listeners = state.get("listeners", {})
    out.print(
        f"  listeners     {listeners.get('current', 0)} now, {listeners.get('peak', 0)} peak, "
        f"{listeners.get('total', 0)} total"
    )
    if state.get("reactions"):
        out.print("  reactions     " + " ".join(f"{k} {v}" for k, v in state["reactions"].items()))


@app.command("list")
def list_spaces(
    status: str = typer.Option("all", "--status", help="live, upcoming, ended or all."),
    server: str = ServerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List spaces on a server."""
    if status not in ("live", "upcoming", "ended", "all"):
        fail("--status must be live, upcoming, ended or all")
    data = call("GET", server, f"/api/spaces?status={status}")
    if as_json:
        print_json(data["spaces"])
        return
    for view in data["spaces"]:
        when = view.get("started_at") or view.get("scheduled_start") or ""
        out.print(f"{view['id']:<14} {view['status']:<9} {when:<27} {view['title']}")
