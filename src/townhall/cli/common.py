"""Helpers shared by CLI commands: JSON output, HTTP calls with clear errors."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

from ..config import Config

console = Console(stderr=True, soft_wrap=True)
out = Console()

ServerOpt = typer.Option(
    "http://127.0.0.1:8080", "--server", envvar="TOWNHALL_SERVER", help="townhall base URL."
)
KeyOpt = typer.Option(
    None, "--key", envvar="TOWNHALL_KEY", help="API key (or token) sent as Bearer."
)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def call(
    method: str,
    server: str,
    path: str,
    *,
    key: str | None = None,
    body: dict[str, Any] | None = None,
    timeout: float = 15.0,
) -> Any:
    """One API call; problems and connection errors become a CLI error, never a traceback."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = server.rstrip("/") + path
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=timeout)
    except httpx.InvalidURL as exc:  # not an HTTPError: a bad --server
        fail(f"{url!r} is not a valid URL: {exc}")
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    if response.status_code >= 400:
        try:
            problem = response.json()
            detail = problem.get("detail") or response.text
        except ValueError:
            detail = response.text[:300]
        fail(f"{method} {path} → {response.status_code}: {detail}")
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        fail(f"{method} {path} answered something that is not JSON")


def node_config(**overrides: Any) -> Config:
    """The node's settings (defaults, ``TOWNHALL_*``, then ``overrides``); a CLI error naming
    what is wrong instead of a traceback."""
    try:
        return Config.from_env(**overrides)
    except ValueError as exc:
        fail(str(exc))
