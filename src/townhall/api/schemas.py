"""Request and response bodies; unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..spaces import REACTIONS

REACTION_CHOICES = sorted({*REACTIONS, "\u2764"})
"""Accepted ``emoji`` values (the bare heart is an alias of the emoji heart)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceCreate(Strict):
    title: str = Field(min_length=1, max_length=120, description="Shown everywhere.")
    description: str | None = Field(default=None, max_length=1000)
    scheduled_start: datetime | None = Field(
        default=None, description="ISO 8601 with a timezone; omit to start now."
    )
    visibility: Literal["public", "unlisted", "ticketed"] = "public"


class Reschedule(Strict):
    scheduled_start: datetime = Field(description="ISO 8601 with a timezone.")


class JoinRequest(Strict):
    name: str | None = Field(default=None, max_length=60, description="Optional display name.")
    queue_ticket: str | None = Field(
        default=None,
        max_length=4096,
        description="The waiting room's queue ticket from an earlier 202: re-evaluates your "
        "place (admitted → 200 with a listener ticket).",
    )


class QueuedResponse(BaseModel):
    position: int
    eta_seconds: float
    poll_after: int
    queue_ticket: str


class TargetBody(Strict):
    target: str = Field(min_length=1, max_length=200, description="Identity acted upon.")


class ReactionBody(Strict):
    emoji: str = Field(
        min_length=1, max_length=16, json_schema_extra={"enum": list(REACTION_CHOICES)}
    )


class GrantRequest(Strict):
    subject: str | None = Field(default=None, max_length=200)
    grants: list[Literal["listen", "speak"]] = Field(default=["listen"], min_length=1)
    ttl: StrictInt = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)


class Reply(BaseModel):
    """A response body: the schema lists every member the route writes, and only those."""

    model_config = ConfigDict(extra="forbid")


class SpaceUrls(BaseModel):
    state_url: str
    playlist_url: str
    whip_url: str
    page_url: str
    replay_url: str


class HostView(BaseModel):
    id: str
    name: str
    verified: bool


class TrustView(BaseModel):
    verified_host: bool
    flags: list[dict[str, Any]]


class StageMember(Reply):
    id: str
    name: str
    role: Literal["host", "cohost", "speaker"]
    muted: bool


class SpaceView(BaseModel):
    id: str
    title: str
    description: str | None
    status: Literal["scheduled", "live", "ended"]
    visibility: Literal["public", "unlisted", "ticketed"]
    host: HostView
    scheduled_start: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    stage: list[StageMember]
    urls: SpaceUrls
    trust: TrustView | None = None


class SpaceCreated(SpaceView):
    host_token: str


class JoinResponse(BaseModel):
    listener_id: str
    ticket: str
    expires_at: int
    playlist_url: str
    std_playlist_url: str | None = Field(
        description="The standard-HLS playlist (longer segments, no LL-HLS) through a listener "
        "link: the same admission as the ticket (same listener, ticket id and expiry). Null "
        "when the listener id is too long for a link (over 129 bytes)."
    )
    state_url: str


class TokenResponse(BaseModel):
    token: str
    subject: str
    grants: list[str]
    expires_at: int


class SpaceList(Reply):
    spaces: list[SpaceView]


class StageActionResult(Reply):
    space: SpaceView
    events: list[dict[str, Any]] = Field(description="The events the action caused.")


class Person(Reply):
    id: str
    name: str


class StageQueue(Reply):
    requests: list[Person]
    invited: list[Person]


class ReactionAccepted(Reply):
    accepted: bool
    emoji: str


class SpeakerState(Reply):
    id: str
    name: str
    role: Literal["host", "cohost", "speaker"]
    muted: bool
    speaking: bool
    level_db: float | None


class ListenerFigures(Reply):
    current: int
    peak: int
    total: int


class StateDocument(Reply):
    id: str
    status: Literal["scheduled", "live", "ended"]
    title: str
    description: str | None
    visibility: Literal["public", "unlisted", "ticketed"]
    host: HostView
    scheduled_start: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    speakers: list[SpeakerState]
    requests: int
    listeners: ListenerFigures
    reactions: dict[str, int]
    urls: SpaceUrls
    trust: TrustView | None = None
    generated_at: datetime


class ClipCreated(Reply):
    url: str
    seconds: float
    bytes: int


class HealthStatus(Reply):
    status: Literal["ok", "ready"]
