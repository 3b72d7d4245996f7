"""The fluid model: known small cases, the code's own parameters, and the validation math."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from townhall.config import Config
from townhall.loadgen.model import Scenario, active_edges, join_waits, part_overhead_bytes, predict
from townhall.loadgen.validate import prediction_for, validate
from townhall.packaging import PackagingConfig

NODE = Config()  # what a node runs by default
PART = NODE.part_frames * 1024 / 48000  # seconds per part
SEG = PART * NODE.parts_per_segment
PER_LISTENER = 2 / PART  # a blocking reload and a part per part
OVERHEAD = part_overhead_bytes(NODE.part_frames)
PAYLOAD = 64000 / 8 * PART


def scenario(**kw: Any) -> Scenario:
    base: dict[str, Any] = {"listeners": 500, "edges": 1, "join_window": 10.0}
    base.update(kw)
    return Scenario.with_defaults(**base)


def test_defaults_come_from_the_packaging_code() -> None:
    cfg = PackagingConfig(part_frames=NODE.part_frames, parts_per_segment=NODE.parts_per_segment)
    s = scenario()
    assert s.part == cfg.part_target == PART and s.segment == cfg.segment_duration == 2.048
    assert s.bitrate == cfg.bitrate
    # moof(8) + mfhd(16) + traf(8) + tfhd(16) + tfdt(20) + trun(20 + 24 x 8) + mdat header(8)
    assert part_overhead_bytes(24) == 288


def test_request_rates_direct_and_through_edges() -> None:
    p = predict(scenario(listeners=500, edges=0))
    assert p.listener_rps == pytest.approx(PER_LISTENER)
    assert p.edge_rps_total == pytest.approx(500 * PER_LISTENER)
    assert p.origin_rps == p.edge_rps_total  # no edge: the origin sees everything
    p = predict(scenario(listeners=10_000_000, edges=500))
    assert p.edge_rps_per_edge == pytest.approx(20_000 * PER_LISTENER)
    assert p.active_edges == pytest.approx(500)
    assert p.origin_rps == pytest.approx(500 * PER_LISTENER)  # one fetch per object per edge
    with_segments = predict(
        Scenario(**{**p.scenario.__dict__, "segment_fraction": 0.5})  # some fetch segments
    )
    assert with_segments.origin_rps == pytest.approx(500 * (PER_LISTENER + 1 / SEG))


def test_few_listeners_leave_edges_idle() -> None:
    assert active_edges(1, 2) == pytest.approx(1.0)
    assert active_edges(0, 10) == 0.0
    assert active_edges(10, 1000) == pytest.approx(1000 * (1 - 0.999**10))


def test_bandwidth_per_listener() -> None:
    p = predict(scenario(listeners=1, edges=0))
    assert p.part_bytes == pytest.approx(PAYLOAD + OVERHEAD)
    per_part = PAYLOAD + OVERHEAD + 1100 + 2 * 220
    assert p.edge_egress_bps == pytest.approx(per_part * 8 / PART)


def test_join_waits_fluid_queue() -> None:
    w = join_waits(1000, 10.0, 50.0, cohorts=1000)  # 100/s arrive, 50/s admitted
    assert w.p50 == pytest.approx(5.0, abs=0.05)  # arrival x waits x (1/50 - 1/100)
    assert w.p99 == pytest.approx(9.9, abs=0.05)
    assert w.max == pytest.approx(10.0, abs=0.01)
    assert w.last_admitted_at == pytest.approx(20.0, abs=0.01)
    assert w.peak_queue == pytest.approx(500, rel=0.01)
    fast = join_waits(1000, 10.0, 500.0, cohorts=1000)
    assert fast.max == 0.0 and fast.p99 == 0.0
    none = join_waits(1000, 10.0, None, cohorts=1000)
    assert none.p50 == 0.0


def test_bad_scenarios_are_refused() -> None:
    with pytest.raises(ValueError):
        scenario(listeners=-1)
    with pytest.raises(ValueError):
        scenario(part=1.0, segment=0.5)
    with pytest.raises(ValueError):
        scenario(admit_rate=0.0)


def _report(
    edge: str | None, listeners: float, edge_rps: float, origin_rps: float | None
) -> dict[str, Any]:
    return {
        "config": {"edge": edge, "ramp": 5.0},
        "summary": {
            "steady": {"listeners": listeners, "edge_rps": edge_rps, "origin_rps": origin_rps}
        },
    }


def test_validate_reports_relative_error(tmp_path: Path) -> None:
    edge_rps, origin_rps = 0.99 * 500 * PER_LISTENER, 0.985 * PER_LISTENER  # as measured here
    good = _report("http://127.0.0.1:9", 500, edge_rps, origin_rps)
    result = validate(good, prediction_for(good))
    assert result.ok and result.edges == 1
    edge, origin = result.checks
    assert edge.error == pytest.approx(edge_rps / (500 * PER_LISTENER) - 1)
    assert origin.error == pytest.approx(origin_rps / PER_LISTENER - 1)
    bad = _report(None, 500, 650.0, 653.0)  # an origin that could not keep up
    path = tmp_path / "run.json"
    path.write_text(json.dumps(bad))
    result = validate(path, prediction_for(path).to_dict())
    assert not result.ok and result.to_dict()["ok"] is False
    assert result.checks[0].error == pytest.approx(650 / (500 * PER_LISTENER) - 1)
    missing = _report(None, 500, 500 * PER_LISTENER, None)
    assert not validate(missing, prediction_for(missing)).ok


def test_simulate_command_prints_and_writes_json(tmp_path: Path) -> None:
    import typer

    from townhall.cli.loadtest import simulate

    app = typer.Typer()
    app.command()(simulate)
    out = tmp_path / "sim.json"
    args = ["--listeners", "10000000", "--edges", "500", "--join-window", "120"]
    result = CliRunner().invoke(app, [*args, "--admit-rate", "50000", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["origin_rps"] == pytest.approx(500 * PER_LISTENER)
    assert data["edge_rps_per_edge"] == pytest.approx(20_000 * PER_LISTENER)
    # 83,333 arrive per second, 50,000 admitted: the last arrival waits 200 - 120 s
    assert data["join_waits"]["max"] == pytest.approx(80.0, rel=0.01)
    bad = CliRunner().invoke(app, ["--listeners", "10", "--part", "0"])
    assert bad.exit_code == 1
