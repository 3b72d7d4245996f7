"""StageRoom with real aiortc peers on 127.0.0.1 (no HTTP layer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

import townhall.stage.room as room_module
from townhall.stage import (
    ReturnTrack,
    RtcSettings,
    StageRoom,
    ToneTrack,
    WhipError,
    rtc_configuration,
)
from townhall.stage.candidates import announced_gathering, candidate_addresses

LOOPBACK = RtcSettings(announced_address="127.0.0.1")


@dataclass
class Recorder:
    """The room's callbacks, recorded."""

    audio: dict[str, list[tuple[np.ndarray, int]]] = field(default_factory=dict)
    joins: list[str] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)

    def on_audio(self, speaker_id: str, pcm: np.ndarray, pts: int) -> None:
        self.audio.setdefault(speaker_id, []).append((pcm, pts))


class Peer:
    """A speaker's side: a plain aiortc peer connection publishing a tone."""

    def __init__(self, freq: float = 440.0, direction: str = "sendrecv") -> None:
        self.pc = RTCPeerConnection(rtc_configuration(LOOPBACK))
        self.pc.addTransceiver(ToneTrack(freq), direction=direction)
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()
            if self.pc.connectionState in ("failed", "closed"):
                self.ended.set()

    async def offer(self) -> str:
        with announced_gathering("127.0.0.1"):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def join(self, room: StageRoom, speaker_id: str) -> str:
        session = await room.accept_offer(speaker_id, await self.offer())
        await self.answer(session.answer_sdp)
        await asyncio.wait_for(self.connected.wait(), 5)
        for _ in range(100):  # and the server's side of the DTLS handshake
            stats = room.session_stats(speaker_id)
            if stats is not None and stats.connection_state == "connected":
                break
            await asyncio.sleep(0.01)
        return session.session_id


