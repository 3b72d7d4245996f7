"""Pure parts of townhall.stage: offer validation, settings, PCM helpers, candidates."""

from __future__ import annotations

import numpy as np
import pytest

from townhall.stage import MAX_OFFER_BYTES, RtcSettings, WhipError, rtc_configuration
from townhall.stage.candidates import candidate_addresses, strip_mdns_candidates
from townhall.stage.offer import validate_offer
from townhall.stage.pcm import FrameChunker, downmix_to_mono
from townhall.stage.settings import parse_ice_server

# A browser-shaped offer (Chromium's layout, shortened), CRLF line ends.
AUDIO_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:1 1 udp 2113937151 0a1b2c3d-aaaa-bbbb-cccc-0123456789ab.local 54400 typ host",
        "a=candidate:2 1 udp 2113937151 127.0.0.1 54401 typ host",
        "a=ice-ufrag:Yx7a",
        "a=ice-pwd:Zm9vYmFyYmF6cXV4cXV1eHh4eXk",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 "
        "81:15:46:F7:98:09:FD:9A:4E:FE:DE:37:05:84:B9:AF:BE:DB:04:12:71:BC:AB:59:9C:47:5F:68:22:"
        "04:B1:06",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=ssrc:1001 cname:speaker",
        "",
    ]
)


def status_of(sdp: str | bytes) -> tuple[int, str]:
    with pytest.raises(WhipError) as info:
        validate_offer(sdp)
    return info.value.status, info.value.detail


def test_valid_offer_passes_and_loses_its_mdns_candidate() -> None:
    offer = validate_offer(AUDIO_OFFER)
    assert offer.wants_return
    assert candidate_addresses(offer.sdp) == ["127.0.0.1"]
    assert ".local" not in offer.sdp


@pytest.mark.parametrize(
    ("sdp", "status", "words"),
    [
        ("hello, I am not SDP", 400, "v=0"),
        (b"\xff\xfe\x00garbage", 400, "UTF-8"),
        ("v=0\r\nm=audio notaport RTP/AVP 0\r\n", 400, "does not parse"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 422, "no media"),
        (
            AUDIO_OFFER.replace(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8", "m=video 9 UDP/TLS/RTP/SAVPF 111 0 8"
            ),
            422,
            "no audio m-line",
        ),  # noqa: E501
        (
            AUDIO_OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 G722/8000"),
            422,
            "no Opus",
        ),  # noqa: E501
        (AUDIO_OFFER.replace("a=sendrecv", "a=recvonly"), 422, "must send"),
        (AUDIO_OFFER.replace("a=ice-pwd:Zm9vYmFyYmF6cXV4cXV1eHh4eXk\r\n", ""), 400, "ICE"),
        (AUDIO_OFFER.replace("a=fingerprint:sha-256", "a=x-fingerprint:sha-256"), 400, "DTLS"),
        (
            AUDIO_OFFER + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n",
            422,
            "video",
        ),  # noqa: E501
        (AUDIO_OFFER + AUDIO_OFFER[AUDIO_OFFER.index("m=audio") :], 422, "2 audio m-lines"),
        (AUDIO_OFFER + "a=x-padding:" + "A" * MAX_OFFER_BYTES + "\r\n", 413, "limit"),
    ],
    ids=[
        "garbage",
        "binary",
        "bad-m-line",
        "no-media",
        "video-only",
        "no-opus",
        "recvonly",
        "no-ice-pwd",
        "no-fingerprint",
        "audio-and-video",
        "two-audio",
        "too-large",
    ],
)
def test_bad_offers_are_refused_with_status_and_detail(
    sdp: str | bytes, status: int, words: str
) -> None:
    got_status, detail = status_of(sdp)
    assert got_status == status
    assert words in detail


