"""``townhall user …``: accounts, managed on the data folder directly."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from redis.exceptions import RedisError

from ..auth import hash_api_key, new_api_key
from ..config import Config
from ..store import DuplicateError, User
from ..store.opening import open_store
from .common import JsonOpt, fail, node_config, out, print_json

app = typer.Typer(help="Accounts for people who host or speak.", no_args_is_help=True)

T = TypeVar("T")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Handle: lowercase letters, digits, . _ -"),
    display_name: str = typer.Option(None, "--display-name", help="Shown on pages."),
    verified: bool = typer.Option(False, "--verified", help="Mark as a verified host."),
    operator: bool = typer.Option(False, "--operator", help="Platform staff (sees /ops/*)."),
    data: Path = typer.Option(None, "--data", help="Data folder [env TOWNHALL_DATA; ./data]."),
    redis: str = typer.Option(
        None, "--redis", help="Redis URL of a cluster [env TOWNHALL_REDIS_URL]; else SQLite."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Create an account and print its API key (shown once; only a hash is kept)."""
    if not NAME_RE.match(name):
        fail(f"invalid name {name!r}: use 1-32 lowercase letters, digits, '.', '_' or '-'")
    config = node_config(data=data, redis_url=redis)
    key = new_api_key()
    user = User(
        name=name,
        key_hash=hash_api_key(key),
        display_name=(display_name or name).strip()[:60] or name,
        verified=verified,
        operator=operator,
        created_at=time.time(),
    )

    async def run() -> None:
        store = open_store(config)
        try:
            await store.add_user(user)
        finally:
            await store.close()

    try:
        _run_on_store(config, run())
    except DuplicateError:
        fail(f"user {name!r} already exists")
    record = {
        "name": name,
        "api_key": key,
        "display_name": user.display_name,
        "verified": verified,
        "operator": operator,
    }
    if as_json:
        print_json(record)
    else:
        out.print(f"created [bold]{name}[/]; API key (shown once): {key}")


@app.command("list")
def list_users(
    data: Path = typer.Option(None, "--data", help="Data folder [./data]."),
    redis: str = typer.Option(None, "--redis", help="Redis URL of a cluster; else SQLite."),
    as_json: bool = JsonOpt,
) -> None:
    """List accounts (never their keys)."""
    config = node_config(data=data, redis_url=redis)

    async def run() -> list[User]:
        store = open_store(config)
        try:
            return await store.list_users()
        finally:
            await store.close()

    users = _run_on_store(config, run())
    rows = [
        {
            "name": u.name,
            "display_name": u.display_name,
            "verified": u.verified,
            "operator": u.operator,
        }
        for u in users
    ]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        flags = " ".join(k for k in ("verified", "operator") if r[k])
        out.print(f"{r['name']:<20} {r['display_name']:<24} {flags}")


def _run_on_store(config: Config, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` against the node's store; a store that cannot be opened or reached is a
    CLI error that says which one (a missing or broken Redis, an unusable data folder)."""
    try:
        return asyncio.run(work)
    except (RedisError, ValueError, OSError, sqlite3.Error) as exc:
        where = config.redis_url or str(config.data)
        fail(f"cannot use the store at {where}: {exc}")
