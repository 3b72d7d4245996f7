"""Compare a load test's measured request rates with the fluid model's prediction.

    from townhall.loadgen.validate import validate, prediction_for
    report = json.loads(Path("run.json").read_text())
    result = validate(report, prediction_for(report))
    print(result.to_dict())          # errors in %, ok = both within 10 %

``prediction_for`` builds the :class:`~townhall.loadgen.model.Scenario` the run corresponds to
(its steady-state listeners, one edge if it used ``--edge``, none otherwise); pass your own
:class:`~townhall.loadgen.model.Prediction` (or its ``to_dict()``) to check something else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .model import TIERS, Prediction, Scenario, predict

TOLERANCE = 0.10
"""The model must match measured rates within 10 %."""


@dataclass(frozen=True)
class Check:
    """One predicted figure against its measurement."""

    name: str
    """``edge_rps`` or ``origin_rps``."""
    predicted: float
    """Model value."""
    measured: float | None
    """Load test value (None if the run could not measure it)."""
    error: float | None
    """(measured - predicted) / predicted."""
    ok: bool
    """Within the tolerance."""


@dataclass(frozen=True)
class Validation:
    """The outcome for one run."""

    listeners: float
    """Steady-state listeners of the run (the model's input)."""
    edges: int
    """Edges the model assumed."""
    checks: tuple[Check, ...]
    """Edge and origin request rate checks."""
    tolerance: float
    """Allowed relative error."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def load(report: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    """A report from a mapping or a JSON file."""
    if isinstance(report, str | Path):
        loaded: dict[str, Any] = json.loads(Path(report).read_text())
        return loaded
    return report


def tier_of(report: Mapping[str, Any] | str | Path) -> str:
    """The model tier of a report's run; ValueError for a mode the model does not know."""
    mode = str(load(report)["config"].get("mode") or "ll-hls")
    if mode not in TIERS:  # ``hls`` (standard HLS over the LL-HLS playlist) is no product tier
        raise ValueError(f"the model has no cadence for load-test mode {mode!r}")
    return mode


def prediction_for(report: Mapping[str, Any] | str | Path) -> Prediction:
    """The model's prediction for the run a report describes."""
    doc = load(report)
    steady = doc["summary"]["steady"]
    edges = 1 if doc["config"].get("edge") else 0
    scenario = Scenario.with_defaults(
        listeners=round(steady["listeners"]),
        edges=edges,
        join_window=float(doc["config"].get("ramp") or 0.0),
        tier=tier_of(doc),
    )
    return predict(scenario)


def _check(name: str, predicted: float, measured: float | None, tolerance: float) -> Check:
    if measured is None or predicted <= 0:
        return Check(name, predicted, measured, None, False)
    error = (measured - predicted) / predicted
    return Check(name, predicted, measured, error, abs(error) <= tolerance)


def validate(
    report: Mapping[str, Any] | str | Path,
    prediction: Prediction | Mapping[str, Any],
    tolerance: float = TOLERANCE,
) -> Validation:
    """Relative error of the predicted edge (first hop) and origin request rates against a
    load test's steady state."""
    doc = load(report)
    steady = doc["summary"]["steady"]
    pred = prediction.to_dict() if isinstance(prediction, Prediction) else dict(prediction)
    scenario = pred["scenario"]
    edges = int(scenario["edges"] if isinstance(scenario, Mapping) else scenario.edges)
    return Validation(
        listeners=float(steady["listeners"]),
        edges=edges,
        checks=(
            _check("edge_rps", float(pred["edge_rps_total"]), steady["edge_rps"], tolerance),
            _check("origin_rps", float(pred["origin_rps"]), steady["origin_rps"], tolerance),
        ),
        tolerance=tolerance,
    )
