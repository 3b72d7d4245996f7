"""The watch: observations in, a verdict per 10-second window out (a pure core).

Adapters call :meth:`Watch.observe` for every request the gate, the origin or an edge
answered, :meth:`Watch.observe_connections` and :meth:`Watch.observe_origin` about once a
second, and :meth:`Watch.tick` once a second. Windows are aligned to multiples of the window
length in unix time. A closed window gets a final verdict; from ``min_duration`` seconds into
an open window, each tick also judges it provisionally, so a strong attack is named within a
few seconds rather than at the window's end. About an hour of window summaries is kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from .features import Baseline, Features, FeatureWindow, JoinFigures, SpaceFigures
from .observations import ConnectionSample, Observation, OriginSample
from .verdict import Verdict, WatchThresholds, classify

ADVICE = {
    "join_flood": "block the sources listed (or tighten the per-source join limit); the "
    "waiting room keeps admitting the crowd meanwhile",
    "forged_tickets": "the gate rejects these already; if the origin suffers, verify tickets at "
    "the edges and block the networks listed",
    "cache_busting": "normalise URLs at the edges (drop query strings, refuse unknown names "
    "without asking the origin) and block the sources listed",
    "playlist_hammering": "revoke the tickets listed and rate-limit requests per ticket",
    "slowloris": "lower header and idle timeouts at the edges and cap connections per source",
}


@dataclass(frozen=True)
class WindowSummary:
    """What is kept of a closed window for the timeline."""

    verdict: Verdict
    """Its final verdict."""
    requests: int
    """Requests observed."""
    sources: int
    """Distinct sources."""
    networks: int
    """Distinct networks."""
    joins: JoinFigures
    """Join attempts and outcomes."""
    listeners: int
    """Distinct valid tickets that made requests."""
    origin_rps: float
    """Mean origin requests per second."""
    origin_cpu: float
    """Highest origin CPU, cores."""
    open_connections: int
    """Open connections (all servers)."""
    spaces: dict[str, SpaceFigures]
    """Per-space figures (the busiest spaces)."""
    mitigations: dict[str, Any]
    """Suggested mitigations (empty lists when there was no attack)."""

    def row(self, space: str | None = None) -> dict[str, Any]:
        """One timeline row, for one space's joins and listeners when ``space`` is given."""
        v = self.verdict
        if space is None:
            joins = {
                "attempts": self.joins.attempts,
                "admitted": self.joins.admitted,
                "queued": self.joins.queued,
                "refused": self.joins.refused,
            }
            listeners = self.listeners
        else:
            figures = self.spaces.get(space, SpaceFigures())
            joins = {
                "attempts": figures.joins,
                "admitted": figures.admitted,
                "queued": figures.queued,
                "refused": figures.refused,
            }
            listeners = figures.listeners
        return {
            "start": v.window_start,
            "label": v.label,
            "attacks": list(v.attacks),
            "confidence": v.confidence,
            "requests": self.requests,
            "sources": self.sources,
            "networks": self.networks,
            "joins": joins,
            "listeners": listeners,
            "origin_rps": round(self.origin_rps, 2),
            "origin_cpu": round(self.origin_cpu, 3),
            "open_connections": self.open_connections,
            "evidence": list(v.evidence) if v.label != "normal" else [],
        }


def headline(verdict: Verdict) -> str:
    """One line for a console: label, attack kinds, confidence and the first evidence."""
    words = {
        "normal": "Normal",
        "flash_crowd": "Flash crowd",
        "attack": "Attack",
        "both": "Flash crowd and attack",
    }
    kinds = (
        f" ({', '.join(k.replace('_', ' ') for k in verdict.attacks)})" if verdict.attacks else ""
    )
    first = f": {verdict.evidence[0]}" if verdict.evidence else ""
    return f"{words[verdict.label]}{kinds}, {verdict.confidence * 100:.0f} % sure{first}"


def mitigations(features: Features, verdict: Verdict) -> dict[str, Any]:
    """What an operator could do about the attacks of ``verdict``, with the offenders."""
    s = features.suspects
    active = bool(verdict.attacks)
    return {
        "active": active,
        "window_start": verdict.window_start,
        "block_sources": [
            {"source": src, "requests": count, "reasons": reasons.split(",")}
            for src, count, reasons in (s.offenders if active else ())
        ],
        "block_networks": [
            {"network": net, "requests": count, "suspect_sources": sources}
            for net, count, sources in (s.offender_networks if active else ())
        ],
        "revoke_tickets": [
            {"listener": subject, "requests_per_second": round(per_second, 2)}
            for subject, per_second in (
                s.top_hammer_tickets if "playlist_hammering" in verdict.attacks else ()
            )
        ],
        "connection_holders": [
            {"source": src, "open_connections": count}
            for src, count in (
                features.connection_top_sources if "slowloris" in verdict.attacks else ()
            )
        ],
        "advice": [ADVICE[kind] for kind in verdict.attacks if kind in ADVICE],
    }


