"""townhall.stage: the real-time stage over WebRTC (WHIP, RFC 9725) with aiortc.

- :class:`StageRoom` holds one peer connection per speaker, feeds their decoded
  audio to the mixer (``on_audio``) and sends each one the N-1 mix
  (``send_return``).
- :class:`WhipClient` publishes a track to a WHIP endpoint (``townhall speak``);
  :class:`ToneTrack` and :func:`file_track` are sources for it.
- :class:`RtcSettings` decides which ICE candidates are offered (the announced
  address) and which STUN/TURN servers are used (none by default).
"""

from .client import WhipClient
from .encoded import MonoOpusTrack
from .errors import WhipError
from .offer import MAX_OFFER_BYTES, validate_offer
from .return_track import ReturnTrack
from .room import AudioCallback, SessionStats, StageRoom, WhipSession
from .settings import RtcSettings, rtc_configuration
from .sources import ToneTrack, file_track

__all__ = [
    "MAX_OFFER_BYTES",
    "AudioCallback",
    "MonoOpusTrack",
    "ReturnTrack",
    "RtcSettings",
    "SessionStats",
    "StageRoom",
    "ToneTrack",
    "WhipClient",
    "WhipError",
    "WhipSession",
    "file_track",
    "rtc_configuration",
    "validate_offer",
]
