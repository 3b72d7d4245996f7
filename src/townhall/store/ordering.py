"""How space listings are ordered, shared by every backend."""

from __future__ import annotations

from datetime import datetime

from ..spaces.model import Space


def space_sort_key(space: Space) -> tuple[float, str]:
    """Soonest (or earliest started) first; ties by id for a stable order."""
    when: datetime | None = space.started_at or space.scheduled_start or space.created_at
    return (when.timestamp() if when else 0.0, space.id)