def test_pcmu_only_offer_names_what_was_offered() -> None:
    pcmu_only = AUDIO_OFFER.replace("111 0 8", "0").replace("a=rtpmap:111 opus/48000/2\r\n", "")
    pcmu_only = pcmu_only.replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
    status, detail = status_of(pcmu_only.replace("a=rtpmap:8 PCMA/8000\r\n", ""))
    assert (status, detail) == (
        422,
        "SDP offer has no Opus codec (offered: PCMU); Opus is required",
    )


def test_sendonly_publisher_is_accepted_without_return() -> None:
    assert not validate_offer(AUDIO_OFFER.replace("a=sendrecv", "a=sendonly")).wants_return


def test_offer_exactly_at_the_limit_is_measured_in_bytes() -> None:
    base = len(AUDIO_OFFER.encode())
    pad = "a=x-pad:" + "é" * ((MAX_OFFER_BYTES - base - 10) // 2) + "\r\n"
    assert len((AUDIO_OFFER + pad).encode()) <= MAX_OFFER_BYTES
    validate_offer(AUDIO_OFFER + pad)
    assert status_of(AUDIO_OFFER + pad + "é" * 8)[0] == 413


def test_ice_servers_parse_and_default_to_none() -> None:
    assert rtc_configuration(RtcSettings()).iceServers == []
    turn = parse_ice_server("turn:alice:s3cret@turn.example.org:3478?transport=tcp")
    assert (turn.urls, turn.username, turn.credential) == (
        "turn:turn.example.org:3478?transport=tcp",
        "alice",
        "s3cret",
    )
    stun = parse_ice_server("stun:stun.example.org:3478")
    assert (stun.urls, stun.username) == ("stun:stun.example.org:3478", None)
    config = rtc_configuration(RtcSettings(ice_servers=("stun:127.0.0.1:3478",)))
    assert [s.urls for s in config.iceServers or []] == ["stun:127.0.0.1:3478"]


@pytest.mark.parametrize(
    "url", ["http://example.org", "turn:host:3478", "stun:", "stun:a b:1", "turn:u:p@h:99999999"]
)
def test_malformed_ice_server_urls_fail_fast(url: str) -> None:
    with pytest.raises(ValueError):
        RtcSettings(ice_servers=(url,))


def test_strip_mdns_keeps_everything_else() -> None:
    kept = "a=candidate:2 1 udp 1 10.0.0.1 9 typ host\r\n"
    sdp = "a=candidate:1 1 udp 1 abc.local 9 typ host\r\n" + kept
    assert strip_mdns_candidates(sdp) == kept


def test_downmix_averages_interleaved_stereo() -> None:
    stereo = np.array([[32767, 32767, -32768, -32768, 100, -100, 7, 8]], dtype=np.int16)
    mono = downmix_to_mono(stereo, 2)
    assert mono.dtype == np.int16
    assert mono.tolist() == [32767, -32768, 0, 7]


def test_chunker_passes_20ms_frames_and_recuts_others() -> None:
    chunker = FrameChunker()
    frame = np.arange(960, dtype=np.int16)
    assert [pts for _, pts in chunker.push(frame, 4800)] == [4800]
    # 10 ms packets: one frame per two pushes, stamped with the first one's pts.
    ten = np.ones(480, dtype=np.int16)
    assert chunker.push(ten, 5760) == []
    out = chunker.push(ten * 2, 6240)
    assert [(p.tolist()[0], p.tolist()[-1], pts) for p, pts in out] == [(1, 2, 5760)]
    # 60 ms packet: three frames.
    assert [pts for _, pts in chunker.push(np.zeros(2880, np.int16), 6720)] == [6720, 7680, 8640]


def test_chunker_drops_the_partial_frame_at_a_gap() -> None:
    chunker = FrameChunker()
    assert chunker.push(np.ones(480, np.int16), 0) == []
    # 480 samples lost: the half frame is dropped, the next frame starts at the new pts.
    out = chunker.push(np.full(960, 3, np.int16), 960)
    assert [(int(p[0]), pts) for p, pts in out] == [(3, 960)]
