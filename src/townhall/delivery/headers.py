"""Cache headers for LL-HLS (and standard HLS) through shared caches (CDN LL-HLS guidance)."""

from __future__ import annotations

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "audio/mp4"

IMMUTABLE = "public, max-age=31536000, immutable"
"""Parts, segments and init sections never change once they exist."""

LIVE_PLAYLIST = "public, max-age=1"
"""A plain live playlist changes every part: cache about half a part target at most."""

STANDARD_PLAYLIST = "public, max-age=1"
"""The standard-HLS playlist (``std.m3u8``) changes once a standard segment (about 4 s): a
cache keeps it a second at most, so a listener sees a new segment within a second."""

BLOCKING_PLAYLIST = "public, max-age=6"
"""A blocking reload's answer (``_HLS_msn``/``_HLS_part``) is only for that position: a cache
can keep it, and collapse every waiting request onto one origin fetch."""

VOD_PLAYLIST = "public, max-age=300"
"""The replay playlist is final once the space ended."""

NO_STORE = "no-store"
