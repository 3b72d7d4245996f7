"""The watch core's bookkeeping: network keys, entropy, windows, bounded memory, the JSON
picture, Prometheus metrics and the HTML report."""

from __future__ import annotations

import json
import random
import re

import pytest
from prometheus_client import generate_latest

import traffic as tr
from townhall.api.metrics import REGISTRY
from townhall.cli.report import incidents, render_report
from townhall.gate.network import network_of
from townhall.watch.features import Baseline, FeatureWindow, entropy, fast_network
from townhall.watch.metrics import publish
from townhall.watch.observations import ConnectionSample, Observation
from townhall.watch.verdict import classify
from townhall.watch.watch import Watch

T0 = 1_700_000_000.0


def test_fast_network_agrees_with_network_of() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        address = ".".join(str(rng.randint(0, 255)) for _ in range(4))
        assert fast_network(address) == network_of(address)
    for address in ("2001:db8:1:2::5", "::ffff:203.0.113.7", "not-an-ip"):
        assert fast_network(address) == network_of(address)


def test_entropy_is_normalised() -> None:
    assert entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert entropy([100]) == 0.0
    assert 0.0 < entropy([1000, 1, 1, 1]) < 0.2


def test_windows_align_and_late_observations_count() -> None:
    watch = Watch()
    watch.observe(Observation(T0 + 3, "join", "10.0.0.1", "admitted", "a", "s"))
    assert watch.tick(T0 + 9.5)[-1].final is False  # provisional, window still open
    watch.observe(Observation(T0 + 9.9, "join", "10.0.0.2", "queued", None, "s"))
    watch.observe(Observation(T0 + 10.2, "join", "10.0.0.3", "admitted", "c", "s"))
    verdicts = watch.tick(T0 + 10.5)
    assert [v.final for v in verdicts] == [True]
    closed = watch.timeline[-1]
    assert closed.verdict.window_start == T0
    assert (closed.joins.attempts, closed.joins.admitted, closed.joins.queued) == (2, 1, 1)
    # a late observation of the closed window counts in the open one
    watch.observe(Observation(T0 + 8, "join", "10.0.0.4", "admitted", "d", "s"))
    watch.tick(T0 + 20)
    assert watch.timeline[-1].joins.attempts == 2


def test_timeline_is_bounded_and_a_long_silence_invents_no_hours() -> None:
    watch = Watch(keep=360)
    rng = random.Random(2)
    for s in range(4000):
        watch.observe(
            Observation(
                T0 + s,
                "media",
                f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1",
                "served",
                f"l{s % 7}",
                "s",
            )
        )
        if s % 10 == 0:
            watch.tick(T0 + s)
    assert len(watch.timeline) == 360
    closed = watch.closed
    watch.tick(T0 + 4000 + 7 * 24 * 3600)  # a week of silence
    assert watch.closed - closed <= 361
    assert len(watch.timeline) == 360
    assert watch.timeline[-1].verdict.evidence == ("no traffic",)


def test_window_tables_and_baseline_are_capped() -> None:
    baseline = Baseline(max_networks=1000, max_subjects=500)
    window = FeatureWindow(T0, baseline, max_keys=2000)
    for i in range(10_000):
        source = f"{11 + i % 180}.{(i // 180) % 256}.{i % 251}.9"
        window.add(Observation(T0 + 1, "media", source, "served", f"t{i}", "s"))
    assert len(window.src_requests) <= 2001
    assert len(window.ticket_requests) <= 2000
    features = window.features(T0 + 10)
    assert features.capped and features.requests == 10_000

    baseline.learn(window, features, classify(features, baseline.stats()))
    assert len(baseline) <= 1000 + 500


def test_current_is_json_and_metrics_follow_the_verdict() -> None:
    rng = random.Random(4)
    watch = Watch()
    events = tr.merge(
        tr.audience(rng, T0, 40.0, listeners=20),
        tr.hammering(rng, T0 + 20, 20.0, tickets=10, rate=30.0),
        [ConnectionSample(T0 + s, 40, 100) for s in range(1, 40)],
    )
    replay = tr.replay(watch, events, T0 + 40, T0)
    doc = watch.current()
    json.dumps(doc)
    assert doc["verdict"]["label"] == "attack"
    assert doc["mitigations"]["revoke_tickets"]
    publish(watch, [v for _, v in replay.verdicts])
    text = generate_latest(REGISTRY).decode()
    assert 'townhall_watch_verdict{label="attack"} 1.0' in text
    assert 'townhall_watch_attack{kind="playlist_hammering"} 1.0' in text
    assert 'townhall_watch_attack{kind="join_flood"} 0.0' in text
    m = re.search(r"^townhall_watch_ticket_rate_max (\S+)$", text, re.M)
    assert m and 25 <= float(m.group(1)) <= 35


def test_report_is_self_contained_html_with_the_timeline_and_evidence() -> None:
    rng = random.Random(6)
    watch = Watch()
    events = tr.merge(
        tr.audience(rng, T0, 80.0, listeners=15),
        tr.flash_crowd(rng, T0 + 20, 30.0, join_rate=60.0, admit_rate=30.0),
        tr.join_flood(rng, T0 + 50, 20.0),
    )
    tr.replay(watch, events, T0 + 80, T0)
    doc = json.loads(json.dumps(watch.current("sp1")))
    rows = doc["timeline"]
    found = incidents(rows, 10.0)
    assert found[0]["label"] == "flash_crowd" and not found[0]["attacks"]
    assert found[-1]["label"] == "attack" and found[-1]["attacks"] == ["join_flood"]
    assert found[0]["end"] - found[0]["start"] >= 30
    state = {
        "title": "Town <hall>",
        "status": "live",
        "listeners": {"current": 5, "peak": 9, "total": 12},
    }
    page = render_report("sp1", doc, state, T0 + 80)
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert "Town &lt;hall&gt;" in page
    assert page.count("<svg") == 1 and "<polyline" in page
    assert "flash crowd" in page and "join_flood" in page
    assert "198.51.100.2" in page  # evidence and mitigations name the flooders
