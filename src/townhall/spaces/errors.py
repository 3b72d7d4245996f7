"""Domain errors raised by the spaces state machine."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Machine-readable reasons an action was refused (a ``str``: compare with plain strings)."""

    NOT_ALLOWED = "not_allowed"
    """The actor's role does not permit this action."""
    BLOCKED = "blocked"
    """The actor (or the target) is blocked from the space."""
    WRONG_STATE = "wrong_state"
    """The action is not possible in the space's current state (e.g. after it ended)."""
    STAGE_FULL = "stage_full"
    """No speaker seat is left on the stage."""
    COHOSTS_FULL = "cohosts_full"
    """Both co-host seats are taken."""
    QUEUE_FULL = "queue_full"
    """The queue of pending speak requests is at its limit."""
    CONFLICT = "conflict"
    """The action contradicts the current state (already on stage, already muted, ...)."""
    NOT_ON_STAGE = "not_on_stage"
    """The actor or target is not on the stage."""
    NOT_COHOST = "not_cohost"
    """The target is not a co-host."""
    NO_SUCH_REQUEST = "no_such_request"
    """There is no pending speak request from that identity."""
    NO_SUCH_INVITE = "no_such_invite"
    """There is no pending invitation for that identity."""
    INVALID = "invalid"
    """Malformed input: bad title, naive datetime, unknown reaction, empty identity, ..."""


_HTTP_STATUS: dict[str, int] = {
    ErrorCode.NOT_ALLOWED: 403,
    ErrorCode.BLOCKED: 403,
    ErrorCode.WRONG_STATE: 409,
    ErrorCode.STAGE_FULL: 409,
    ErrorCode.COHOSTS_FULL: 409,
    ErrorCode.QUEUE_FULL: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.NOT_ON_STAGE: 404,
    ErrorCode.NOT_COHOST: 404,
    ErrorCode.NO_SUCH_REQUEST: 404,
    ErrorCode.NO_SUCH_INVITE: 404,
    ErrorCode.INVALID: 422,
}


class SpaceError(Exception):
    """An action or a creation was refused; nothing changed.

    ``code`` is stable and machine-readable (one of :class:`ErrorCode`), ``detail`` is a
    precise human-readable sentence.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def http_status(self) -> int:
        """The HTTP status an API adapter should answer with (409 for unknown codes)."""
        return _HTTP_STATUS.get(self.code, 409)

    def __repr__(self) -> str:
        return f"SpaceError(code={self.code!r}, detail={self.detail!r})"
