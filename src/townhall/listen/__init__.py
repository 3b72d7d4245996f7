"""townhall.listen: follow an LL-HLS playlist like a low-latency player and measure it.

Pure cores: :mod:`.playlist` (parsing), :mod:`.schedule` (where to start, what to fetch),
:mod:`.stats` (latency percentiles, simulated playout and stalls); sync core: :mod:`.decode`
(PyAV, fMP4 AAC to PCM); asyncio adapter: :mod:`.follower`.
"""

from townhall.listen.decode import DecodeError, FragmentDecoder
from townhall.listen.follower import (
    ListenError,
    ListenReport,
    PartReceived,
    RetryPolicy,
    follow,
)
from townhall.listen.playlist import MediaPlaylist, PlaylistError, parse_media_playlist
from townhall.listen.stats import PlayoutClock, percentile, summarize

__all__ = [
    "DecodeError",
    "FragmentDecoder",
    "ListenError",
    "ListenReport",
    "MediaPlaylist",
    "PartReceived",
    "PlaylistError",
    "PlayoutClock",
    "RetryPolicy",
    "follow",
    "parse_media_playlist",
    "percentile",
    "summarize",
]
