"""WebRTC settings shared by the stage server and the WHIP client.

One frozen dataclass, filled from CLI flags / env vars by the caller, and the one
place that turns it into an aiortc ``RTCConfiguration``.

``RTCConfiguration()`` without ``iceServers`` makes aiortc fall back to a public
STUN server (stun.l.google.com); :func:`rtc_configuration` therefore always passes
an explicit list, empty unless STUN/TURN URLs are configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer

__all__ = ["RtcSettings", "parse_ice_server", "rtc_configuration"]

# "turn:user:pass@host:port?transport=tcp" -> credentials split off, the rest is the URL.
_CREDENTIALS = re.compile(r"^(?P<scheme>turns?):(?P<user>[^:@]*):(?P<password>[^@]*)@(?P<rest>.+)$")


@dataclass(frozen=True)
class RtcSettings:
    """How townhall's WebRTC peers gather ICE candidates."""

    announced_address: str | None = None
    """If set, the only ICE host candidate is this address (like LiveKit ``node_ip`` /
    mediasoup ``announcedIp``). The UDP socket is bound to it, so it must be an address
    of this machine (127.0.0.1 in tests, the public interface in production). ``None``
    keeps aioice's default: every non-loopback interface."""

    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs: ``"stun:host:port"``, ``"turn:user:pass@host:port"`` (optionally
    ``?transport=tcp``), ``"turns:user:pass@host:port"``. Empty by default: no packet is
    sent to any STUN/TURN server. aiortc uses at most one STUN and one TURN server."""

    connect_timeout: float = 15.0
    """Seconds a stage session may take from the accepted offer to ``connected``
    before the server gives up on it and closes it."""

    def __post_init__(self) -> None:
        for url in self.ice_servers:
            parse_ice_server(url)  # fail fast on a malformed URL
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")


def parse_ice_server(url: str) -> RTCIceServer:
    """Parse one ``stun:``/``turn:``/``turns:`` URL, credentials inline for TURN."""
    match = _CREDENTIALS.match(url)
    if match is not None:
        server = RTCIceServer(
            urls=f"{match['scheme']}:{match['rest']}",
            username=match["user"],
            credential=match["password"],
        )
    elif url.startswith(("stun:", "stuns:")):
        server = RTCIceServer(urls=url)
    elif url.startswith(("turn:", "turns:")):
        raise ValueError(f"TURN URL needs credentials (turn:user:pass@host:port): {url!r}")
    else:
        raise ValueError(f"not a STUN/TURN URL: {url!r}")
    if not re.fullmatch(r"[a-z]+:[^:?@/\s]+(:\d{1,5})?(\?transport=(udp|tcp))?", str(server.urls)):
        raise ValueError(f"malformed STUN/TURN URL: {url!r}")
    return server


def rtc_configuration(settings: RtcSettings) -> RTCConfiguration:
    """An ``RTCConfiguration`` with an explicit (possibly empty) ICE server list."""
    return RTCConfiguration(iceServers=[parse_ice_server(url) for url in settings.ice_servers])
