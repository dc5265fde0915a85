"""Scores to decisions: smoothing, events, false alarms per hour, thresholds and DET curves.

Every function is checked against a plain Python loop that follows its docstring.
"""

import numpy as np
import pytest

from models.wake.metrics import (
    MAX_THRESHOLD,
    THRESHOLD_GRID,
    DetCurve,
    FalseAlarmCurve,
    det_curve,
    event_hops,
    false_alarm_curve,
    rate_at_threshold,
    smooth,
    threshold_for_rate,
)

THRESHOLDS = THRESHOLD_GRID[::8]  # 91 thresholds: the loops below stay fast


def naive_smooth(scores: np.ndarray, hops: int) -> np.ndarray:
    return np.array(
        [np.mean(scores[max(0, i - max(hops, 1) + 1) : i + 1]) for i in range(scores.size)]
    )


def naive_events(smoothed: np.ndarray, threshold: float, refractory: int) -> list[int]:
    """Fire when at or above the threshold and at least ``refractory`` hops after the last."""
    events: list[int] = []
    for i, value in enumerate(smoothed):
        if value >= threshold and (not events or i - events[-1] >= refractory):
            events.append(i)
    return events


def naive_rates(
    episodes: list[np.ndarray], thresholds: np.ndarray, hours: float, hops: int, refractory: int
) -> np.ndarray:
    smoothed = [naive_smooth(e, hops) for e in episodes]
    return np.array(
        [sum(len(naive_events(s, t, refractory)) for s in smoothed) / hours for t in thresholds]
    )


def negative_episodes(seed: int, lengths=(700, 400, 900)) -> list[np.ndarray]:
    """Scores of a stream without the wake word: mostly low, with rare bursts of high scores."""
    rng = np.random.default_rng(seed)
    episodes = []
    for n in lengths:
        scores = rng.beta(0.4, 6.0, n)
        for start in rng.choice(n - 5, size=n // 100, replace=False):
            scores[start : start + rng.integers(1, 5)] = rng.uniform(0.3, 1.0)
        episodes.append(scores.astype(np.float32))
    return episodes


def test_smooth_is_a_causal_mean_over_what_exists():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 37):
        scores = rng.random(n)
        for hops in (0, 1, 2, 3, 5, 40):
            np.testing.assert_allclose(smooth(scores, hops), naive_smooth(scores, hops), atol=1e-12)
    assert smooth(np.zeros(0), 3).size == 0


def test_event_hops_match_a_loop_over_hops():
    rng = np.random.default_rng(1)
    for trial in range(20):
        smoothed = rng.random(rng.integers(1, 300)) ** 3
        for threshold in (0.0, 0.05, 0.3, 0.7, 0.99, 1.5):
            for refractory in (0, 1, 2, 7, 20, 500):
                got = event_hops(smoothed, threshold, refractory)
                assert got.dtype == np.int64
                assert got.tolist() == naive_events(smoothed, threshold, refractory), (
                    trial, threshold, refractory,
                )  # fmt: skip


def test_event_hops_fire_on_every_hop_without_a_refractory_period():
    scores = np.array([0.2, 0.6, 0.6, 0.1, 0.5])
    assert event_hops(scores, 0.5, 0).tolist() == [1, 2, 4]
    assert event_hops(scores, 0.5, 3).tolist() == [1, 4]


@pytest.mark.parametrize(("hops", "refractory"), [(1, 1), (2, 20), (4, 7)])
def test_false_alarm_curve_counts_events_per_hour(hops, refractory):
    episodes = negative_episodes(2)
    hours = 0.25
    curve = false_alarm_curve(
        episodes, hours=hours, smoothing_hops=hops, refractory_hops=refractory,
        thresholds=THRESHOLDS, max_per_hour=1e6,
    )  # fmt: skip
    np.testing.assert_allclose(
        curve.per_hour, naive_rates(episodes, THRESHOLDS, hours, hops, refractory)
    )
    np.testing.assert_array_equal(curve.thresholds, THRESHOLDS)
    assert curve.hours == hours and curve.resolution_per_hour == pytest.approx(1 / hours)
    assert np.all(np.diff(curve.per_hour) <= 0), "more alarms at a higher threshold"
    assert curve.per_hour[0] > 0 and curve.per_hour[-1] == 0


