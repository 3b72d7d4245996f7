"""``townhall speak``: publish a file or a tone to a space's stage over WHIP."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import typer

from .common import console, fail

logger = logging.getLogger(__name__)


def _announce_for(server: str, explicit: str | None) -> str | None:
    """Use loopback ICE candidates when the server itself is on loopback."""
    if explicit:
        return explicit
    host = urlsplit(server).hostname or ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        if host == "localhost":
            return "127.0.0.1"
    return None


def _space_of(token: str) -> str:
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        fail("--token is not a townhall token")
    sid = claims.get("sid")
    if not isinstance(sid, str):
        fail("--token is not bound to a space")
    return sid


def speak(
    source: Path = typer.Argument(None, help="Audio file to publish (any format FFmpeg reads)."),
    server: str = typer.Option(..., "--server", envvar="TOWNHALL_SERVER", help="Server URL."),
    token: str = typer.Option(..., "--token", envvar="TOWNHALL_TOKEN", help="Speak or host token."),
    tone: float = typer.Option(None, "--tone", help="Publish a sine at this frequency (Hz)."),
    seconds: float = typer.Option(None, "--seconds", help="Stop after this many seconds."),
    record_return: Path = typer.Option(
        None, "--record-return", help="Write what the stage sends back (N−1 mix) to a WAV file."
    ),
    loop: bool = typer.Option(False, "--loop", help="Repeat the file."),
    stay_muted: bool = typer.Option(False, "--muted", help="Do not unmute after connecting."),
    rtc_address: str = typer.Option(None, "--rtc-address", help="Local IP for ICE candidates."),
) -> None:
    """Publish over WHIP; you hear the rest of the stage (optionally recorded)."""
    if (source is None) == (tone is None):
        fail("give either an audio FILE or --tone HZ")
    if source is not None and not source.exists():
        fail(f"no such file: {source}")
    if tone is not None and not 20 <= tone <= 20000:
        fail("--tone must be between 20 and 20000 Hz")
    if seconds is not None and seconds <= 0:
        fail("--seconds must be positive")
    space_id = _space_of(token)
    try:
        asyncio.run(
            _speak(
                server.rstrip("/"),
                space_id,
                token,
                source,
                tone,
                seconds,
                record_return,
                loop,
                stay_muted,
                _announce_for(server, rtc_address),
            )
        )
    except KeyboardInterrupt:
        pass


async def _speak(
    server: str,
    space_id: str,
    token: str,
    source: Path | None,
    tone: float | None,
    seconds: float | None,
    record_return: Path | None,
    loop: bool,
    stay_muted: bool,
    announce: str | None,
) -> None:
    from ..stage import RtcSettings, ToneTrack, WhipClient, WhipError, file_track

    track = ToneTrack(tone, amplitude=0.3) if tone is not None else file_track(str(source), loop)
    client = WhipClient(
        f"{server}/api/spaces/{space_id}/whip",
        token,
        RtcSettings(announced_address=announce),
        reconnect=True,  # a failed origin is replaced by its standby: follow it there
    )
    if record_return is not None:
        client.record_return(str(record_return))
    try:
        await client.publish(track)
        await client.wait_connected(15)
    except (WhipError, ConnectionError, httpx.HTTPError, httpx.InvalidURL) as exc:
        await client.close()
        fail(f"could not publish: {exc}")
    console.print(f"publishing to space {space_id} (Ctrl-C to stop)")
    if not stay_muted:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                f"{server}/api/spaces/{space_id}/stage/unmute",
                headers={"Authorization": f"Bearer {token}"},
            )
            if r.status_code not in (200, 409):
                console.print(f"[yellow]could not unmute: {r.status_code} {r.text[:200]}")
    try:
        ended = asyncio.ensure_future(client.wait_ended(seconds or 10**9))
        try:
            await asyncio.wait_for(asyncio.shield(ended), seconds)
            console.print("[yellow]the stage closed the connection")
        except TimeoutError:
            pass
        finally:
            ended.cancel()
    finally:
        await client.close()
