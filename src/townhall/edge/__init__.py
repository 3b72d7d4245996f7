"""Edge tier on existing cache software: Varnish configuration, process management and the
listener log shipper (edge access logs → Redis HyperLogLogs)."""

from .settings import EdgeKey, EdgeSettings, EdgeSettingsError, load_edge_keys, parse_origin
from .varnish import render_vcl

__all__ = [
    "EdgeKey",
    "EdgeSettings",
    "EdgeSettingsError",
    "load_edge_keys",
    "parse_origin",
    "render_vcl",
]
