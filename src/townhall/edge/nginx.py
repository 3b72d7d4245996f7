"""nginx as an edge: deliberately not generated (see docs/edge.md).

Measured on this machine (4 KB part every 0.5 s, the origin holds the request for the next
part until it exists, 200 clients): ``proxy_cache_lock`` fetches each part once, but its
waiters re-check the lock every 500 ms (hard-coded), so p50/p99 ≈ 464/502 ms are added to
every new part; with ``proxy_cache_lock_timeout 20ms`` parts requested after they exist are
fast (p99 ≈ 28 ms) but the held preload-hint requests are not collapsed at all (one origin
fetch per client). Varnish releases its waiters as soon as the origin's headers arrive
(p50/p99 ≈ 8/16 ms) with exactly one fetch, so it is the supported edge.
"""

from __future__ import annotations

UNSUPPORTED = (
    "--kind nginx is not supported: nginx's proxy_cache_lock makes waiting requests poll "
    "every 500 ms (≈ 0.5 s added to every new LL-HLS part, measured p99 502 ms), and with a "
    "short proxy_cache_lock_timeout the held preload-hint requests are no longer collapsed "
    "(one origin fetch per listener). Use --kind varnish (default), or a CDN that collapses "
    "held requests; see docs/edge.md."
)


class NginxUnsupportedError(RuntimeError):
    """Raised for ``--kind nginx``; the message says why and what to use instead."""

    def __init__(self) -> None:
        super().__init__(UNSUPPORTED)


def render_nginx() -> str:
    """Always raises :class:`NginxUnsupportedError` (kept so the choice is explicit in code)."""
    raise NginxUnsupportedError()
