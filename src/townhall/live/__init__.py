"""The media plane of one node: live spaces wired stage → mixer → packager → origin."""

from .hub import MediaHub
from .space import LiveSpace

__all__ = ["LiveSpace", "MediaHub"]
