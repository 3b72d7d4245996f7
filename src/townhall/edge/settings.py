"""What an edge configuration is made of: the origin, the listen address and the ticket keys."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

KID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HMAC_BLOCK = 64
"""SHA-256 block size: HMAC zero-pads shorter keys to it, so trailing zero bytes are inert."""


class EdgeSettingsError(ValueError):
    """The origin, the listen address or the key file cannot make a working edge."""


@dataclass(frozen=True)
class EdgeKey:
    """One ticket-signing key as the edge needs it."""

    kid: str
    """Key id (the JWT ``kid`` header)."""
    secret: bytes
    """HMAC key material."""

    @property
    def edge_secret(self) -> bytes | None:
        """The key as a C string for ``digest.hmac_sha256``, or None if it cannot be one.

        The vmod takes the key as a NUL-terminated string. Trailing zero bytes change nothing
        (HMAC zero-pads keys up to the block size), so they are dropped; a zero byte inside
        the key would silently truncate it, so such a key cannot be checked at the edge.
        """
        secret = self.secret
        if len(secret) <= HMAC_BLOCK:
            secret = secret.rstrip(b"\0")
        if not secret or b"\0" in secret:
            return None
        return secret


@dataclass(frozen=True)
class EdgeSettings:
    """Everything the generated configuration depends on (pure data)."""

    origin_host: str
    """Origin host name or IP (resolved by the cache server when the configuration loads)."""
    origin_port: int
    """Origin TCP port."""
    keys: tuple[EdgeKey, ...]
    """Keys tickets may be signed with; embedded in the configuration."""
    name: str = "edge"
    """Edge name, sent as ``X-Edge`` on every answer."""
    hold_timeout: float = 15.0
    """How long the edge waits for the origin's first byte: above the origin's blocking
    timeout (3 × target duration), so a held request is answered by the origin, not cut."""
    error_ttl: float = 1.0
    """How long a 404/5xx answer is cached: short, but it collapses a herd onto one fetch."""
    skipped_kids: tuple[str, ...] = field(default=())
    """Key ids that cannot be checked at the edge (see :attr:`EdgeKey.edge_secret`)."""


def parse_origin(url: str) -> tuple[str, int]:
    """``http://host:port`` → (host, port). Only plain HTTP: the origin sits behind the edge."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", …
        raise EdgeSettingsError(f"origin {url!r} is not a valid URL: {exc}") from None
    if parts.scheme != "http":
        raise EdgeSettingsError(
            f"origin {url!r}: only http:// origins are supported (Varnish speaks plain HTTP to "
            "backends; put the origin on a private network or use a TLS sidecar)"
        )
    if not parts.hostname:
        raise EdgeSettingsError(f"origin {url!r} has no host")
    if parts.path not in ("", "/") or parts.query:
        raise EdgeSettingsError(f"origin {url!r} must be a bare base URL (no path or query)")
    if port == 0:
        raise EdgeSettingsError(f"origin {url!r}: port 0 is not a port to connect to")
    return parts.hostname, port or 80


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EdgeSettingsError(f"listen address {listen!r} must be HOST:PORT")
    value = int(port)
    if not 0 < value < 65536:
        raise EdgeSettingsError(f"listen port {value} is out of range")
    return host.strip("[]"), value


def load_edge_keys(path: Path) -> tuple[EdgeKey, ...]:
    """Read ``keys.json`` (``{"keys": [{"kid", "secret" (hex), "created_at"}]}``), newest first."""
    try:
        data = json.loads(path.read_text())
        rows = sorted(data["keys"], key=lambda k: float(k["created_at"]), reverse=True)
        keys = tuple(EdgeKey(str(k["kid"]), bytes.fromhex(k["secret"])) for k in rows)
    except FileNotFoundError:
        raise EdgeSettingsError(f"key file {path} does not exist") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeSettingsError(f"key file {path} is not understood: {exc}") from None
    if not keys:
        raise EdgeSettingsError(f"key file {path} holds no keys")
    for key in keys:
        if not KID_RE.match(key.kid):
            raise EdgeSettingsError(f"key id {key.kid!r} has characters an edge cannot match")
    return keys


def build_settings(
    origin: str, keys: tuple[EdgeKey, ...], *, name: str = "edge", hold_timeout: float = 15.0
) -> EdgeSettings:
    """Settings from an origin URL and keys; refuses if the newest key cannot be checked."""
    host, port = parse_origin(origin)
    usable = tuple(k for k in keys if k.edge_secret is not None)
    skipped = tuple(k.kid for k in keys if k.edge_secret is None)
    if keys and keys[0].edge_secret is None:
        raise EdgeSettingsError(
            f"the active signing key {keys[0].kid!r} contains a zero byte: vmod-digest takes "
            "HMAC keys as C strings, so the edge cannot check tickets signed with it. Rotate "
            "the key (tickets signed by older keys keep working) and generate the edge again."
        )
    return EdgeSettings(
        origin_host=host,
        origin_port=port,
        keys=usable,
        name=name,
        hold_timeout=hold_timeout,
        skipped_kids=skipped,
    )
