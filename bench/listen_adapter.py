"""Optional: the project's own listener, ``townhall.listen.follow(url, seconds=...)``.

It is being written alongside the benchmarks; when present, its result is recorded
(whatever its shape) and any numeric ``*latency*``/``*lag*``/``*behind*`` fields in it
are surfaced. When absent, the benchmark says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

KEYS = ("latenc", "lag", "behind", "pdt")


def find_follow() -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("townhall.listen")
    except ImportError:
        return None
    follow = getattr(module, "follow", None)
    return follow if callable(follow) else None


async def run_follow(url: str, seconds: float) -> dict[str, Any]:
    """Run ``townhall.listen.follow`` (sync or async); a JSON-able account of the result."""
    follow = find_follow()
    if follow is None:
        return {"available": False}
    try:
        if inspect.iscoroutinefunction(follow):
            result = await follow(url, seconds=seconds)
        else:
            result = await asyncio.to_thread(follow, url, seconds=seconds)
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:  # report, do not fail the benchmark
        logger.warning("townhall.listen.follow failed: %r", exc)
        return {"available": True, "error": repr(exc)}
    plain = _plain(result)
    text = json.dumps(plain, default=str)
    return {
        "available": True,
        "latency_fields": _latency_fields(plain),
        "result": plain if len(text) <= 20_000 else text[:20_000] + "…",
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        return {k: _plain(v) for k, v in attrs.items() if not k.startswith("_")}
    return repr(value)


def _latency_fields(value: Any, prefix: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            if any(k in key.lower() for k in KEYS) and _numeric(item):
                found[path] = item
            else:
                found.update(_latency_fields(item, path))
    return found


def _numeric(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    return isinstance(value, list) and bool(value) and all(_numeric(v) for v in value)
