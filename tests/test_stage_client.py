"""WhipClient against a real StageRoom behind a tiny WHIP app (uvicorn on 127.0.0.1:0).

The app here is a stand-in for the real HTTP layer: the bearer token is the speaker
id, POST /whip -> accept_offer -> 201 + Location, DELETE /whip/{id} -> close_session.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from townhall.stage import (
    RtcSettings,
    StageRoom,
    ToneTrack,
    WhipClient,
    WhipError,
    file_track,
)
from townhall.stage.candidates import candidate_addresses

LOOPBACK = RtcSettings(announced_address="127.0.0.1")


def whip_app(room: StageRoom) -> Starlette:
    def speaker_of(request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    async def post(request: Request) -> Response:
        if request.headers.get("content-type") != "application/sdp":
            return Response("Content-Type must be application/sdp", 415)
        try:
            session = await room.accept_offer(speaker_of(request), (await request.body()).decode())
        except WhipError as exc:
            return Response(exc.detail, exc.status)
        return Response(
            session.answer_sdp,
            201,
            media_type="application/sdp",
            headers={"Location": f"/whip/{session.session_id}"},
        )

    async def delete(request: Request) -> Response:
        try:
            found = await room.close_session(request.path_params["sid"], speaker_of(request))
        except WhipError as exc:
            return Response(exc.detail, exc.status)
        return Response(status_code=200 if found else 404)

    return Starlette(
        routes=[
            Route("/whip", post, methods=["POST"]),
            Route("/whip/{sid}", delete, methods=["DELETE"]),
        ]
    )


@dataclass
class Server:
    room: StageRoom
    url: str
    audio: dict[str, list[np.ndarray]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    audio: dict[str, list[np.ndarray]] = {}
    others = {"alice": "bob", "bob": "alice"}

    def on_audio(speaker_id: str, pcm: np.ndarray, pts: int) -> None:
        audio.setdefault(speaker_id, []).append(pcm)
        # A stand-in mixer: each speaker hears the other one.
        room.send_return(others.get(speaker_id, ""), pcm)

    room = StageRoom("space-1", LOOPBACK, on_audio)
    config = uvicorn.Config(
        whip_app(room), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    while not uv.started:
        await asyncio.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield Server(room, f"http://127.0.0.1:{port}/whip", audio)
    await room.close()
    uv.should_exit = True
    await task


def dominant(signal: np.ndarray) -> tuple[float, float]:
    """(peak frequency in Hz, fraction of spectral energy within 20 Hz of it)."""
    x = signal.astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 48000)
    peak = float(freqs[power.argmax()])
    near = power[np.abs(freqs - peak) < 20].sum()
    return peak, float(near / power.sum())


def band_energy(signal: np.ndarray, freq: float) -> float:
    x = signal.astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 48000)
    return float(power[np.abs(freqs - freq) < 20].sum() / power.sum())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 48000)
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)


async def test_two_speakers_hear_each_other_and_not_themselves(
    server: Server, tmp_path: Path
) -> None:
    alice = WhipClient(server.url, "alice", LOOPBACK)
    bob = WhipClient(server.url, "bob", LOOPBACK)
    alice.record_return(str(tmp_path / "alice.wav"))
    bob.record_return(str(tmp_path / "bob.wav"))
    await alice.publish(ToneTrack(440.0, amplitude=0.3))
    await bob.publish(ToneTrack(660.0, amplitude=0.3, channels=2))  # stereo in, mono out
    await alice.wait_connected()
    await bob.wait_connected()
    assert alice.location is not None and alice.location.startswith(server.url + "/")
    assert server.room.speakers() == {"alice", "bob"}
    await asyncio.sleep(1.5)
    assert alice._pc is not None
    sent = [s for s in (await alice._pc.getStats()).values() if s.type == "outbound-rtp"]
    # Opus mono at 40 kb/s: ~100 bytes per 20 ms packet (aiortc's own encoder: ~240).
    assert len(sent) == 1 and sent[0].packetsSent >= 50
    assert 60 < sent[0].bytesSent / sent[0].packetsSent < 140
    await alice.close()
    await bob.close()

    for speaker, freq in (("alice", 440.0), ("bob", 660.0)):
        frames = server.audio[speaker]
        assert len(frames) >= 50
        peak, share = dominant(np.concatenate(frames[10:]))
        assert abs(peak - freq) < 5 and share > 0.9, (speaker, peak, share)

    for who, hears, own in (("alice", 660.0, 440.0), ("bob", 440.0, 660.0)):
        returned = read_wav(tmp_path / f"{who}.wav")
        assert returned.size >= 48000 * 0.8
        # the last 0.7 s before the final 0.1 s (the hang-up), as seven 100 ms windows: the
        # other's tone dominates in most of them (one late packet on a busy machine smears
        # one window's spectrum, not the verdict), and one's own tone is in none of it
        tail = returned[-48000 * 8 // 10 : -48000 // 10]
        windows = [dominant(w) for w in np.array_split(tail, 7)]
        peaks = sorted(p for p, _ in windows)
        shares = sorted(sh for _, sh in windows)
        assert abs(peaks[3] - hears) < 10 and shares[3] > 0.8, (who, windows)
        assert band_energy(tail, own) < 0.01, who
    # DELETE went through: the room is empty.
    assert server.room.session_count() == 0


async def test_client_offer_and_server_answer_are_loopback_only(server: Server) -> None:
    client = WhipClient(server.url, "alice", LOOPBACK)
    await client.publish(ToneTrack(440.0))
    await client.wait_connected()
    assert client._pc is not None
    assert candidate_addresses(client._pc.localDescription.sdp) == ["127.0.0.1"]
    assert candidate_addresses(client._pc.remoteDescription.sdp) == ["127.0.0.1"]
    await client.close()


async def test_host_removal_is_seen_by_the_client(server: Server) -> None:
    client = WhipClient(server.url, "alice", LOOPBACK)
    await client.publish(ToneTrack(440.0))
    await client.wait_connected()
    # Removal happens mid-talk: let the server finish its side of the DTLS handshake
    # (a close_notify sent before that is lost, and the client would only notice when
    # ICE consent expires, ~30 s later).
    for _ in range(100):
        stats = server.room.session_stats("alice")
        if stats is not None and stats.connection_state == "connected":
            break
        await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.room.disconnect("alice")
    await client.wait_ended(timeout=1.0)
    assert loop.time() - started < 1.0
    assert client.connection_state in ("closed", "failed")
    await client.close()  # DELETE of a gone session answers 404: close still succeeds


async def test_refused_offer_raises_whip_error_and_cleans_up(server: Server) -> None:
    # A transport that corrupts the offer in flight (injected fault): the server refuses it.
    class Corrupting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                body = (await request.aread()).replace(b"opus/48000/2", b"speex/16000")
                headers = {k: v for k, v in request.headers.items() if k != "content-length"}
                request = httpx.Request("POST", request.url, headers=headers, content=body)
            return await super().handle_async_request(request)

    client = WhipClient(server.url, "alice", LOOPBACK, transport=Corrupting())
    with pytest.raises(WhipError) as info:
        await client.publish(ToneTrack(440.0))
    assert info.value.status == 422 and "Opus" in info.value.detail
    assert client.connection_state == "closed"
    assert server.room.session_count() == 0
    await client.close()


async def test_wrong_owner_delete_is_refused(server: Server) -> None:
    alice = WhipClient(server.url, "alice", LOOPBACK)
    await alice.publish(ToneTrack(440.0))
    await alice.wait_connected()
    assert alice.location is not None
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.delete(alice.location, headers={"Authorization": "Bearer mallory"})
    assert response.status_code == 403
    assert server.room.speakers() == {"alice"}
    await alice.close()
    assert server.room.session_count() == 0


async def test_file_track_publishes_a_wav(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    t = np.arange(48000) / 48000
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(48000)
        f.writeframes((np.sin(2 * np.pi * 880 * t) * 9000).astype(np.int16).tobytes())
    client = WhipClient(server.url, "alice", LOOPBACK)
    await client.publish(file_track(str(path)))
    await client.wait_connected()
    await asyncio.sleep(0.6)
    await client.close()
    peak, share = dominant(np.concatenate(server.audio["alice"][5:]))
    assert abs(peak - 880) < 5 and share > 0.9