class Watch:
    """Feeds windows, closes them into verdicts, keeps the timeline (see the module doc)."""

    def __init__(
        self,
        *,
        thresholds: WatchThresholds | None = None,
        window: float = 10.0,
        keep: int = 360,
        max_keys: int = 200_000,
        baseline: Baseline | None = None,
        max_spaces_kept: int = 200,
    ) -> None:
        self.thresholds = thresholds or WatchThresholds()
        self.window = window
        self.keep = keep
        self.max_keys = max_keys
        self.baseline = baseline or Baseline()
        self.max_spaces_kept = max_spaces_kept
        self.timeline: deque[WindowSummary] = deque(maxlen=keep)
        self._open: FeatureWindow | None = None
        self._pending: list[Verdict] = []
        self._latest: tuple[Verdict, Features] | None = None
        self._provisional: tuple[Verdict, Features] | None = None
        self._last_provisional = -math.inf
        self.closed = 0
        """Windows closed so far."""

    # -- feeding ----------------------------------------------------------------------------

    def observe(self, obs: Observation, count: int = 1) -> None:
        """Count one answered request, ``count`` times when it stands for a sample (late ones
        count in the open window)."""
        self._window_for(obs.at).add(obs, count)

    def observe_connections(self, sample: ConnectionSample) -> None:
        """Count one server's connection sample."""
        self._window_for(sample.at).add_connections(sample)

    def observe_origin(self, sample: OriginSample) -> None:
        """Count one origin load sample."""
        self._window_for(sample.at).add_origin(sample)

    def tick(self, now: float) -> list[Verdict]:
        """Close the windows that ended by ``now`` (final verdicts, oldest first), then, once a
        second, judge the open window provisionally (``final=False``, last in the list)."""
        self._window_for(now)
        out, self._pending = self._pending, []
        w = self._open
        assert w is not None
        if now - w.start >= self.thresholds.min_duration and now - self._last_provisional >= 1.0:
            features = w.features(now, self.thresholds)
            verdict = dataclasses.replace(
                classify(features, self.baseline.stats(), self.thresholds), final=False
            )
            self._provisional = (verdict, features)
            self._last_provisional = now
            out.append(verdict)
        return out

    def _window_for(self, at: float) -> FeatureWindow:
        w = self._open
        if w is None:
            w = self._open = self._new(self._start_of(at))
        elif at >= w.start + self.window:
            self._close_until(at)
            w = self._open
            assert w is not None
        return w

    def _start_of(self, at: float) -> float:
        return math.floor(at / self.window) * self.window

    def _new(self, start: float) -> FeatureWindow:
        return FeatureWindow(start, self.baseline, length=self.window, max_keys=self.max_keys)

    def _close_until(self, now: float) -> None:
        w = self._open
        assert w is not None
        while w.start + self.window <= now:
            self._close(w)
            start = w.start + self.window
            # after a long silence, do not invent more empty windows than are kept
            start = max(start, self._start_of(now) - self.keep * self.window)
            w = self._new(start)
        self._open = w

    def _close(self, w: FeatureWindow) -> None:
        features = w.features(w.start + self.window, self.thresholds)
        verdict = classify(features, self.baseline.stats(), self.thresholds)
        self.baseline.learn(w, features, verdict)
        busiest = sorted(
            features.spaces.items(), key=lambda item: -(item[1].joins + item[1].listeners)
        )[: self.max_spaces_kept]
        self.timeline.append(
            WindowSummary(
                verdict=verdict,
                requests=features.requests,
                sources=features.sources,
                networks=features.networks,
                joins=features.joins,
                listeners=features.listeners,
                origin_rps=features.origin_rps,
                origin_cpu=features.origin_cpu,
                open_connections=features.open_connections,
                spaces=dict(busiest),
                mitigations=mitigations(features, verdict),
            )
        )
        self._pending.append(verdict)
        self._latest = (verdict, features)
        self._provisional = None
        self._last_provisional = -math.inf
        self.closed += 1

    # -- reading ----------------------------------------------------------------------------

    def latest(self) -> tuple[Verdict, Features] | None:
        """The newest verdict and its features: the provisional one of the open window when
        there is one, else the last closed window's."""
        return self._provisional or self._latest

    def current(self, space: str | None = None) -> dict[str, Any]:
        """A JSON-ready picture: the latest verdict and its evidence, a headline, a features
        digest, the timeline (one row per closed window, for ``space`` when given), the
        suggested mitigations, the baseline and the thresholds."""
        latest = self.latest()
        mitigation: dict[str, Any] = {"active": False, "advice": []}
        if latest is not None:
            mitigation = mitigations(latest[1], latest[0])
            if not mitigation["active"]:
                # an attack in the last minute still deserves its mitigations
                for summary in list(self.timeline)[-6:][::-1]:
                    if summary.mitigations.get("active"):
                        mitigation = summary.mitigations
                        break
        return {
            "window_seconds": self.window,
            "space": space,
            "verdict": latest[0].as_dict() if latest else None,
            "headline": headline(latest[0]) if latest else "No traffic judged yet",
            "features": latest[1].summary() if latest else None,
            "timeline": [summary.row(space) for summary in self.timeline],
            "mitigations": mitigation,
            "baseline": dataclasses.asdict(self.baseline.stats()),
            "thresholds": self.thresholds.as_dict(),
        }