@pytest.fixture
def server_pcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RTCPeerConnection]]:
    """Every peer connection the room creates (a spy: behaviour unchanged)."""
    created: list[RTCPeerConnection] = []

    class SpyPeerConnection(RTCPeerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(room_module, "RTCPeerConnection", SpyPeerConnection)
    yield created


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    await asyncio.gather(*(p.pc.close() for p in made))


def make_room(rec: Recorder, settings: RtcSettings = LOOPBACK) -> StageRoom:
    return StageRoom(
        "space-1", settings, rec.on_audio, on_join=rec.joins.append, on_leave=rec.leaves.append
    )


def ice_connection(pc: RTCPeerConnection) -> Any:
    """aioice's Connection under a peer connection (test-only reach into aiortc)."""
    return pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection


async def test_candidates_and_sockets_are_loopback_only(
    server_pcs: list[RTCPeerConnection], peers: list[Peer]
) -> None:
    rec = Recorder()
    room = make_room(rec)
    peer = Peer()
    peers.append(peer)
    offer = await peer.offer()
    session = await room.accept_offer("alice", offer)
    await peer.answer(session.answer_sdp)
    await asyncio.wait_for(peer.connected.wait(), 5)
    try:
        assert candidate_addresses(offer) == ["127.0.0.1"]
        assert candidate_addresses(session.answer_sdp) == ["127.0.0.1"]
        assert "c=IN IP4 127.0.0.1" in session.answer_sdp
        for pc in (peer.pc, server_pcs[0]):
            conn = ice_connection(pc)
            # No STUN/TURN server: nothing is ever sent off the machine for gathering.
            assert conn.stun_server is None and conn.turn_server is None
            # Every socket ICE opened is bound to 127.0.0.1 ...
            bound = {p.transport.get_extra_info("sockname")[0] for p in conn._protocols}
            assert bound == {"127.0.0.1"}
            # ... and every remote candidate it checks is 127.0.0.1.
            assert {c.host for c in conn._remote_candidates} == {"127.0.0.1"}
            assert {pair.remote_addr[0] for pair in conn._check_list} == {"127.0.0.1"}
    finally:
        await room.close()


async def test_audio_reaches_on_audio_as_mono_20ms_frames(peers: list[Peer]) -> None:
    rec = Recorder()
    room = make_room(rec)
    peer = Peer(freq=1000.0)
    peers.append(peer)
    await peer.join(room, "alice")
    await asyncio.sleep(0.5)
    await room.close()
    frames = rec.audio["alice"]
    assert len(frames) >= 15
    assert all(pcm.dtype == np.int16 and pcm.shape == (960,) for pcm, _ in frames)
    assert [b - a for (_, a), (_, b) in zip(frames, frames[1:], strict=False)] == [960] * (
        len(frames) - 1
    )
    signal = np.concatenate([pcm for pcm, _ in frames[5:]]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    assert abs(np.fft.rfftfreq(signal.size, 1 / 48000)[spectrum.argmax()] - 1000) < 10
    assert rec.joins == ["alice"] and rec.leaves == ["alice"]


async def test_disconnect_closes_the_speaker_promptly(
    server_pcs: list[RTCPeerConnection], peers: list[Peer]
) -> None:
    rec = Recorder()
    room = make_room(rec)
    alice, bob = Peer(), Peer(660.0)
    peers.extend([alice, bob])
    await alice.join(room, "alice")
    await bob.join(room, "bob")
    assert room.speakers() == {"alice", "bob"}

    loop = asyncio.get_running_loop()
    started = loop.time()
    await room.disconnect("alice")
    await asyncio.wait_for(alice.ended.wait(), 1.0)
    assert loop.time() - started < 1.0
    assert alice.pc.connectionState in ("closed", "failed")
    assert server_pcs[0].connectionState == "closed"
    assert rec.leaves == ["alice"]
    assert room.speakers() == {"bob"} and room.session_count() == 1
    assert bob.pc.connectionState == "connected"
    await room.disconnect("alice")  # already gone: nothing happens
    assert rec.leaves == ["alice"]
    await room.close()
    assert rec.leaves == ["alice", "bob"]


async def test_speaker_hanging_up_is_a_leave(peers: list[Peer]) -> None:
    rec = Recorder()
    room = make_room(rec)
    peer = Peer()
    peers.append(peer)
    await peer.join(room, "alice")
    await peer.pc.close()
    for _ in range(100):
        if not room.session_count():
            break
        await asyncio.sleep(0.01)
    assert room.session_count() == 0 and rec.leaves == ["alice"]
    await room.close()
    assert rec.leaves == ["alice"]


async def test_bad_offers_create_no_peer_connection(
    server_pcs: list[RTCPeerConnection], peers: list[Peer]
) -> None:
    rec = Recorder()
    room = make_room(rec)
    peer = Peer()
    peers.append(peer)
    good = await peer.offer()
    pcmu_only = good.replace(" 96 9 0 8", " 0").replace("a=rtpmap:96 opus/48000/2\r\n", "")
    bad = {
        "garbage": ("\x00\x01 not sdp", 400),
        "huge": (good + "a=x-pad:" + "x" * 70_000 + "\r\n", 413),
        "video-only": (good.replace("m=audio", "m=video"), 422),
        "pcmu-only": (pcmu_only, 422),
    }
    for name, (sdp, status) in bad.items():
        with pytest.raises(WhipError) as info:
            await room.accept_offer("alice", sdp)
        assert info.value.status == status, name
        assert info.value.detail, name
    assert room.session_count() == 0 and room.speakers() == frozenset()
    assert server_pcs == []
    assert rec.joins == [] and rec.leaves == []
    await room.close()


async def test_failure_after_the_peer_connection_exists_closes_it(
    server_pcs: list[RTCPeerConnection], peers: list[Peer]
) -> None:
    # Injected fault: an announced address that is not on this machine (TEST-NET-1),
    # so the server cannot bind a socket and gathers no candidate.
    rec = Recorder()
    room = make_room(rec, RtcSettings(announced_address="192.0.2.1"))
    peer = Peer()
    peers.append(peer)
    with pytest.raises(WhipError) as info:
        await room.accept_offer("alice", await peer.offer())
    assert info.value.status == 500 and "192.0.2.1" in info.value.detail
    assert room.session_count() == 0
    assert len(server_pcs) == 1 and server_pcs[0].connectionState == "closed"
    assert rec.joins == [] and rec.leaves == []
    await room.close()


async def test_new_offer_replaces_the_session_and_delete_checks_the_owner(
    server_pcs: list[RTCPeerConnection], peers: list[Peer]
) -> None:
    rec = Recorder()
    room = make_room(rec)
    first, second = Peer(), Peer()
    peers.extend([first, second])
    first_id = await first.join(room, "alice")
    second_id = await second.join(room, "alice")
    assert room.session_count() == 1 and room.speakers() == {"alice"}
    assert server_pcs[0].connectionState == "closed"
    await asyncio.wait_for(first.ended.wait(), 1.0)
    assert rec.joins == ["alice"] and rec.leaves == []  # a replacement is not a leave
    assert await room.close_session(first_id) is False  # the old id is gone

    with pytest.raises(WhipError) as info:
        await room.close_session(second_id, speaker_id="mallory")
    assert info.value.status == 403
    assert room.session_count() == 1
    assert await room.close_session(second_id, speaker_id="alice") is True
    assert room.session_count() == 0 and rec.leaves == ["alice"]
    await asyncio.wait_for(second.ended.wait(), 1.0)
    await room.close()


async def test_sendonly_publisher_gets_a_recvonly_answer(peers: list[Peer]) -> None:
    rec = Recorder()
    room = make_room(rec)
    peer = Peer(direction="sendonly")
    peers.append(peer)
    offer = await peer.offer()
    session = await room.accept_offer("obs", offer)
    assert "a=recvonly" in session.answer_sdp
    await peer.answer(session.answer_sdp)
    await asyncio.wait_for(peer.connected.wait(), 5)
    room.send_return("obs", np.zeros(960, np.int16))  # no return track: ignored
    await asyncio.sleep(0.2)
    assert rec.audio["obs"]
    await room.close()


async def test_answer_is_sendrecv_for_a_speaker(peers: list[Peer]) -> None:
    room = make_room(Recorder())
    peer = Peer()
    peers.append(peer)
    session = await room.accept_offer("alice", await peer.offer())
    assert "a=sendrecv" in session.answer_sdp
    assert "opus/48000/2" in session.answer_sdp
    await room.close()


async def test_unanswered_session_times_out(peers: list[Peer]) -> None:
    rec = Recorder()
    room = make_room(rec, RtcSettings(announced_address="127.0.0.1", connect_timeout=0.3))
    peer = Peer()
    peers.append(peer)
    await room.accept_offer("alice", await peer.offer())  # the answer is never applied
    assert room.session_count() == 1
    await asyncio.sleep(0.6)
    assert room.session_count() == 0 and rec.leaves == ["alice"]
    await room.close()


async def test_closed_room_refuses_offers(peers: list[Peer]) -> None:
    rec = Recorder()
    room = make_room(rec)
    peer = Peer()
    peers.append(peer)
    await peer.join(room, "alice")
    await room.close()
    assert rec.leaves == ["alice"] and room.session_count() == 0
    late = Peer()
    peers.append(late)
    with pytest.raises(WhipError) as info:
        await room.accept_offer("bob", await late.offer())
    assert info.value.status == 409


async def test_return_track_queue_drops_oldest_and_fills_with_silence() -> None:
    track = ReturnTrack(max_frames=3)
    for value in range(5):
        track.push(np.full(960, value, np.int16))
    assert track.queued() == 3 and track.frames_dropped == 2
    with pytest.raises(ValueError):
        track.push(np.zeros(480, np.int16))
    with pytest.raises(ValueError):
        track.push(np.zeros(960, np.float32))
    loop = asyncio.get_running_loop()
    started = loop.time()
    packets = [await track.recv() for _ in range(6)]
    elapsed = loop.time() - started
    assert [p.pts for p in packets] == [0, 960, 1920, 2880, 3840, 4800]
    assert 0.09 <= elapsed < 0.3  # paced: 5 intervals of 20 ms
    assert track.frames_silent == 3 and track.queued() == 0
    assert all(p.size > 0 for p in packets)
    track.stop()


async def test_return_track_encodes_mono_opus_at_its_bitrate() -> None:
    track = ReturnTrack()
    tone = np.sin(2 * np.pi * 440 * np.arange(960 * 50) / 48000) * 12000
    sizes = []
    for i in range(50):
        track.push(tone[i * 960 : (i + 1) * 960].astype(np.int16))
        sizes.append((await track.recv()).size)
    track.stop()
    # 40 kb/s -> 100 bytes per 20 ms; aiortc's default (96 kb/s stereo) would be ~240.
    assert 70 < sum(sizes[5:]) / len(sizes[5:]) < 130
