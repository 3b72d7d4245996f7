"""WHIP offer validation, done before any peer connection exists (pure, no I/O).

Status codes follow RFC 9725 and HTTP semantics; the HTTP layer maps
``WhipError.status`` to the response as is:

- 413: the offer is larger than :data:`MAX_OFFER_BYTES`;
- 400: not an SDP offer aiortc can use (garbage, missing ICE credentials or DTLS
  fingerprint, unparseable lines);
- 422: a well-formed SDP townhall does not accept: no audio m-line, video/data
  m-lines, more than one audio m-line, no Opus, an audio section that does not send.

(415 is the HTTP layer's answer to a Content-Type other than ``application/sdp``.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc.sdp import SessionDescription

from .candidates import strip_mdns_candidates
from .errors import WhipError

__all__ = ["MAX_OFFER_BYTES", "ValidOffer", "validate_offer"]

MAX_OFFER_BYTES = 64 * 1024
_FINGERPRINT_ALGORITHMS = frozenset({"sha-1", "sha-224", "sha-256", "sha-384", "sha-512"})
_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63}")
_SENDING = ("sendrecv", "sendonly")


@dataclass(frozen=True)
class ValidOffer:
    """An offer that passed :func:`validate_offer`."""

    sdp: str
    """The offer text to hand to aiortc (mDNS candidates removed)."""
    wants_return: bool
    """True when the audio section is ``sendrecv``, so the answer can carry the N-1 mix.
    A ``sendonly`` WHIP publisher (OBS, ffmpeg) is accepted but hears nothing back."""


def validate_offer(offer_sdp: str | bytes) -> ValidOffer:
    """Check a speaker's SDP offer; raise :class:`WhipError` with a clear detail."""
    raw = offer_sdp.encode("utf-8", "replace") if isinstance(offer_sdp, str) else offer_sdp
    if len(raw) > MAX_OFFER_BYTES:
        raise WhipError(413, f"SDP offer is {len(raw)} bytes; the limit is {MAX_OFFER_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WhipError(400, "SDP offer is not UTF-8 text") from None
    if not text.lstrip().startswith("v=0"):
        raise WhipError(400, "not an SDP offer: it must start with 'v=0'")
    if "\x00" in text:
        raise WhipError(400, "SDP offer contains NUL bytes")
    text = strip_mdns_candidates(text)
    try:
        parsed = SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises whatever the bad line causes
        raise WhipError(400, f"SDP offer does not parse: {type(exc).__name__}: {exc}") from None

    kinds = [m.kind for m in parsed.media]
    if not kinds:
        raise WhipError(422, "SDP offer has no media section; offer one audio m-line")
    audio = [m for m in parsed.media if m.kind == "audio"]
    if not audio:
        raise WhipError(
            422, f"SDP offer has no audio m-line (got {', '.join(kinds)}); the stage is audio only"
        )
    others = sorted({k for k in kinds if k != "audio"})
    if others:
        raise WhipError(422, f"the stage is audio only; remove the {', '.join(others)} m-line(s)")
    if len(audio) > 1:
        raise WhipError(422, f"SDP offer has {len(audio)} audio m-lines; offer exactly one")
    media = audio[0]
    if media.port == 0:
        raise WhipError(422, "the audio m-line is rejected (port 0)")
    codecs = [c.mimeType for c in media.rtp.codecs]
    if "audio/opus" not in (c.lower() for c in codecs):
        offered = ", ".join(sorted({c.split("/", 1)[-1] for c in codecs})) or "none"
        raise WhipError(422, f"SDP offer has no Opus codec (offered: {offered}); Opus is required")
    direction = media.direction or "sendrecv"
    if direction not in _SENDING:
        raise WhipError(422, f"the audio m-line is {direction}; a speaker must send audio")
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        raise WhipError(400, "SDP offer lacks ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if media.dtls is None or not media.dtls.fingerprints:
        raise WhipError(400, "SDP offer lacks a DTLS fingerprint (a=fingerprint)")
    for fp in media.dtls.fingerprints:
        if fp.algorithm.lower() not in _FINGERPRINT_ALGORITHMS or not _HEX_PAIRS.fullmatch(
            fp.value
        ):
            raise WhipError(400, "SDP offer has a malformed DTLS fingerprint (a=fingerprint)")
    return ValidOffer(sdp=text, wants_return=direction == "sendrecv")
