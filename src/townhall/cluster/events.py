"""Space events that arrived from another node, as JSON dicts, read like the event objects."""

from __future__ import annotations

from typing import Any


class RemoteEvent:
    """Attribute access over an event dict (``kind``, ``identity``, …) for the media hub."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def kind(self) -> str:
        return str(self._data.get("kind", ""))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"RemoteEvent({self._data!r})"
