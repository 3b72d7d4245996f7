"""Mitigations pushed to an edge: the gate's block list and the revoked tickets.

Pure part: :func:`parse_acl` reads ``GET /ops/blocks.acl`` (one CIDR a line),
:func:`parse_revocations` reads ``GET /ops/revocations``; :func:`render_blocked_acl` and
:func:`render_revoked_check` write the VCL pieces that :func:`townhall.edge.varnish.render_vcl`
embeds. Adapter: :class:`MitigationPoller` polls both lists every few seconds with the
operator key and, when either changed, loads and switches to a regenerated VCL
(``varnishadm vcl.load`` + ``vcl.use``). A failed fetch keeps the last good lists.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0
MAX_ENTRIES = 5_000
"""Entries of either list beyond this are dropped (logged): the VCL must stay compilable."""
_TOKEN_ID = re.compile(r"^[A-Za-z0-9:_.@-]{1,128}$")
_NEVER = '    "255.255.255.255"/32;  # placeholder: an ACL may not be empty'


def parse_acl(text: str) -> tuple[str, ...]:
    """Canonical, sorted, de-duplicated CIDRs of an ACL text (comments and junk skipped)."""
    out: set[str] = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.add(str(ipaddress.ip_network(line, strict=False)))
        except ValueError:
            logger.warning("ignoring %r in the block list", line[:80])
    return tuple(sorted(out))[:MAX_ENTRIES]


def parse_revocations(doc: object) -> tuple[str, ...]:
    """Revoked ``sub``/``jti`` values of a ``GET /ops/revocations`` document, sorted; values
    that could not be matched safely in VCL are skipped."""
    if not isinstance(doc, dict):
        return ()
    items = doc.get("revocations")
    out: set[str] = set()
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        for field in ("subject", "jti"):
            value = item.get(field)
            if isinstance(value, str) and _TOKEN_ID.match(value):
                out.add(value)
    return tuple(sorted(out))[:MAX_ENTRIES]


def render_blocked_acl(cidrs: tuple[str, ...]) -> str:
    """``acl townhall_blocked { … }`` for the VCL (a never-matching entry when empty)."""
    lines = ["acl townhall_blocked {"]
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        lines.append(f'    "{net.network_address}"/{net.prefixlen};')
    if not cidrs:
        lines.append(_NEVER)
    lines.append("}")
    return "\n".join(lines)


def render_revoked_check(values: tuple[str, ...]) -> str:
    """VCL lines (inside ``th_check_ticket``, claims decoded) refusing revoked tickets."""
    if not values:
        return "    # no revoked tickets"
    alternation = "|".join(re.escape(v) for v in values if _TOKEN_ID.match(v))
    if '"}' in alternation:  # cannot happen with _TOKEN_ID, but never break the long string
        raise ValueError("revocation value cannot be written into VCL")
    return (
        f'    if (req.http.X-Th-Claims ~ {{"[{{,]"(sub|jti)":"({alternation})"[,}}]"}}) {{\n'
        '        return (synth(401, "revoked_token"));\n'
        "    }"
    )


def render_revoked_link_check(values: tuple[str, ...]) -> str:
    """VCL lines (inside ``th_check_link``) refusing links whose ``sub64`` or ``jti`` is
    revoked (subjects are matched in their link encoding)."""
    from ..auth.links import JTI_RE, encode_subject

    subs = [encode_subject(v) for v in values if _TOKEN_ID.match(v)]
    jtis = [v for v in values if re.fullmatch(JTI_RE, v)]
    lines: list[str] = []
    for header, found in (("X-Th-Sub", subs), ("X-Th-Jti", jtis)):
        if found:
            alternation = "|".join(re.escape(v) for v in found)
            lines += [
                f'    if (req.http.{header} ~ {{"^({alternation})$"}}) {{',
                '        return (synth(401, "revoked_token"));',
                "    }",
            ]
    return "\n".join(lines) if lines else "    # no revoked links"


@dataclass(frozen=True)
class Mitigations:
    """What an edge enforces beyond the tickets."""

    blocked: tuple[str, ...] = ()
    """Blocked CIDRs."""
    revoked: tuple[str, ...] = ()
    """Revoked ticket subjects and ids."""


Reload = Callable[[Mitigations], Awaitable[None]]


class MitigationPoller:
    """Polls the origin's block list and revocations; calls ``reload`` when they change."""

    def __init__(
        self,
        api: str,
        ops_key: str,
        reload: Reload,
        *,
        interval: float = POLL_SECONDS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.api = api.rstrip("/")
        self.reload = reload
        self.interval = interval
        self.current = Mitigations()
        """The lists in force (last good fetch)."""
        self.reloads = 0
        """VCL reloads done."""
        self.failures = 0
        """Polls that failed (the last good lists stayed in force)."""
        self._client = client or httpx.AsyncClient(
            timeout=5, headers={"Authorization": f"Bearer {ops_key}"}
        )

    async def fetch(self) -> Mitigations:
        acl = await self._client.get(self.api + "/ops/blocks.acl")
        acl.raise_for_status()
        blocked = parse_acl(acl.text)
        revoked: tuple[str, ...] = ()
        rev = await self._client.get(self.api + "/ops/revocations")
        if rev.status_code != 404:  # an origin without revocations still has blocks
            rev.raise_for_status()
            revoked = parse_revocations(rev.json())
        return Mitigations(blocked, revoked)

    async def poll_once(self) -> bool:
        """One poll; True when the VCL was reloaded."""
        try:
            fresh = await self.fetch()
        except (httpx.HTTPError, ValueError) as exc:
            self.failures += 1
            logger.warning("could not fetch mitigations (keeping the last good ones): %s", exc)
            return False
        if fresh == self.current:
            return False
        try:
            await self.reload(fresh)
        except Exception as exc:
            self.failures += 1
            logger.error("could not load the regenerated VCL (keeping the old one): %s", exc)
            return False
        logger.info(
            "edge now blocks %d networks and %d revoked tickets",
            len(fresh.blocked),
            len(fresh.revoked),
        )
        self.current = fresh
        self.reloads += 1
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            while True:
                await self.poll_once()
                await asyncio.sleep(self.interval)
        finally:
            await self._client.aclose()


async def varnishadm(workdir: str, *args: str, binary: str = "varnishadm") -> str:
    """Run one varnishadm command against the instance in ``workdir``; its output."""
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-n",
        workdir,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"varnishadm {args[0]} failed ({proc.returncode}): {text.strip()}")
    return text
