"""Request and response bodies; unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class TargetBody(Strict):
    target: str = Field(min_length=1, max_length=200, description="Identity acted upon.")


class ReactionBody(Strict):
    emoji: str = Field(min_length=1, max_length=16)


class GrantRequest(Strict):
    subject: str | None = Field(default=None, max_length=200)
    grants: list[Literal["listen", "speak"]] = Field(default=["listen"], min_length=1)
    ttl: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)


class ClipRequest(Strict):
    seconds: float = Field(default=30.0, gt=0, le=300)


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


class SpaceView(BaseModel):
    id: str
    title: str
    description: str | None
    status: Literal["scheduled", "live", "ended"]
    visibility: str
    host: HostView
    scheduled_start: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    stage: list[dict[str, object]]
    urls: SpaceUrls


class SpaceCreated(SpaceView):
    host_token: str


class JoinResponse(BaseModel):
    listener_id: str
    ticket: str
    expires_at: int
    playlist_url: str
    state_url: str


class TokenResponse(BaseModel):
    token: str
    subject: str
    grants: list[str]
    expires_at: int
