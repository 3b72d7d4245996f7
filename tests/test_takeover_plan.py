"""Where a taken-over programme continues (pure): after a followed origin, and after an orphan
whose origin nobody followed."""

from __future__ import annotations

import math
import random

import pytest

from townhall.cluster.takeover import ORPHAN_MSN_MARGIN, plan_orphan_takeover, plan_takeover

PPS = 6  # parts per segment
SEG_SAMPLES = 96 * 1024
SEG_S = SEG_SAMPLES / 48_000  # 2.048 s


def test_followed_origin_continues_after_what_was_seen() -> None:
    assert (
        plan_takeover(
            last_seen=None,
            last_recorded=None,
            parts_per_segment=PPS,
            segment_samples=SEG_SAMPLES,
            discontinuity_sequence=0,
        )
        is None
    )  # nothing seen: no safe number
    mid = plan_takeover(
        last_seen=(10, 2),
        last_recorded=(9, 10 * SEG_SAMPLES),
        parts_per_segment=PPS,
        segment_samples=SEG_SAMPLES,
        discontinuity_sequence=1,
    )
    assert mid is not None and (mid.next_msn, mid.discontinuity_sequence) == (11, 1)
    assert mid.next_decode_time == 10 * SEG_SAMPLES + SEG_SAMPLES  # msn 10 counted full
    closing = plan_takeover(
        last_seen=(10, PPS - 1),
        last_recorded=None,
        parts_per_segment=PPS,
        segment_samples=SEG_SAMPLES,
        discontinuity_sequence=0,
    )
    assert closing is not None and closing.next_msn == 12  # part 0 of 11 may exist unseen


def test_orphan_takeover_starts_past_the_wall_clock() -> None:
    plan = plan_orphan_takeover(
        started_at=1000.0,
        now=1000.0 + 10 * SEG_S + 0.3,
        segment_seconds=SEG_S,
        segment_samples=SEG_SAMPLES,
    )
    assert plan.next_msn == 11 + ORPHAN_MSN_MARGIN
    assert plan.next_decode_time == plan.next_msn * SEG_SAMPLES
    assert plan.discontinuity_sequence == 0
    early = plan_orphan_takeover(
        started_at=1000.0, now=999.0, segment_seconds=SEG_S, segment_samples=SEG_SAMPLES
    )
    assert early.next_msn == ORPHAN_MSN_MARGIN  # a clock behind the start: never negative
    with pytest.raises(ValueError):
        plan_orphan_takeover(started_at=0, now=1, segment_seconds=0, segment_samples=1)


def test_orphan_numbers_were_never_published() -> None:
    """A programme with restarts (resume from the recording) and followed takeovers, in time
    order; at any moment the orphan plan lies beyond every MSN published so far."""
    rng = random.Random(5)
    for _ in range(200):
        t, msn, published = 0.0, 0, -1
        for _event in range(rng.randint(1, 4)):
            run = rng.uniform(0.0, 120.0)  # the origin produces one segment per SEG_S
            made = math.floor(run / SEG_S) + 1  # the last one possibly still open
            published = max(published, msn + made - 1)
            msn += made
            t += run
            if rng.random() < 0.5:  # a followed takeover: ≥ 3 s lease, skips ≤ 2 numbers
                t += rng.uniform(3.0, 6.0)
                msn += rng.randint(0, 1)
            else:  # a restart: resumes after the recording, the downtime is not counted
                t += rng.uniform(1.0, 30.0)
        plan = plan_orphan_takeover(
            started_at=0.0, now=t, segment_seconds=SEG_S, segment_samples=SEG_SAMPLES
        )
        assert plan.next_msn > published
