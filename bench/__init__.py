"""townhall benchmarks: ``python -m bench [--only NAME ...] [--quick]`` (``make bench``).

Each benchmark starts its own node on 127.0.0.1, drives it with real peers and listeners,
prints its figures and returns them; :mod:`bench.__main__` writes ``bench/results/``.
Targets are reported next to the figures, never asserted.
"""
