"""How spaces look from outside: the space view and the public state document."""

from __future__ import annotations

from typing import Any

from ..spaces import Space
from ..store import Store, User
from ..trust.service import trust_summary
from ..watch.counts import ListenerCounts


def space_urls(base: str, space_id: str) -> dict[str, str]:
    return {
        "state_url": f"{base}/api/spaces/{space_id}/state",
        "playlist_url": f"{base}/hls/{space_id}/live.m3u8",
        "whip_url": f"{base}/api/spaces/{space_id}/whip",
        "page_url": f"{base}/s/{space_id}",
        "replay_url": f"{base}/hls/{space_id}/replay.m3u8",
    }


def display_name(identity: str, users: dict[str, User]) -> str:
    kind, _, rest = identity.partition(":")
    if kind == "user":
        user = users.get(rest)
        return user.display_name if user else rest
    return f"Listener {rest[:4]}" if rest else identity


async def users_for(store: Store, identities: list[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    for ident in identities:
        kind, _, name = ident.partition(":")
        if kind == "user" and name not in found:
            user = await store.get_user(name)
            if user is not None:
                found[name] = user
    return found


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def space_view(store: Store, base: str, space: Space) -> dict[str, Any]:
    users = await users_for(store, list(space.stage_members()))
    host_user = users.get(space.host.partition(":")[2])
    return {
        "id": space.id,
        "title": space.title,
        "description": space.description,
        "status": space.state.value,
        "visibility": space.visibility.value,
        "host": {
            "id": space.host,
            "name": display_name(space.host, users),
            "verified": bool(host_user and host_user.verified),
        },
        "scheduled_start": space.scheduled_start,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "stage": [
            {
                "id": ident,
                "name": display_name(ident, users),
                "role": str(space.role_of(ident)),
                "muted": space.is_muted(ident),
            }
            for ident in space.stage_members()
        ],
        "urls": space_urls(base, space.id),
        "trust": await trust_summary(store, space, host_user),
    }


async def state_document(
    store: Store,
    base: str,
    space: Space,
    counts: ListenerCounts,
    levels: dict[str, float],
    speaking: frozenset[str],
    now_iso: str,
) -> dict[str, Any]:
    """The small public document listeners poll (cacheable for about a second)."""
    users = await users_for(store, list(space.stage_members()))
    host_user = users.get(space.host.partition(":")[2])
    reactions = await store.reactions(space.id)
    return {
        "id": space.id,
        "status": space.state.value,
        "title": space.title,
        "description": space.description,
        "visibility": space.visibility.value,
        "host": {
            "id": space.host,
            "name": display_name(space.host, users),
            "verified": bool(host_user and host_user.verified),
        },
        "scheduled_start": _iso(space.scheduled_start),
        "started_at": _iso(space.started_at),
        "ended_at": _iso(space.ended_at),
        "speakers": [
            {
                "id": ident,
                "name": display_name(ident, users),
                "role": str(space.role_of(ident)),
                "muted": space.is_muted(ident),
                "speaking": ident in speaking,
                "level_db": round(levels[ident], 1)
                if ident in levels and levels[ident] > -200
                else None,
            }
            for ident in space.stage_members()
        ],
        "requests": len(space.requests),
        "listeners": {"current": counts.current, "peak": counts.peak, "total": counts.total},
        "reactions": reactions,
        "urls": space_urls(base, space.id),
        "trust": await trust_summary(store, space, host_user),
        "generated_at": now_iso,
    }
