"""The watch on synthetic traffic: each attack named within 10 s of simulated time, with its
numbers in the evidence; flash crowds (1×, 10×, 100× the usual join rate and beyond) never
called an attack; a crowd and an attack together called "both"."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import traffic as tr
from townhall.watch.observations import Observation
from townhall.watch.verdict import Verdict
from townhall.watch.watch import Watch

T0 = 1_700_000_000.0  # a multiple of 10: windows align with it
WARM = 70.0  # a normal minute and more, so the baseline is learned
ATTACK_AT = T0 + WARM + 3.5  # deliberately not on a window boundary
SPAN = 25.0
END = ATTACK_AT + SPAN

Gen = Callable[[random.Random, float, float], list[Observation]]


@dataclass
class Run:
    replay: tr.Replay
    watch: Watch

    def after(self) -> list[tuple[float, Verdict]]:
        return [(at, v) for at, v in self.replay.verdicts if at > ATTACK_AT]

    def finals_inside(self) -> list[Verdict]:
        """Final verdicts of windows lying wholly inside the scenario."""
        return [v for v in self.replay.finals() if v.window_start >= ATTACK_AT]


def scenario(
    attack: Gen | None = None,
    *,
    crowd_rate: float | None = None,
    slow_open: int = 0,
    seed: int = 1,
    base_joins: float = 1.0,
) -> Run:
    rng = random.Random(seed)
    streams = [tr.audience(rng, T0, END - T0, joins_per_second=base_joins)]
    if crowd_rate:
        streams.append(tr.flash_crowd(rng, ATTACK_AT, SPAN, join_rate=crowd_rate, admit_rate=50.0))
    if attack:
        streams.append(attack(rng, ATTACK_AT, SPAN))
    obs = tr.merge(*streams)
    seconds = int(END - T0)
    conns = tr.connections(obs, T0, seconds, extra_open=slow_open, extra_from=ATTACK_AT)
    origin = tr.origin_load(T0, seconds, 40.0)
    watch = Watch()
    replay = tr.replay(watch, tr.merge(obs, conns, origin), END, T0)
    return Run(replay, watch)


def first_right(run: Run, label: str, kind: str | None) -> float:
    for at, v in run.after():
        if v.label == label and (kind is None or kind in v.attacks):
            return at - ATTACK_AT
    raise AssertionError(f"never called {label}/{kind}: {[v.label for _, v in run.after()]}")


def numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", text)]


ATTACKS: list[tuple[str, Gen | None, int, str]] = [
    ("join_flood", tr.join_flood, 0, "3 sources in 1 network"),
    ("forged_tickets", tr.distributed_flood, 0, "forged"),
    ("cache_busting", tr.cache_busting, 0, "not found"),
    ("playlist_hammering", tr.hammering, 0, "50 valid tickets asked 40/s each"),
    ("slowloris", None, 3000, "connections open"),
]


@pytest.mark.parametrize(("kind", "gen", "slow", "phrase"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_named_within_ten_seconds(
    kind: str, gen: Gen | None, slow: int, phrase: str
) -> None:
    run = scenario(gen, slow_open=slow)
    assert first_right(run, "attack", kind) <= 10.0
    # no verdict before the attack said anything but normal
    before = [v.label for at, v in run.replay.verdicts if at <= ATTACK_AT]
    assert set(before) == {"normal"}
    finals = run.finals_inside()
    assert finals and all(v.label == "attack" and kind in v.attacks for v in finals)
    for v in finals:
        assert v.confidence >= 0.6
        text = " ".join(v.evidence)
        assert phrase in text, text
        assert numbers(text), text
    assert run.watch.current()["mitigations"]["active"]


def test_join_flood_evidence_names_the_sources_and_mitigation_lists_them() -> None:
    run = scenario(tr.join_flood)
    v = run.finals_inside()[-1]
    assert "198.51.100.2" in " ".join(v.evidence)
    block = run.watch.current()["mitigations"]["block_sources"]
    assert {b["source"] for b in block} == {"198.51.100.2", "198.51.100.3", "198.51.100.4"}
    assert all("join_flood" in b["reasons"] for b in block)


def test_distributed_flood_evidence_has_shares_and_new_networks() -> None:
    run = scenario(tr.distributed_flood)
    v = run.finals_inside()[-1]
    text = " ".join(v.evidence)
    m = re.search(r"(\d+) % of ([\d,]+) join attempts presented an invalid ticket", text)
    assert m and 90 <= int(m.group(1)) <= 99, text
    m = re.search(r"came from ([\d,]+) networks never seen before", text)
    assert m and int(m.group(1).replace(",", "")) > 1000, text
    assert v.confidence >= 0.9


def test_hammering_mitigation_lists_tickets_to_revoke() -> None:
    run = scenario(tr.hammering)
    revoke = run.watch.current()["mitigations"]["revoke_tickets"]
    assert revoke and all(r["listener"].startswith("hammer:") for r in revoke)
    assert all(35 <= r["requests_per_second"] <= 45 for r in revoke)


@pytest.mark.parametrize("multiple", [10, 100, 400])
def test_flash_crowd_is_never_an_attack(multiple: int) -> None:
    run = scenario(crowd_rate=multiple * 1.0, seed=multiple)
    labels = [v.label for _, v in run.replay.verdicts]
    assert "attack" not in labels and "both" not in labels
    assert first_right(run, "flash_crowd", None) <= 10.0
    finals = run.finals_inside()
    assert all(v.label == "flash_crowd" for v in finals)
    text = " ".join(finals[-1].evidence)
    assert "returning listeners" in text and "networks" in text


def test_first_crowd_on_a_cold_node_is_no_attack() -> None:
    """The announced start on a node that has learned nothing yet."""
    rng = random.Random(5)
    start = T0
    obs = tr.flash_crowd(rng, start, 30.0, join_rate=300.0, admit_rate=50.0)
    conns = tr.connections(obs, start, 30)
    watch = Watch()
    replay = tr.replay(watch, tr.merge(obs, conns), start + 30, start)
    labels = {v.label for _, v in replay.verdicts}
    assert labels <= {"flash_crowd", "normal"} and "flash_crowd" in labels


BOTH: list[tuple[str, Gen | None, int]] = [
    ("join_flood", tr.join_flood, 0),
    ("forged_tickets", tr.distributed_flood, 0),
    ("cache_busting", tr.cache_busting, 0),
    ("playlist_hammering", tr.hammering, 0),
    ("slowloris", None, 5000),
]


@pytest.mark.parametrize(("kind", "gen", "slow"), BOTH, ids=[b[0] for b in BOTH])
def test_crowd_and_attack_is_both(kind: str, gen: Gen | None, slow: int) -> None:
    run = scenario(gen, crowd_rate=150.0, slow_open=slow)
    assert first_right(run, "both", kind) <= 10.0
    finals = run.finals_inside()
    assert finals and all(v.label == "both" and kind in v.attacks for v in finals)
    assert all(v.confidence >= 0.6 for v in finals)
    assert all("flash_crowd" in v.scores and kind in v.scores for v in finals)
