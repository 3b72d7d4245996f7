"""One documented configuration object, filled from CLI flags and ``TOWNHALL_*`` variables."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "TOWNHALL_"


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass
class Config:
    """Everything a townhall node needs to know; defaults make an embedded single node."""

    host: str = "127.0.0.1"
    """Address the HTTP server binds to."""

    port: int = 8080
    """Port the HTTP server binds to (0 picks a free one)."""

    data: Path = Path("data")
    """Data folder: SQLite database, signing keys and recordings."""

    public_url: str | None = None
    """Base URL clients should use (defaults to http://host:port)."""

    redis_url: str | None = None
    """Redis URL for scale-out state; None means the embedded SQLite store."""

    node_id: str | None = None
    """Name of this node in a cluster (Redis); defaults to ``hostname:port``."""

    node_url: str | None = None
    """URL other nodes use to reach this node directly (media forwarding); defaults to
    http://host:port, or http://hostname:port when bound to a wildcard address. Never the
    public URL, which may be a load balancer in front of every node."""

    origin_lease_ms: int = 3000
    """Cluster: TTL of a space's origin lease (``th:origin:{id}``) and of its standby claim.
    When the origin dies its standby takes over once the lease has expired, so a takeover
    takes at most about this long plus ``heartbeat_ms``."""

    heartbeat_ms: int = 1000
    """Cluster: how often a node renews its leases, its standby claims and its own liveness
    key (``th:node:{id}``); at most a third of ``origin_lease_ms``."""

    rtc_address: str | None = None
    """Address announced in ICE candidates (the media server's node IP, e.g. behind NAT)."""

    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs offered to peers; none is contacted unless configured."""

    ticket_ttl: int = 6 * 3600
    """Lifetime of a listener ticket, seconds."""

    stage_token_ttl: int = 12 * 3600
    """Lifetime of host and speaker tokens, seconds."""

    max_body_bytes: int = 64 * 1024
    """Largest accepted request body."""

    part_frames: int = 16
    """AAC frames (1024 samples at 48 kHz) per LL-HLS part: 16 → 0.341 s (≤ 0.5 s, so that
    PART-HOLD-BACK = 3 parts keeps mouth-to-ear under 1.5 s; 24 → 0.512 s halves nothing but
    the request rate)."""

    parts_per_segment: int = 6
    """Parts per segment: 6 × 16 frames → 2.048 s segments."""

    bitrate: int = 64000
    """Programme AAC bitrate, bits per second."""

    admit_rate: float = 200.0
    """Gate: new listeners admitted per second per space; above it joins wait in the waiting
    room (202 with position, ETA and a signed queue ticket)."""

    capacity: int | None = None
    """Gate: active listeners per space above which admission pauses; None for no cap."""

    join_rate_source: float | None = 5.0
    """Gate: join requests per second per source address (burst: 4 s worth); None or 0
    disables. Polls of the waiting room count too (they are paced at ≥ 1 s)."""

    join_rate_network: float | None = 100.0
    """Gate: join requests per second per source network (/24 IPv4, /48 IPv6)."""

    join_rate_global: float | None = 20000.0
    """Gate: join requests per second on this node (or the cluster, with Redis)."""

    gate_test_delay: float = 0.0
    """Tests only: each gated join sleeps this many seconds per join in flight, so latency
    grows with concurrency (exercises load shedding)."""

    log_level: str = "info"
    """Python logging level name."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form settings for experiments; not used by the core."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these settings, one sentence each (empty when they can run)."""
        out: list[str] = []
        if not 0 <= self.port <= 65535:
            out.append(f"port must be 0..65535, not {self.port}")
        if not (math.isfinite(self.admit_rate) and self.admit_rate > 0):
            out.append(
                f"admit rate must be a positive number of listeners/s, not {self.admit_rate}"
            )
        if self.capacity is not None and self.capacity < 1:
            out.append(f"capacity must be at least 1 listener (or unset), not {self.capacity}")
        for name in ("join_rate_source", "join_rate_network", "join_rate_global"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                out.append(f"{name.replace('_', ' ')} must be >= 0 (0 disables), not {value}")
        for name in ("ticket_ttl", "stage_token_ttl", "max_body_bytes"):
            if getattr(self, name) <= 0:
                out.append(f"{name.replace('_', ' ')} must be positive, not {getattr(self, name)}")
        if self.log_level.lower() not in LOG_LEVELS:
            out.append(f"log level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        return out

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config: defaults, then ``TOWNHALL_*`` variables, then explicit overrides.

        Overrides whose value is None are ignored so CLI options left unset fall through.
        """
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(raw, hints[f.name], f.name)
        for key, value in overrides.items():
            if value is not None:
                values[key] = value
        cfg = cls(**values)
        cfg.data = Path(cfg.data)
        return cfg


def _coerce(raw: str, hint: Any, name: str) -> Any:
    text = str(hint)
    try:
        if hint is int:
            return int(raw)
        if hint is float or text in ("float | None", "int | None"):
            if not raw:
                return None
            return float(raw) if "float" in text else int(raw)
        if hint is Path:
            return Path(raw)
        if "tuple" in text:
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        return raw or None if "None" in text else raw
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None