def test_false_alarm_curve_caps_rates_above_the_limit_and_stays_monotone():
    # Many events in the first episode, many more in the second: counting stops past the limit,
    # and the capped rates must still fall as the threshold rises.
    rng = np.random.default_rng(3)
    episodes = [rng.uniform(0.5, 0.6, 200), rng.uniform(0.4, 0.7, 3000)]
    hours, limit_per_hour = 1.0, 50.0
    curve = false_alarm_curve(
        episodes, hours=hours, smoothing_hops=1, refractory_hops=1, thresholds=THRESHOLDS,
        max_per_hour=limit_per_hour,
    )  # fmt: skip
    exact = naive_rates(episodes, THRESHOLDS, hours, 1, 1)
    below = exact <= limit_per_hour
    np.testing.assert_allclose(curve.per_hour[below], exact[below])
    assert (~below).any(), "the test needs rates past the limit"
    capped = curve.per_hour[~below]  # just above the limit: at most one event more
    assert np.all((capped > limit_per_hour) & (capped <= limit_per_hour + 1 / hours))
    assert np.all(np.diff(curve.per_hour) <= 0)


def test_false_alarm_curve_needs_a_length():
    with pytest.raises(ValueError, match="hours"):
        false_alarm_curve([np.zeros(10)], hours=0.0, smoothing_hops=1, refractory_hops=1)


def measured_rate(curve_args: dict, threshold: float) -> float:
    """The false-alarm rate at any threshold, by the loops."""
    a = curve_args
    return float(
        naive_rates(a["episodes"], np.array([threshold]), a["hours"], a["hops"], a["refractory"])[0]
    )


@pytest.fixture(scope="module")
def calibration():
    args = {
        "episodes": negative_episodes(4, (3000, 2500)),
        "hours": 0.5,
        "hops": 2,
        "refractory": 5,
    }
    thresholds = THRESHOLD_GRID[::3]
    curve = false_alarm_curve(
        args["episodes"], hours=args["hours"], smoothing_hops=args["hops"],
        refractory_hops=args["refractory"], thresholds=thresholds,
    )  # fmt: skip
    return curve, args


def test_threshold_for_rate_at_or_above_resolution_is_read_off_the_curve(calibration):
    curve, args = calibration
    assert curve.resolution_per_hour == pytest.approx(2.0)
    for target in (2.0, 3.0, 10.0, 50.0, 300.0):
        threshold, extrapolated = threshold_for_rate(curve, target)
        assert not extrapolated
        assert measured_rate(args, threshold) <= target
        index = int(np.flatnonzero(curve.thresholds == threshold)[0])
        if index > 0:  # the lowest such threshold on the grid
            assert measured_rate(args, float(curve.thresholds[index - 1])) > target


def test_threshold_for_rate_extrapolates_below_resolution(calibration):
    curve, args = calibration
    first_silent = float(curve.thresholds[np.flatnonzero(curve.per_hour == 0)[0]])
    previous = first_silent
    for target in (1.0, 0.3, 0.1, 0.01, 1e-4):
        threshold, extrapolated = threshold_for_rate(curve, target)
        assert extrapolated
        assert first_silent <= threshold <= MAX_THRESHOLD
        assert measured_rate(args, threshold) == 0
        assert threshold >= previous, "a rarer target needs a threshold at least as high"
        previous = threshold
    assert previous > first_silent, "the fitted tail keeps rising above the last event"


def test_threshold_for_rate_without_a_usable_tail_keeps_the_first_silent_threshold():
    thresholds = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    # Only two distinct event counts (20, 2) in 1..30: too few points for a line.
    curve = FalseAlarmCurve(thresholds, np.array([400.0, 40.0, 40.0, 0.0, 0.0]), hours=0.05)
    assert threshold_for_rate(curve, 1.0) == (0.4, True)
    # A tail that does not fall with the threshold cannot be extrapolated either.
    rising = FalseAlarmCurve(thresholds, np.array([20.0, 40.0, 60.0, 0.0, 0.0]), hours=0.05)
    assert threshold_for_rate(rising, 1.0) == (0.4, True)


