"""The one exception the stage raises toward the HTTP layer."""

from __future__ import annotations

__all__ = ["WhipError"]


class WhipError(Exception):
    """A WHIP request the stage refuses; ``status`` is the HTTP status to answer with.

    400 malformed offer, 403 someone else's session, 404 unknown session,
    409 conflicting state, 413 offer too large, 422 unacceptable offer (no audio,
    no Opus, video), 500 the peer connection could not be set up.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
