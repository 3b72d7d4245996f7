"""ICE candidate control: the announced address and SDP candidate hygiene.

Why this exists: aioice (under aiortc) gathers host candidates from every interface
except loopback (``aioice.ice.get_host_addresses`` skips 127.0.0.1 and ::1), and
aiortc offers no hook to choose them. A stage server wants the opposite: exactly one
known address, the way LiveKit (``node_ip``) and mediasoup (``announcedIp``) do it,
and tests must keep every packet on 127.0.0.1.

How it is contained: ``Connection.gather_candidates`` is the only caller of the
module-level ``aioice.ice.get_host_addresses``. :func:`install` replaces that
function, once per process, with a wrapper that returns ``[address]`` while the
:data:`_ANNOUNCED` context variable is set, and defers to the original otherwise.
:func:`announced_gathering` sets the variable around the one await that gathers
(``setLocalDescription``); asyncio tasks copy the context when they are created, so
only peer connections gathered inside that block are affected, and any other aiortc
user in the process keeps aioice's behaviour. If a future aioice stops calling
``get_host_addresses``, ``test_stage_candidates`` fails (it asserts the SDPs).

mDNS: aiortc never announces ``.local`` names, but aioice resolves a remote ``.local``
candidate by multicast DNS (224.0.0.251). A server never resolves a browser's LAN
name anyway (the browser's checks arrive from its real address and become
peer-reflexive candidates), so :func:`strip_mdns_candidates` drops them from the
remote SDP before aiortc sees it: no multicast lookups, ever.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator

import aioice.ice

__all__ = [
    "announced_gathering",
    "candidate_addresses",
    "install",
    "strip_mdns_candidates",
]

_ANNOUNCED: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "townhall_announced_address", default=None
)
_install_lock = threading.Lock()
_CANDIDATE_LINE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)")


def install() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` once (idempotent, thread-safe)."""
    with _install_lock:
        current = aioice.ice.get_host_addresses
        if getattr(current, "_townhall_wrapped", False):
            return
        original: Callable[[bool, bool], list[str]] = current

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            address = _ANNOUNCED.get()
            if address is None:
                return original(use_ipv4, use_ipv6)
            return [address]

        get_host_addresses._townhall_wrapped = True  # type: ignore[attr-defined]
        aioice.ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def announced_gathering(address: str | None) -> Iterator[None]:
    """Within this block, ICE gathering offers only ``address`` as host candidate.

    ``None`` leaves aioice's default gathering. Wrap exactly the
    ``setLocalDescription`` call (aiortc gathers there and nowhere else).
    """
    if address is None:
        yield
        return
    ipaddress.ip_address(address)  # a literal IP, never a name to resolve
    install()
    token = _ANNOUNCED.set(address)
    try:
        yield
    finally:
        _ANNOUNCED.reset(token)


def strip_mdns_candidates(sdp: str) -> str:
    """Drop ``a=candidate`` lines whose address is an mDNS ``.local`` name."""
    kept = []
    for line in sdp.splitlines(keepends=True):
        match = _CANDIDATE_LINE.match(line)
        if match is not None and match.group(5).lower().endswith(".local"):
            continue
        kept.append(line)
    return "".join(kept)


def candidate_addresses(sdp: str) -> list[str]:
    """The connection address of every ``a=candidate`` line, in order."""
    addresses = []
    for line in sdp.splitlines():
        match = _CANDIDATE_LINE.match(line)
        if match is not None:
            addresses.append(match.group(5))
    return addresses
