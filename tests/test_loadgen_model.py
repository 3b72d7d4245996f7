"""The fluid model: known small cases, the code's own parameters, and the validation math."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from townhall.config import Config
from townhall.edge.nginx import PLAYLIST_TTL_SECONDS
from townhall.loadgen.model import (
    Scenario,
    active_edges,
    join_waits,
    part_overhead_bytes,
    playlist_fetch_rate,
    predict,
    standard_playlist_bytes,
)
from townhall.loadgen.validate import prediction_for, tier_of, validate
from townhall.packaging import PackagingConfig

NODE = Config()  # what a node runs by default
PART = NODE.part_frames * 1024 / 48000  # seconds per part
SEG = PART * NODE.parts_per_segment
PER_LISTENER = 2 / PART  # a blocking reload and a part per part
OVERHEAD = part_overhead_bytes(NODE.part_frames)
PAYLOAD = 64000 / 8 * PART
STD = PackagingConfig(part_frames=NODE.part_frames, parts_per_segment=NODE.parts_per_segment)
STD_SEG = STD.standard_group * SEG  # the standard-HLS variant's segment (4.096 s)


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


def test_standard_tier_rates_come_from_the_nginx_edge_and_the_standard_playlist() -> None:
    s = scenario(listeners=1000, edges=1, tier="std")
    assert s.std_segment == pytest.approx(STD_SEG) and s.playlist_ttl == PLAYLIST_TTL_SECONDS
    assert s.playlist_bytes == standard_playlist_bytes(STD.standard_group, SEG)
    assert 300 < s.playlist_bytes < 1000  # a handful of segments, no parts
    p = predict(s)
    assert p.listener_rps == pytest.approx(2 / STD_SEG)  # a reload and a segment per segment
    assert p.edge_rps_total == pytest.approx(1000 * 2 / STD_SEG)
    playlists = 1 / (PLAYLIST_TTL_SECONDS + 1)  # nginx: whole seconds, a request comes at once
    assert p.origin_rps == pytest.approx(playlists + 1 / STD_SEG)
    fragments = round(STD_SEG / PART)
    assert p.part_bytes == pytest.approx(64000 / 8 * STD_SEG + OVERHEAD * fragments)
    per_listener = (p.part_bytes + s.playlist_bytes + 2 * 220) / STD_SEG
    assert p.edge_egress_bps == pytest.approx(1000 * per_listener * 8)
    direct = predict(scenario(listeners=1000, edges=0, tier="std"))
    assert direct.origin_rps == direct.edge_rps_total == p.edge_rps_total
    huge = predict(scenario(listeners=10_000_000, edges=500, tier="std"))
    per_edge = 1 / (PLAYLIST_TTL_SECONDS + 1) + 1 / STD_SEG
    assert huge.origin_rps == pytest.approx(500 * per_edge)
    assert huge.edge_rps_total < predict(scenario(listeners=10_000_000, edges=500)).edge_rps_total


def test_playlist_fetch_rate_follows_nginx_whole_second_expiry() -> None:
    assert playlist_fetch_rate(1.0, 0.0) == 0.0
    assert playlist_fetch_rate(0.0, 5.0) == 5.0  # nothing kept: every request
    assert playlist_fetch_rate(1.0, 1e9) == pytest.approx(0.5)  # "1s" lasts to the 2nd boundary
    assert playlist_fetch_rate(2.0, 1e9) == pytest.approx(1 / 3)
    # a quiet edge also waits for the first request after the boundary
    slow = playlist_fetch_rate(1.0, 0.1)
    assert slow == pytest.approx(1 / (2 + 1 / math.expm1(0.1)))


def test_playlist_fetch_rate_by_simulation() -> None:
    """The closed form against a direct simulation of nginx's rule (seeded)."""
    rng = random.Random(7)
    for rate in (0.3, 2.0, 20.0):
        t, stale_at, fetches, horizon = 0.0, 0.0, 0, 20_000.0
        while t < horizon:
            t += rng.expovariate(rate)
            if t >= stale_at:  # stale (or never fetched): this request triggers a refresh
                fetches += 1
                stale_at = math.floor(t) + 1 + 1  # valid_sec = floor(t) + ttl; stale after it
        assert fetches / horizon == pytest.approx(playlist_fetch_rate(1.0, rate), rel=0.03)


def test_bad_scenarios_are_refused() -> None:
    with pytest.raises(ValueError):
        scenario(listeners=-1)
    with pytest.raises(ValueError):
        scenario(part=1.0, segment=0.5)
    with pytest.raises(ValueError):
        scenario(admit_rate=0.0)
    with pytest.raises(ValueError):
        scenario(tier="webrtc")
    for bad in ({"join_window": math.nan}, {"part": math.inf}, {"admit_rate": math.nan}):
        with pytest.raises(ValueError, match="finite"):
            scenario(**bad)
    with pytest.raises(ValueError, match="finite"):
        Scenario.with_defaults(listeners=10, edges=1, join_window=10.0, segment=math.nan)


def test_the_rate_that_admits_everyone_without_waiting_is_the_arrival_rate() -> None:
    waits = join_waits(1_000_000, 100.0, None, 50)
    assert waits.no_wait_admit_rate == 10_000.0 and waits.max == 0.0
    fast = join_waits(1_000_000, 100.0, waits.no_wait_admit_rate * 1.001, 200)
    assert fast.max < 0.6  # (a cohort's members spread over its 0.5 s)
    slow = join_waits(1_000_000, 100.0, 1_000.0, 200)
    assert slow.max > 800 and slow.no_wait_admit_rate == 10_000.0


def _report(
    edge: str | None,
    listeners: float,
    edge_rps: float,
    origin_rps: float | None,
    mode: str = "ll-hls",
) -> dict[str, Any]:
    return {
        "config": {"edge": edge, "ramp": 5.0, "mode": mode},
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


def test_validate_a_standard_hls_run() -> None:
    playlists = playlist_fetch_rate(PLAYLIST_TTL_SECONDS, 1000 / STD_SEG)
    run = _report("http://127.0.0.1:9", 1000, 1000 * 2 / STD_SEG, playlists + 1 / STD_SEG, "std")
    assert tier_of(run) == "std"
    result = validate(run, prediction_for(run))
    assert result.ok and all(c.error == pytest.approx(0, abs=1e-9) for c in result.checks)
    with pytest.raises(ValueError, match="hls"):
        prediction_for(_report(None, 10, 1.0, 1.0, "hls"))


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
    std = CliRunner().invoke(app, [*args, "--tier", "std", "--json", str(out)])
    assert std.exit_code == 0, std.output
    data = json.loads(out.read_text())
    assert data["scenario"]["tier"] == "std"
    assert data["listener_rps"] == pytest.approx(2 / STD_SEG)
    bad = CliRunner().invoke(app, ["--listeners", "10", "--tier", "webrtc"])
    assert bad.exit_code == 1 and "tier" in bad.output
    # without --admit-rate the gate's own pace: 10 M at 200/s is a long wait; 0 = no waiting room
    gated = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert gated.exit_code == 0, gated.output
    data = json.loads(out.read_text())
    assert data["scenario"]["admit_rate"] == NODE.admit_rate
    assert data["join_waits"]["last_admitted_at"] == pytest.approx(10_000_000 / NODE.admit_rate)
    open_gate = CliRunner().invoke(app, [*args, "--admit-rate", "0", "--json", str(out)])
    assert open_gate.exit_code == 0, open_gate.output
    assert json.loads(out.read_text())["join_waits"]["max"] == 0.0
