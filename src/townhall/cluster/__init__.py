"""Several nodes sharing Redis: node identity, origin registry, cross-node events and
forwarding of media requests to the node that runs a space."""

from .bus import RedisEventBus
from .events import RemoteEvent
from .forward import FORWARDED_BY, Forwarder, was_forwarded
from .node import Cluster, embedded
from .registry import LocalRegistry, NodeInfo, RedisRegistry, Registry, node_identity

__all__ = [
    "FORWARDED_BY",
    "Cluster",
    "Forwarder",
    "LocalRegistry",
    "NodeInfo",
    "RedisEventBus",
    "RedisRegistry",
    "Registry",
    "RemoteEvent",
    "embedded",
    "node_identity",
    "was_forwarded",
]
