"""The fluid model (``townhall simulate``) against the load tests measured above.

For every load test this process ran in a mode the model knows (LL-HLS listeners, and the
standard-HLS variant through an nginx edge: ``origin_independence``, ``icecast_compare``,
``livekit_room``; else the reports left in ``bench/results/loadtests/``; else three short runs
of its own: LL-HLS through a Varnish edge and straight to the origin, standard HLS through an
nginx edge), ``townhall simulate`` is run for the same configuration (steady-state listeners,
1 edge or none, the ramp as join window, the node's real part and segment durations, the
tier) and :func:`townhall.loadgen.validate.validate` compares its edge (first hop) and origin
request rates with the measured ones (target: within 10 %).
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from townhall.config import Config
from townhall.loadgen.runner import LoadSettings
from townhall.loadgen.validate import prediction_for, tier_of, validate

from . import edge as edge_mod
from .common import TOWNHALL, BenchResult, Figure, open_stage
from .edge import (
    LOADTESTS,
    SATURATED_SHARE,
    loadavg,
    loadtest,
    node_process,
    running_edge,
    speakers,
    wait_segments,
)

logger = logging.getLogger(__name__)

NAME = "simulate_validation"
TARGET_ERROR_PCT = 10.0
AAC_FRAME = 1024
RATE = 48_000


def node_timing() -> tuple[float, float]:
    """(part, segment) seconds the node really packages (``townhall.config.Config``)."""
    fields = Config.__dataclass_fields__
    frames = fields["part_frames"].default
    per_segment = fields["parts_per_segment"].default
    assert isinstance(frames, int) and isinstance(per_segment, int)
    part = frames * AAC_FRAME / RATE
    return part, part * per_segment


def simulate(
    listeners: int, edges: int, window: float, part: float, segment: float, tier: str
) -> Any:
    """``townhall simulate`` for one configuration; its prediction (JSON)."""
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        out = Path(tmp) / "prediction.json"
        subprocess.run(
            [*TOWNHALL, "simulate", "--listeners", str(listeners), "--edges", str(edges)]
            + ["--join-window", str(window), "--part", f"{part:.6f}", "--segment", f"{segment}"]
            + ["--tier", tier, "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(out.read_text())


def _runs(quick: bool) -> tuple[list[tuple[str, Path]], str]:
    if edge_mod.RUNS:
        return list(edge_mod.RUNS), "load tests run by this invocation"
    files = sorted(LOADTESTS.glob("*.json")) if LOADTESTS.exists() else []
    if files:
        return [(p.stem, p) for p in files], f"reports found in {LOADTESTS} (earlier runs)"
    _own_runs(quick)
    return list(edge_mod.RUNS), "its own short runs (nothing else was measured)"


def _own_runs(quick: bool) -> None:
    via_edge, direct, std = (200, 50, 300) if quick else (500, 100, 1000)
    duration = 20.0 if quick else 30.0

    def run(label: str, space: str, node: str, n: int, edge: str | None, mode: str) -> None:
        settings = LoadSettings(
            space=space, server=node, edge=edge, listeners=n, ramp=3.0, duration=duration, mode=mode
        )
        loadtest(label, settings)

    with node_process(NAME) as node:
        stage = open_stage(node, 1)
        with speakers(stage.whip_url, [stage.seats[0].token], 400.0):
            wait_segments(stage.playlist_url)
            with running_edge(node.url, node.data / "keys.json") as edge:
                run(
                    f"{NAME}-edge-{via_edge}",
                    stage.space_id,
                    node.url,
                    via_edge,
                    edge.url,
                    "ll-hls",
                )
                run(f"{NAME}-direct-{direct}", stage.space_id, node.url, direct, None, "ll-hls")
            keys = node.data / "keys.json"
            with running_edge(node.url, keys, name="bench-nginx", kind="nginx") as edge:
                run(f"{NAME}-std-nginx-{std}", stage.space_id, node.url, std, edge.url, "std")


def run(quick: bool) -> BenchResult:
    part, segment = node_timing()
    result = BenchResult(
        NAME,
        "`townhall simulate` (fluid model) vs measured first-hop and origin request rates of "
        "the load tests (LL-HLS on Varnish or direct, standard HLS on nginx), via "
        "townhall.loadgen.validate (target: within 10 %)",
    )
    runs, source = _runs(quick)
    checks: list[dict[str, Any]] = []
    skipped: list[str] = []
    for label, path in runs:
        doc = json.loads(path.read_text())
        config = doc["config"]
        try:
            tier = tier_of(doc)
        except ValueError as exc:
            skipped.append(f"{label} ({exc})")
            continue
        steady = doc["summary"]["steady"]
        listeners = round(steady["listeners"])
        s = doc["summary"]
        got = max(1, int(s["listeners_with_media"]))
        stalled = s.get("listeners_stalled")
        share = (int(s["stalls"]) if stalled is None else int(stalled)) / got
        edges = 1 if config.get("edge") else 0
        window = float(config.get("ramp") or 0.0)
        prediction = simulate(listeners, edges, window, part, segment, tier)
        v = validate(doc, prediction)
        default = validate(doc, prediction_for(doc))
        checks.append(
            {
                "label": label,
                "report": str(path),
                "listeners": listeners,
                "edges": edges,
                "tier": tier,
                "stalls": doc["summary"]["stalls"],
                "stalled_share": share,
                "saturated": share > SATURATED_SHARE,
                "machine_busy": doc["summary"]["machine_busy"],
                "validation": v.to_dict(),
                "prediction_for_default_errors": {c.name: c.error for c in default.checks},
            }
        )
    errors: dict[str, list[float]] = {"edge_rps": [], "origin_rps": []}
    for c in checks:
        for check in c["validation"]["checks"]:
            if check["error"] is not None and not c["saturated"]:
                errors[check["name"]].append(abs(check["error"]) * 100)
        row = {ch["name"]: ch for ch in c["validation"]["checks"]}
        for name in ("edge_rps", "origin_rps"):
            ch = row[name]
            err = None if ch["error"] is None else ch["error"] * 100
            tag = " (SATURATED run)" if c["saturated"] else ""
            result.figures.append(Figure(f"{c['label']}{tag}: {name} error", err, "%"))
    result.figures += [
        Figure(
            "worst |error|, first hop (edge) req/s, unsaturated runs",
            max(errors["edge_rps"]) if errors["edge_rps"] else None,
            "%",
            TARGET_ERROR_PCT,
        ),
        Figure(
            "worst |error|, origin req/s, unsaturated runs",
            max(errors["origin_rps"]) if errors["origin_rps"] else None,
            "%",
            TARGET_ERROR_PCT,
        ),
    ]
    result.raw.update(
        {
            "runs_from": source,
            "part_s": part,
            "segment_s": segment,
            "checks": checks,
            "skipped": skipped,
            "loadavg_end": loadavg(),
        }
    )
    result.notes.append(f"runs compared: {source}; part {part:.5f} s, segment {segment:.3f} s")
    if skipped:
        result.notes.append("not modelled: " + "; ".join(skipped))
    result.notes.append(
        "a run in which more than 1 % of the listeners stalled (saturated cores) sends fewer "
        "requests than the steady cadence the model describes: its errors are listed but kept "
        "out of the worst-error figures (they measure the saturation, not the model)"
    )
    return result
