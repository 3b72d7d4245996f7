"""A small real load test: a real node, a live space with silence, 50 simulated listeners
from 127.1.x addresses for ~10 s, straight to the origin."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from conftest import start_node
from townhall.cli.loadtest import loadtest
from townhall.loadgen.validate import prediction_for, validate

LISTENERS = 50


@pytest.mark.slow
def test_fifty_listeners_against_a_real_origin(tmp_path: Path) -> None:
    node = start_node(tmp_path / "data")
    try:
        key = node.add_user("lt")
        r = httpx.post(
            node.url + "/api/spaces",
            json={"title": "load"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        space = r.json()["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # nobody publishes: silence is the programme
            live = httpx.get(f"{node.url}/hls/{space}/live.m3u8", timeout=5)
            if live.status_code == 200 and live.text.count("#EXT-X-PART:") >= 3:
                break
            time.sleep(0.2)
        app = typer.Typer()
        app.command()(loadtest)
        out, png = tmp_path / "run.json", tmp_path / "run.png"
        result = CliRunner().invoke(
            app,
            [
                "--space", space, "--server", node.url, "--listeners", str(LISTENERS),
                "--ramp", "2", "--duration", "10", "--sources", "127.1.0.0/16",
                "--json", str(out),  # the PNG goes beside it by default
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        base = ["--server", node.url, "--listeners", "5", "--json", str(tmp_path / "x.json")]
        for extra, says in (
            (["--space", "nosuch"], "has no space 'nosuch'"),
            (["--space", space, "--edge", "edge.example:80"], "--edge: only http://"),
        ):
            refused = CliRunner().invoke(app, base + extra)
            assert refused.exit_code == 1 and says in refused.output, refused.output
        assert not (tmp_path / "x.json").exists()  # refused before any listener started
    finally:
        node.stop()
    refused = CliRunner().invoke(app, base + ["--space", space])
    assert refused.exit_code == 1 and "cannot reach --server" in refused.output, refused.output
    report = json.loads(out.read_text())
    s = report["summary"]
    assert set(report) == {"version", "config", "summary", "timeline"}
    for key in ("distinct_listeners", "server_listeners_current", "steady", "latency", "errors"):
        assert key in s
    assert s["errors_total"] == 0, s["errors"]
    assert s["stalls"] == 0 and s["stalls_at_end"] == 0
    assert s["listeners_joined"] == LISTENERS and s["listeners_with_media"] == LISTENERS
    assert s["distinct_listeners"] == LISTENERS
    # the origin counts distinct ticket subjects on media fetches (in memory without Redis)
    assert abs(s["server_listeners_current"] - LISTENERS) <= 0.02 * LISTENERS
    assert s["requests"]["join"] == LISTENERS and s["requests"]["init"] == LISTENERS
    assert s["latency"]["part"]["count"] >= LISTENERS * 8
    assert max(r["active"] for r in report["timeline"]) == LISTENERS
    assert png.stat().st_size > 10_000 and png.read_bytes().startswith(b"\x89PNG")
    # first hop == origin here; in a 5 s window a busy shared machine makes the programme
    # catch up in bursts, so only a coarse agreement with the model is asserted here (the
    # 10 % validation runs at 500+ listeners, see docs/loadtest.md)
    check = validate(report, prediction_for(report), tolerance=0.6)
    assert check.ok, check.to_dict()
    edge, origin = check.checks
    assert origin.measured is not None and edge.measured is not None
    assert abs(origin.measured - edge.measured) <= 0.1 * edge.measured