def test_threshold_for_rate_unreachable_target_gives_the_highest_threshold():
    curve = FalseAlarmCurve(np.array([0.2, 0.5, 0.9]), np.array([90.0, 50.0, 20.0]), hours=1.0)
    assert threshold_for_rate(curve, 5.0) == (MAX_THRESHOLD, False)
    assert threshold_for_rate(curve, 50.0) == (0.5, False)


def test_det_curve_miss_rates_are_the_share_of_peaks_below_each_threshold():
    rng = np.random.default_rng(5)
    peaks = rng.beta(4.0, 1.0, 57)
    episodes = negative_episodes(6)
    det = det_curve(
        peaks, episodes, hours=0.2, smoothing_hops=2, refractory_hops=10, thresholds=THRESHOLDS
    )
    expected = [sum(p < t for p in peaks) / peaks.size for t in THRESHOLDS]
    np.testing.assert_allclose(det.miss_rate, expected)
    np.testing.assert_allclose(det.per_hour, naive_rates(episodes, THRESHOLDS, 0.2, 2, 10))
    assert det.positives == 57 and det.hours == 0.2
    assert np.all(np.diff(det.miss_rate) >= 0)
    assert [r[0] for r in det.rows()] == pytest.approx(THRESHOLDS.tolist())
    empty = det_curve(
        [], episodes, hours=0.2, smoothing_hops=2, refractory_hops=10, thresholds=THRESHOLDS
    )
    assert empty.positives == 0 and np.all(empty.miss_rate == 1.0)


def test_det_curve_miss_rate_at_a_rate_is_at_the_lowest_threshold_reaching_it():
    rng = np.random.default_rng(7)
    peaks = rng.beta(4.0, 1.0, 40)
    det = det_curve(
        peaks, negative_episodes(8), hours=0.1, smoothing_hops=1, refractory_hops=5,
        thresholds=THRESHOLDS,
    )  # fmt: skip
    for target in (0.1, 1.0, 10.0, 100.0, 1000.0):
        miss, threshold = det.miss_rate_at(target)
        for t, rate in zip(det.thresholds, det.per_hour, strict=True):
            if rate <= target:  # the first threshold, in grid order, that meets the target
                assert threshold == t
                assert miss == pytest.approx(np.mean(peaks < t))
                break
        else:
            pytest.fail(f"no threshold reaches {target}/h")
    hopeless = DetCurve(
        np.array([0.3, 0.6]), np.array([5.0, 2.0]), np.array([0.1, 0.4]), hours=1.0, positives=10
    )
    assert hopeless.miss_rate_at(1.0) == (1.0, MAX_THRESHOLD)
    assert hopeless.miss_rate_at(2.0) == (0.4, 0.6)


def test_rate_at_threshold_reads_the_curve_and_inverts_the_extrapolation(calibration):
    curve, args = calibration
    counted = (curve.per_hour > 0) & (curve.per_hour < 1000)  # the curve caps its count
    for threshold in curve.thresholds[counted][::10]:
        assert rate_at_threshold(curve, float(threshold)) == pytest.approx(
            measured_rate(args, float(threshold))
        )
    for target in (1.0, 0.3):  # below the resolution: the same fitted tail both ways
        threshold, extrapolated = threshold_for_rate(curve, target)
        assert extrapolated and threshold < MAX_THRESHOLD
        assert rate_at_threshold(curve, threshold) == pytest.approx(target, rel=0.05)
    flat = FalseAlarmCurve(np.array([0.1, 0.2, 0.3]), np.array([40.0, 0.0, 0.0]), hours=0.05)
    assert rate_at_threshold(flat, 0.25) == 0.0  # no tail to fit: nothing measured, nothing said
