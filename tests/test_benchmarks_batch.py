"""benchmarks/batch.py's warm rate: photos per minute after every worker has finished its first
photo, from the finish times of the result folders."""

from __future__ import annotations

import math

from benchmarks.batch import start_up, warm_rate


def test_warm_rate_leaves_out_start_up():
    # two workers: each pays 10 s of start-up, then finishes a photo every 2 s (one photo per second together)
    times = sorted([10.0 + 2 * k for k in range(1, 6)] + [10.5 + 2 * k for k in range(1, 6)])
    assert math.isclose(warm_rate(times, 2), 60.0 * 8 / (20.5 - 12.5))
    assert math.isclose(warm_rate(times, 2), 60.0)
    # one worker over the same finish times counts from its first photo
    assert math.isclose(warm_rate(times, 1), 60.0 * 9 / (20.5 - 12.0))


def test_warm_rate_needs_enough_photos():
    assert math.isnan(warm_rate([1.0, 2.0, 3.0], 2))
    assert math.isnan(warm_rate([], 1))
    assert math.isnan(warm_rate([5.0, 5.0, 5.0], 1))


def test_start_up_is_when_every_worker_has_delivered():
    times = [103.0, 101.5, 104.0, 102.0]
    assert start_up(times, 100.0, 2) == 2.0
    assert start_up(times, 100.0, 1) == 1.5
    assert math.isnan(start_up([101.0], 100.0, 2))
